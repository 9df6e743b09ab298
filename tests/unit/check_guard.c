/*
 * check_guard: protected mode's idea of a local client, and failed AUTHs per
 * address: the window, the log lines a second, the turns of a delayed
 * address, and a table that stays bounded under many addresses.
 */
#include "base/guard.h"
#include "unit.h"

#include <stdio.h>
#include <string.h>

START_TEST(test_local_addresses)
{
    ck_assert(guard_is_local("127.0.0.1:50000"));
    ck_assert(guard_is_local("[::1]:50000"));
    ck_assert(guard_is_local("unix"));
    ck_assert(!guard_is_local("127.0.0.2:50000")); /* as Redis: only 127.0.0.1 */
    ck_assert(!guard_is_local("10.0.0.1:6379"));
    ck_assert(!guard_is_local("[::ffff:127.0.0.1]:1"));
    ck_assert(!guard_is_local("[2001:db8::1]:6380"));
    char host[64];
    guard_host("[2001:db8::1]:6380", host, sizeof(host));
    ck_assert_str_eq(host, "2001:db8::1");
    guard_host("192.0.2.7:1234", host, sizeof(host));
    ck_assert_str_eq(host, "192.0.2.7");
    guard_host("192.0.2.7:1234", host, 4);
    ck_assert_str_eq(host, "192");
}
END_TEST

START_TEST(test_failures_are_logged_once_a_second)
{
    struct guard *g = guard_new();
    uint32_t n;
    uint64_t t = 1000000;
    ck_assert_uint_eq(guard_auth_failed(g, "192.0.2.7", t, &n), 1); /* the first: logged */
    ck_assert_uint_eq(n, 1);
    for (int i = 0; i < 5; i++)
        ck_assert_uint_eq(guard_auth_failed(g, "192.0.2.7", t + 100 + (uint64_t)i, &n), 0);
    ck_assert_uint_eq(n, 6);
    ck_assert_uint_eq(guard_auth_failed(g, "192.0.2.8", t + 200, &n), 1); /* another address has its own */
    ck_assert_uint_eq(n, 1);
    ck_assert_uint_eq(guard_auth_failed(g, "192.0.2.7", t + 1000, &n), 6); /* five unlogged and this one */
    ck_assert_uint_eq(n, 7);
    ck_assert_uint_eq(atomic_load(&g->auth_failures), 8);
    /* Past the window the count starts again. */
    guard_auth_failed(g, "192.0.2.7", t + GUARD_WINDOW_MS + 1, &n);
    ck_assert_uint_eq(n, 1);
    guard_free(g);
}
END_TEST

START_TEST(test_a_failing_address_waits_its_turn)
{
    struct guard *g = guard_new();
    uint32_t n;
    uint64_t t = 5000000;
    for (int i = 0; i < 3; i++) {
        ck_assert_uint_eq(guard_auth_wait(g, "192.0.2.7", t, 3, 1000), 0); /* fewer than 3 failures yet */
        guard_auth_failed(g, "192.0.2.7", t, &n);
    }
    ck_assert_uint_eq(guard_auth_wait(g, "192.0.2.9", t, 3, 1000), 0); /* others do not wait */
    ck_assert_uint_eq(guard_auth_wait(g, "192.0.2.7", t, 0, 1000), 0); /* max_failures 0: never */
    /* One answer per delay: concurrent AUTHs from the address queue up... */
    ck_assert_uint_eq(guard_auth_wait(g, "192.0.2.7", t, 3, 1000), 1000);
    ck_assert_uint_eq(guard_auth_wait(g, "192.0.2.7", t, 3, 1000), 2000);
    ck_assert_uint_eq(guard_auth_wait(g, "192.0.2.7", t + 500, 3, 1000), 2500);
    /* ... up to GUARD_MAX_WAITS delays, and those past it take no turn. */
    for (int i = 0; i < 20; i++)
        ck_assert_uint_le(guard_auth_wait(g, "192.0.2.7", t + 500, 3, 1000), GUARD_MAX_WAITS * 1000);
    ck_assert_uint_eq(guard_auth_wait(g, "192.0.2.7", t + 500, 3, 1000), GUARD_MAX_WAITS * 1000);
    ck_assert_uint_eq(guard_auth_wait(g, "192.0.2.7", t + GUARD_WINDOW_MS, 3, 1000), 0); /* the window ended */
    ck_assert_uint_ge(atomic_load(&g->auth_delayed), 24);
    guard_free(g);
}
END_TEST

START_TEST(test_the_table_stays_bounded)
{
    struct guard *g = guard_new();
    uint32_t n;
    char host[48];
    /* Far more addresses than slots: each still counts its own failures,
     * and the oldest are forgotten. */
    for (int i = 0; i < 20 * GUARD_SLOTS; i++) {
        snprintf(host, sizeof(host), "10.%d.%d.%d", i >> 16 & 255, i >> 8 & 255, i & 255);
        guard_auth_failed(g, host, 1000 + (uint64_t)i, &n);
        ck_assert_uint_eq(n, 1);
    }
    int used = 0;
    for (int i = 0; i < GUARD_SLOTS; i++)
        used += g->e[i].host[0] != '\0';
    ck_assert_int_le(used, GUARD_SLOTS);
    ck_assert_int_gt(used, GUARD_SLOTS / 2);
    /* A recent address is still known. */
    snprintf(host, sizeof(host), "10.%d.%d.%d", (20 * GUARD_SLOTS - 1) >> 16 & 255, (20 * GUARD_SLOTS - 1) >> 8 & 255,
             (20 * GUARD_SLOTS - 1) & 255);
    guard_auth_failed(g, host, 1000 + 20 * GUARD_SLOTS, &n);
    ck_assert_uint_eq(n, 2);
    /* A long host is cut, not overflowed. */
    memset(host, 'a', sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    guard_auth_failed(g, host, 5, &n);
    guard_free(g);
}
END_TEST

START_TEST(test_protected_refusals_log_once_a_second)
{
    struct guard *g = guard_new();
    ck_assert(guard_tally(&g->protected_refused, 1000));
    ck_assert(!guard_tally(&g->protected_refused, 1500));
    ck_assert(guard_tally(&g->protected_refused, 2000));
    ck_assert_uint_eq(atomic_load(&g->protected_refused.count), 3);
    guard_free(g);
}
END_TEST

static Suite *guard_suite(void)
{
    Suite *s = suite_create("guard");
    TCase *tc = tcase_create("guard");
    tcase_add_test(tc, test_local_addresses);
    tcase_add_test(tc, test_failures_are_logged_once_a_second);
    tcase_add_test(tc, test_a_failing_address_waits_its_turn);
    tcase_add_test(tc, test_the_table_stays_bounded);
    tcase_add_test(tc, test_protected_refusals_log_once_a_second);
    suite_add_tcase(s, tc);
    return s;
}

UNIT_MAIN(guard_suite)
