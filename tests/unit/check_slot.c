/* Unit tests for slot: CRC16, hash tags, and keys split across evbuffer
 * chains at every offset. Expected slots are what redis-server 7.0's
 * CLUSTER KEYSLOT answered for the same keys. */
#include "base/resp.h"
#include "base/slot.h"
#include "unit.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *key;
    unsigned slot;
} known[] = {
    {"foo", 12182}, {"bar", 5061}, {"hello", 866}, {"somekey", 11058}, {"123456789", 12739},
    {"{user1000}.following", 3443}, {"foo{}{bar}", 8363}, {"foo{{bar}}zap", 4015},
    {"foo{bar}{zap}", 5061}, {"{}", 15257}, {"{", 4092}, {"}{a}", 15495}, {"", 0},
};

START_TEST(test_crc16_check_value)
{
    /* The XMODEM check value the cluster spec quotes. */
    ck_assert_uint_eq(slot_crc16(0, "123456789", 9), 0x31C3);
}
END_TEST

/* The CRC bit by bit, as the spec defines it (XMODEM: poly 0x1021, no
 * reflection, initial value 0). */
static uint16_t crc16_bitwise(const unsigned char *p, size_t len)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)(p[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (uint16_t)((crc & 0x8000) ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    return crc;
}

/* slot_crc16 takes two bytes a step: every length, odd and even, and any
 * split of the input into two calls, give the bit-by-bit CRC. */
START_TEST(test_crc16_against_the_definition)
{
    unsigned char data[97];
    unsigned seed = 12345;
    for (size_t i = 0; i < sizeof(data); i++) {
        seed = seed * 1103515245u + 12345u;
        data[i] = (unsigned char)(seed >> 16);
    }
    for (size_t len = 0; len <= sizeof(data); len++) {
        uint16_t want = crc16_bitwise(data, len);
        ck_assert_msg(slot_crc16(0, data, len) == want, "length %zu", len);
        for (size_t cut = 0; cut <= len; cut++)
            ck_assert_msg(slot_crc16(slot_crc16(0, data, cut), data + cut, len - cut) == want, "length %zu cut %zu",
                          len, cut);
    }
}
END_TEST

START_TEST(test_known_slots)
{
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        ck_assert_msg(slot_of(known[i].key, strlen(known[i].key)) == known[i].slot, "key %s", known[i].key);
    ck_assert_uint_eq(slot_of("{user1000}.followers", 20), slot_of("{user1000}.following", 20));
    ck_assert_uint_eq(slot_of("{user1000}.followers", 20), slot_of("user1000", 8));
}
END_TEST

/* Each key as the argument of a frame "*1\r\n$N\r\nKEY\r\n", with the frame
 * cut into two chains at every offset, and into one chain per byte. */
START_TEST(test_split_at_every_offset)
{
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        char frame[128];
        size_t klen = strlen(known[i].key);
        int n = snprintf(frame, sizeof(frame), "*1\r\n$%zu\r\n%s\r\n", klen, known[i].key);
        for (int cut = 0; cut <= n; cut++) {
            struct evbuffer *b = evbuffer_new(), *tail = evbuffer_new();
            evbuffer_add(b, frame, (size_t)cut);
            evbuffer_add(tail, frame + cut, (size_t)n - (size_t)cut);
            evbuffer_add_buffer(b, tail);
            struct resp_req r = {0};
            const struct resp_limits lim = {1 << 20, 1 << 16, 1 << 20};
            ck_assert_int_eq(resp_req_scan(&r, b, &lim, 0), RESP_FRAME);
            ck_assert_msg(slot_of_arg(b, &r.argv[0]) == known[i].slot, "key %s cut %d", known[i].key, cut);
            resp_req_deinit(&r);
            evbuffer_free(tail);
            evbuffer_free(b);
        }
        struct evbuffer *b = evbuffer_new();
        for (int j = 0; j < n; j++) {
            struct evbuffer *one = evbuffer_new();
            evbuffer_add(one, frame + j, 1);
            evbuffer_add_buffer(b, one);
            evbuffer_free(one);
        }
        struct resp_arg a = {(size_t)n - klen - 2, klen};
        ck_assert_msg(slot_of_arg(b, &a) == known[i].slot, "key %s byte by byte", known[i].key);
        evbuffer_free(b);
    }
}
END_TEST

/* A temporary key "{tag}..." of a cross-slot command must land in the
 * slot it was made for, and the tag must be short and plain. */
START_TEST(test_every_slot_has_a_tag)
{
    size_t longest = 0;
    for (unsigned s = 0; s < SLOT_COUNT; s++) {
        const char *tag = slot_tag(s);
        size_t len = strlen(tag);
        ck_assert_uint_ge(len, 1);
        ck_assert_uint_le(len, SLOT_TAG_MAX);
        for (size_t i = 0; i < len; i++)
            ck_assert(strchr("0123456789abcdefghijklmnopqrstuvwxyz", tag[i]) != NULL);
        char key[SLOT_TAG_MAX + 16];
        snprintf(key, sizeof(key), "{%s}x", tag);
        ck_assert_uint_eq(slot_of(key, strlen(key)), s);
        longest = len > longest ? len : longest;
    }
    ck_assert_str_eq(slot_tag(slot_of("a", 1)), "a"); /* the shortest there is */
    ck_assert_uint_le(longest, 4);
}
END_TEST

START_TEST(test_binary_keys)
{
    static const char k[] = "a\0{b\r\n}c";
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, k, sizeof(k) - 1);
    struct resp_arg a = {0, sizeof(k) - 1};
    ck_assert_uint_eq(slot_of_arg(b, &a), slot_of("b\r\n", 3));
    ck_assert_uint_eq(slot_of(k, sizeof(k) - 1), slot_of("b\r\n", 3));
    evbuffer_free(b);
}
END_TEST

static Suite *slot_suite(void)
{
    Suite *s = suite_create("slot");
    TCase *tc = tcase_create("slot");
    tcase_add_test(tc, test_crc16_check_value);
    tcase_add_test(tc, test_crc16_against_the_definition);
    tcase_add_test(tc, test_known_slots);
    tcase_add_test(tc, test_split_at_every_offset);
    tcase_add_test(tc, test_binary_keys);
    tcase_add_test(tc, test_every_slot_has_a_tag);
    suite_add_tcase(s, tc);
    return s;
}

UNIT_MAIN(slot_suite)
