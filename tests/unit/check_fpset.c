/*
 * check_fpset: the fingerprint set against a plain array under random adds
 * and removals (removal's backward shift keeps every member findable), with
 * fingerprints crowded into few home slots; and the fingerprint never 0.
 */
#include "base/fpset.h"
#include "unit.h"

#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>

static int in_array(const uint64_t *a, size_t n, uint64_t fp)
{
    for (size_t i = 0; i < n; i++)
        if (a[i] == fp)
            return 1;
    return 0;
}

/* Random adds and removals of fingerprints drawn from NDISTINCT values
 * (each a multiple of SPREAD: a small SPREAD crowds them into runs). */
static void random_ops(unsigned seed, size_t ndistinct, uint64_t spread)
{
    struct fpset s = {0};
    uint64_t *ref = calloc(ndistinct, sizeof(*ref));
    size_t nref = 0;
    srand(seed);
    for (int op = 0; op < 20000; op++) {
        uint64_t fp = ((uint64_t)(rand() % (int)ndistinct) + 1) * spread;
        int have = in_array(ref, nref, fp);
        if (rand() % 3) {
            ck_assert_int_eq(fpset_add(&s, fp), !have);
            if (!have)
                ref[nref++] = fp;
        } else {
            ck_assert_int_eq(fpset_del(&s, fp), have);
            for (size_t i = 0; have && i < nref; i++)
                if (ref[i] == fp) {
                    ref[i] = ref[--nref];
                    break;
                }
        }
        ck_assert_uint_eq(s.n, nref);
        if (op % 97 == 0)
            for (size_t i = 0; i < nref; i++)
                ck_assert(fpset_has(&s, ref[i]));
    }
    for (size_t i = 0; i < nref; i++)
        ck_assert(fpset_has(&s, ref[i]));
    for (uint64_t v = 1; v <= ndistinct; v++)
        ck_assert_int_eq(fpset_has(&s, v * spread), in_array(ref, nref, v * spread));
    ck_assert(2 * s.n <= s.cap);
    fpset_clear(&s);
    ck_assert(!fpset_has(&s, spread));
    free(ref);
}

START_TEST(test_spread_out)
{
    random_ops(1, 3000, 0x9e3779b97f4a7c15ull);
}
END_TEST

START_TEST(test_crowded_into_runs)
{
    /* Multiples of 1024 share their low bits: they all start at few slots. */
    random_ops(2, 500, 1024);
    random_ops(3, 200, 1);
}
END_TEST

START_TEST(test_fingerprint)
{
    ck_assert(fpset_fingerprint("", 0) != 0);
    ck_assert(fpset_fingerprint("a", 1) != fpset_fingerprint("b", 1));
    ck_assert(fpset_fingerprint("key:1", 5) == fpset_fingerprint("key:1", 5));
    ck_assert(fpset_fingerprint("ab", 2) != fpset_fingerprint("ab\0", 3));
    /* Keys alike but for their last byte spread over the low bits. */
    struct fpset s = {0};
    char k[16];
    for (int i = 0; i < 1000; i++) {
        int n = snprintf(k, sizeof(k), "user:%d", i);
        ck_assert_int_eq(fpset_add(&s, fpset_fingerprint(k, (size_t)n)), 1);
    }
    ck_assert_uint_eq(s.n, 1000);
    fpset_clear(&s);
}
END_TEST

static Suite *fpset_suite(void)
{
    Suite *s = suite_create("fpset");
    TCase *tc = tcase_create("fpset");
    tcase_add_test(tc, test_spread_out);
    tcase_add_test(tc, test_crowded_into_runs);
    tcase_add_test(tc, test_fingerprint);
    suite_add_tcase(s, tc);
    return s;
}

UNIT_MAIN(fpset_suite)
