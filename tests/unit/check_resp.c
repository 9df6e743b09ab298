/* Unit tests for resp: the request scanner over evbuffers, split at every
 * offset and across chains; inline splitting; hostile input with Redis's
 * exact error texts. */
#include "base/resp.h"
#include "unit.h"

#include <event2/buffer.h>
#include <hiredis/hiredis.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct resp_limits lim = {512u << 20, 64 << 10, 1048576};

/* The buffer holds each piece of TEXT as its own chain, split at CUTS. */
static struct evbuffer *chained(const char *text, size_t len, const size_t *cuts, size_t ncuts)
{
    struct evbuffer *b = evbuffer_new();
    size_t from = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : len;
        struct evbuffer *piece = evbuffer_new();
        evbuffer_add(piece, text + from, to - from);
        evbuffer_add_buffer(b, piece); /* moves the chain, keeping it separate */
        evbuffer_free(piece);
        from = to;
    }
    return b;
}

static enum resp_status scan_text(struct resp_req *r, const char *text, size_t len, int unauth,
                                  const struct resp_limits *l)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, text, len);
    enum resp_status st = resp_req_scan(r, b, l, unauth);
    evbuffer_free(b);
    return st;
}

static void expect_error(const char *text, size_t len, int unauth, const struct resp_limits *l, const char *want)
{
    struct resp_req r = {0};
    ck_assert_int_eq(scan_text(&r, text, len, unauth, l), RESP_ERROR);
    ck_assert_str_eq(r.error, want);
    resp_req_deinit(&r);
}

#define ERR(text, want) expect_error(text, sizeof(text) - 1, 0, &lim, want)

static void arg_is(struct evbuffer *frame, const struct resp_req *r, size_t i, const char *want, size_t wlen)
{
    char buf[256];
    size_t len;
    ck_assert_uint_lt(i, r->argc);
    ck_assert_uint_eq(r->argv[i].len, wlen);
    ck_assert_int_eq(resp_arg_str(frame, r, i, buf, sizeof(buf), &len), 0);
    ck_assert_uint_eq(len, wlen);
    ck_assert_mem_eq(buf, want, wlen);
}

/* A request of the ARGC arguments ARGV, as one frame in a buffer whose
 * chains are cut every STEP bytes (0: one chain), scanned into R. */
static struct evbuffer *frame_of(struct resp_req *r, const char *const *argv, size_t argc, size_t step)
{
    char text[8192];
    size_t len = (size_t)snprintf(text, sizeof(text), "*%zu\r\n", argc);
    for (size_t i = 0; i < argc; i++)
        len += (size_t)snprintf(text + len, sizeof(text) - len, "$%zu\r\n%s\r\n", strlen(argv[i]), argv[i]);
    ck_assert_uint_lt(len, sizeof(text));
    size_t cuts[8192], ncuts = 0;
    for (size_t at = step; step && at < len; at += step)
        cuts[ncuts++] = at;
    struct evbuffer *b = chained(text, len, cuts, ncuts);
    ck_assert_int_eq(resp_req_scan(r, b, &lim, 0), RESP_FRAME);
    return b;
}

START_TEST(test_arg_reader_words_and_copies)
{
    static const char *const argv[] = {"client", "TRACKING", "on", "bcast", "Prefix", ""};
    for (size_t step = 0; step <= 7; step++) { /* one chain, then cut everywhere */
        struct resp_req r = {0};
        struct evbuffer *b = frame_of(&r, argv, 6, step);
        ck_assert(resp_arg_is(b, &r, 1, "tracking"));
        ck_assert(resp_arg_is(b, &r, 3, "BCAST"));
        ck_assert(!resp_arg_is(b, &r, 3, "bcas"));
        ck_assert(!resp_arg_is(b, &r, 3, "bcastx"));
        ck_assert(resp_arg_is(b, &r, 5, ""));
        ck_assert(!resp_arg_is(b, &r, 6, "")); /* past argc: absent */
        ck_assert(!resp_arg_is(b, &r, (size_t)-1, "client"));

        char buf[6];
        size_t n = 99;
        ck_assert_int_eq(resp_arg_str(b, &r, 0, buf, sizeof(buf), &n), -1); /* "client" needs 7 */
        ck_assert_uint_eq(n, 5);
        ck_assert_str_eq(buf, "clien");
        ck_assert_int_eq(resp_arg_str(b, &r, 2, buf, sizeof(buf), &n), 0);
        ck_assert_uint_eq(n, 2);
        ck_assert_str_eq(buf, "on");
        ck_assert_int_eq(resp_arg_str(b, &r, 5, buf, sizeof(buf), &n), 0);
        ck_assert_str_eq(buf, "");
        ck_assert_int_eq(resp_arg_str(b, &r, 9, buf, sizeof(buf), &n), -1);
        ck_assert_uint_eq(n, 0);
        ck_assert_str_eq(buf, "");
        ck_assert_int_eq(resp_arg_str(b, &r, 2, buf, 1, NULL), -1); /* room for the '\0' alone */
        ck_assert_str_eq(buf, "");

        size_t len;
        const char *v = resp_arg_view(b, &r, 4, &len);
        const char *w = resp_arg_view(b, &r, 1, &len);
        ck_assert_ptr_nonnull(v);
        ck_assert_mem_eq(v, "Prefix", 6); /* the first view outlives the second */
        ck_assert_uint_eq(len, 8);
        ck_assert_mem_eq(w, "TRACKING", 8);
        ck_assert_ptr_null(resp_arg_view(b, &r, 6, &len));
        resp_req_deinit(&r);
        evbuffer_free(b);
    }
}
END_TEST

START_TEST(test_arg_reader_long_argument)
{
    /* The crash of issue 27: an option far longer than any buffer a
     * handler keeps. Nothing is written past BUF, and the cut is said. */
    char big[4000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    const char *argv[] = {"client", "tracking", "on", "bcast", big};
    struct resp_req r = {0};
    struct evbuffer *b = frame_of(&r, argv, 5, 1000);
    struct {
        char buf[16];
        char canary[16];
    } s;
    memset(s.canary, 0x5a, sizeof(s.canary));
    size_t n;
    ck_assert_int_eq(resp_arg_str(b, &r, 4, s.buf, sizeof(s.buf), &n), -1);
    ck_assert_uint_eq(n, 15);
    for (size_t i = 0; i < sizeof(s.canary); i++)
        ck_assert_int_eq(s.canary[i], 0x5a);
    ck_assert(!resp_arg_is(b, &r, 4, "prefix"));
    char shown[129];
    ck_assert_uint_eq(strlen(resp_arg_printable(b, &r, 4, shown, sizeof(shown))), 128);
    long long v;
    ck_assert_int_eq(resp_arg_ll(b, &r, 4, LLONG_MIN, LLONG_MAX, &v), -1);
    resp_req_deinit(&r);
    evbuffer_free(b);
}
END_TEST

START_TEST(test_arg_reader_numbers)
{
    /* Redis's string2ll and getDoubleFromObject, case by case. */
    static const struct {
        const char *text;
        int ok;
        long long v;
    } ints[] = {
        {"0", 1, 0}, {"-1", 1, -1}, {"12", 1, 12}, {"9223372036854775807", 1, LLONG_MAX},
        {"-9223372036854775808", 1, LLONG_MIN}, {"9223372036854775808", 0, 0}, {"-9223372036854775809", 0, 0},
        {"18446744073709551616", 0, 0}, {"", 0, 0}, {"-", 0, 0}, {"-0", 0, 0}, {"01", 0, 0}, {"+1", 0, 0},
        {" 1", 0, 0}, {"1 ", 0, 0}, {"1a", 0, 0}, {"0x10", 0, 0}, {"00000000000000000000001", 0, 0},
    };
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
        const char *argv[] = {"select", ints[i].text};
        struct resp_req r = {0};
        struct evbuffer *b = frame_of(&r, argv, 2, 3);
        long long v = 42;
        ck_assert_msg(resp_arg_ll(b, &r, 1, LLONG_MIN, LLONG_MAX, &v) == (ints[i].ok ? 0 : -1), "%s", ints[i].text);
        ck_assert_int_eq(v, ints[i].ok ? ints[i].v : 42);
        resp_req_deinit(&r);
        evbuffer_free(b);
    }
    static const char *const range[] = {"select", "5"};
    struct resp_req r = {0};
    struct evbuffer *b = frame_of(&r, range, 2, 0);
    long long v;
    uint64_t u;
    double d;
    ck_assert_int_eq(resp_arg_ll(b, &r, 1, 0, 5, &v), 0);
    ck_assert_int_eq(resp_arg_ll(b, &r, 1, 6, 9, &v), -1);
    ck_assert_int_eq(resp_arg_ll(b, &r, 1, -9, 4, &v), -1);
    ck_assert_int_eq(resp_arg_ll(b, &r, 2, LLONG_MIN, LLONG_MAX, &v), -1); /* absent */
    ck_assert_int_eq(resp_arg_u64(b, &r, 1, &u), 0);
    ck_assert_uint_eq(u, 5);
    ck_assert_int_eq(resp_arg_double(b, &r, 1, &d), 0);
    ck_assert(d == 5.0);
    resp_req_deinit(&r);
    evbuffer_free(b);

    static const struct {
        const char *text;
        int ok;
    } u64s[] = {{"0", 1}, {"18446744073709551615", 1}, {"18446744073709551616", 0}, {"-1", 0}, {"", 0}, {"1x", 0}},
      doubles[] = {{"1.5", 1}, {"-1e10", 1}, {"inf", 1}, {"-inf", 1}, {"1e308", 1}, {"1e309", 0}, {"nan", 0},
                   {" 1", 0}, {"1 ", 0}, {"", 0}, {"abc", 0}, {"0x1p3", 1}};
    for (size_t i = 0; i < sizeof(u64s) / sizeof(u64s[0]); i++) {
        const char *argv[] = {"scan", u64s[i].text};
        b = frame_of(&r, argv, 2, 0);
        ck_assert_msg(resp_arg_u64(b, &r, 1, &u) == (u64s[i].ok ? 0 : -1), "%s", u64s[i].text);
        resp_req_deinit(&r);
        evbuffer_free(b);
    }
    for (size_t i = 0; i < sizeof(doubles) / sizeof(doubles[0]); i++) {
        const char *argv[] = {"incrbyfloat", doubles[i].text};
        b = frame_of(&r, argv, 2, 0);
        ck_assert_msg(resp_arg_double(b, &r, 1, &d) == (doubles[i].ok ? 0 : -1), "%s", doubles[i].text);
        resp_req_deinit(&r);
        evbuffer_free(b);
    }
}
END_TEST

START_TEST(test_simple_frame)
{
    static const char t[] = "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n";
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, t, sizeof(t) - 1);
    struct resp_req r = {0};
    ck_assert_int_eq(resp_req_scan(&r, b, &lim, 0), RESP_FRAME);
    ck_assert_int_eq(r.is_inline, 0);
    ck_assert_uint_eq(r.argc, 2);
    ck_assert_uint_eq(r.frame_len, 20);
    ck_assert_uint_eq(r.argv[0].off, 8);
    arg_is(b, &r, 0, "GET", 3);
    arg_is(b, &r, 1, "k", 1);
    evbuffer_drain(b, r.frame_len);
    resp_req_reset(&r);
    ck_assert_int_eq(resp_req_scan(&r, b, &lim, 0), RESP_FRAME);
    arg_is(b, &r, 0, "PING", 4);
    resp_req_deinit(&r);
    evbuffer_free(b);
}
END_TEST

/* A frame with binary data, an empty argument and CRLF inside a value. */
static const char split_text[] = "*4\r\n$3\r\nSET\r\n$5\r\nk\0\r\ny\r\n$0\r\n\r\n$11\r\n\r\n*1\r\n$1\r\nx\r\n";
#define SPLIT_LEN (sizeof(split_text) - 1)

static void check_split_frame(struct evbuffer *b, struct resp_req *r)
{
    ck_assert_uint_eq(r->argc, 4);
    ck_assert_uint_eq(r->frame_len, SPLIT_LEN);
    arg_is(b, r, 0, "SET", 3);
    arg_is(b, r, 1, "k\0\r\ny", 5);
    arg_is(b, r, 2, "", 0);
    arg_is(b, r, 3, "\r\n*1\r\n$1\r\nx", 11);
}

START_TEST(test_every_split_point)
{
    for (size_t cut = 0; cut <= SPLIT_LEN; cut++) {
        /* Whole, but in two chains cut at CUT. */
        struct evbuffer *b = chained(split_text, SPLIT_LEN, &cut, 1);
        struct resp_req r = {0};
        ck_assert_int_eq(resp_req_scan(&r, b, &lim, 0), RESP_FRAME);
        check_split_frame(b, &r);
        evbuffer_free(b);
        resp_req_reset(&r);

        /* Only the first CUT bytes, then the rest: resumed, not restarted. */
        b = evbuffer_new();
        evbuffer_add(b, split_text, cut);
        enum resp_status st = resp_req_scan(&r, b, &lim, 0);
        ck_assert_int_eq(st, cut == SPLIT_LEN ? RESP_FRAME : RESP_PARTIAL);
        evbuffer_add(b, split_text + cut, SPLIT_LEN - cut);
        if (st == RESP_PARTIAL)
            ck_assert_int_eq(resp_req_scan(&r, b, &lim, 0), RESP_FRAME);
        check_split_frame(b, &r);
        evbuffer_free(b);
        resp_req_deinit(&r);
    }
}
END_TEST

START_TEST(test_byte_by_byte_chains)
{
    size_t cuts[SPLIT_LEN];
    for (size_t i = 0; i < SPLIT_LEN - 1; i++)
        cuts[i] = i + 1;
    struct evbuffer *b = chained(split_text, SPLIT_LEN, cuts, SPLIT_LEN - 1);
    struct resp_req r = {0};
    ck_assert_int_eq(resp_req_scan(&r, b, &lim, 0), RESP_FRAME);
    check_split_frame(b, &r);
    evbuffer_free(b);

    /* Fed one byte at a time, each byte its own chain. */
    resp_req_reset(&r);
    b = evbuffer_new();
    for (size_t i = 0; i < SPLIT_LEN; i++) {
        struct evbuffer *one = evbuffer_new();
        evbuffer_add(one, split_text + i, 1);
        evbuffer_add_buffer(b, one);
        evbuffer_free(one);
        ck_assert_int_eq(resp_req_scan(&r, b, &lim, 0), i + 1 == SPLIT_LEN ? RESP_FRAME : RESP_PARTIAL);
    }
    check_split_frame(b, &r);

    /* resp_arg_append copies an argument that spans many chains. */
    struct evbuffer *out = evbuffer_new();
    ck_assert_int_eq(resp_arg_append(out, b, &r.argv[3]), 0);
    ck_assert_uint_eq(evbuffer_get_length(out), 11);
    ck_assert_mem_eq(evbuffer_pullup(out, -1), "\r\n*1\r\n$1\r\nx", 11);
    evbuffer_free(out);
    evbuffer_free(b);
    resp_req_deinit(&r);
}
END_TEST

START_TEST(test_empty_requests)
{
    struct resp_req r = {0};
    ck_assert_int_eq(scan_text(&r, "*0\r\n", 4, 0, &lim), RESP_FRAME);
    ck_assert_uint_eq(r.argc, 0);
    ck_assert_uint_eq(r.frame_len, 4);
    resp_req_reset(&r);
    ck_assert_int_eq(scan_text(&r, "*-1\r\n", 5, 0, &lim), RESP_FRAME);
    ck_assert_uint_eq(r.argc, 0);
    resp_req_deinit(&r);
}
END_TEST

START_TEST(test_inline)
{
    struct resp_req r = {0};
    ck_assert_int_eq(scan_text(&r, "PING\r\n", 6, 0, &lim), RESP_FRAME);
    ck_assert_int_eq(r.is_inline, 1);
    ck_assert_uint_eq(r.inline_len, 4);
    ck_assert_uint_eq(r.frame_len, 6);
    resp_req_reset(&r);
    ck_assert_int_eq(scan_text(&r, "set a b\nget", 11, 0, &lim), RESP_FRAME);
    ck_assert_uint_eq(r.inline_len, 7);
    ck_assert_uint_eq(r.frame_len, 8);
    resp_req_reset(&r);
    ck_assert_int_eq(scan_text(&r, "get a", 5, 0, &lim), RESP_PARTIAL);
    resp_req_deinit(&r);
}
END_TEST

static void inline_is(const char *line, const char *want_frame, int want_argc)
{
    struct evbuffer *out = evbuffer_new();
    ck_assert_int_eq(resp_inline_to_multibulk(line, strlen(line), out), want_argc);
    size_t n = evbuffer_get_length(out);
    ck_assert_uint_eq(n, strlen(want_frame));
    if (n)
        ck_assert_mem_eq(evbuffer_pullup(out, -1), want_frame, n);
    evbuffer_free(out);
}

START_TEST(test_inline_split)
{
    inline_is("ping", "*1\r\n$4\r\nping\r\n", 1);
    inline_is("  set  a   b ", "*3\r\n$3\r\nset\r\n$1\r\na\r\n$1\r\nb\r\n", 3);
    inline_is("set \"a b\" 'c\\'d'", "*3\r\n$3\r\nset\r\n$3\r\na b\r\n$3\r\nc'd\r\n", 3);
    inline_is("echo \"\\x41\\n\\t\\\\\\\"\"", "*2\r\n$4\r\necho\r\n$5\r\nA\n\t\\\"\r\n", 2);
    inline_is("echo \"\"", "*2\r\n$4\r\necho\r\n$0\r\n\r\n", 2);
    inline_is("   ", "", 0);
    inline_is("echo \"abc", "", -1);
    inline_is("echo \"a\"b", "", -1);
    inline_is("echo 'a", "", -1);
    inline_is("echo 'a'b", "", -1);
}
END_TEST

START_TEST(test_protocol_errors)
{
    ERR("*abc\r\n", "Protocol error: invalid multibulk length");
    ERR("*+1\r\n", "Protocol error: invalid multibulk length");
    ERR("*01\r\n", "Protocol error: invalid multibulk length");
    ERR("*\r\n", "Protocol error: invalid multibulk length");
    ERR("*1\0\r\n", "Protocol error: invalid multibulk length");
    ERR("*99999999999999999999\r\n", "Protocol error: invalid multibulk length");
    ERR("*1048577\r\n", "Protocol error: invalid multibulk length");
    ERR("*1\r\n$-1\r\n", "Protocol error: invalid bulk length");
    ERR("*1\r\n$x\r\n", "Protocol error: invalid bulk length");
    ERR("*1\r\n$1\0\r\n", "Protocol error: invalid bulk length");
    ERR("*1\r\n$9223372036854775808\r\n", "Protocol error: invalid bulk length");
    ERR("*2\r\n*1\r\n$1\r\na\r\n", "Protocol error: expected '$', got '*'");
    ERR("*1\r\n:1\r\n", "Protocol error: expected '$', got ':'");
    ERR("*1\r\n$3\r\nfooXY", "Protocol error: expected CRLF after bulk data");

    /* A bulk over the limit is refused from its header, before any payload. */
    struct resp_limits small = lim;
    small.max_bulk_len = 999;
    expect_error("*1\r\n$1000\r\n", 11, 0, &small, "Protocol error: invalid bulk length");
    small.max_multibulk_len = 3;
    expect_error("*4\r\n", 4, 0, &small, "Protocol error: invalid multibulk length");
}
END_TEST

START_TEST(test_long_lines)
{
    struct resp_limits l = lim;
    l.max_inline_len = 256;
    char buf[600];
    memset(buf, 'a', sizeof(buf));
    expect_error(buf, 257, 0, &l, "Protocol error: too big inline request");
    struct resp_req r = {0};
    ck_assert_int_eq(scan_text(&r, buf, 256, 0, &l), RESP_PARTIAL);
    resp_req_deinit(&r);
    memcpy(buf + 300, "\r\n", 2);
    expect_error(buf, 302, 0, &l, "Protocol error: too big inline request");

    memset(buf, '1', sizeof(buf));
    buf[0] = '*';
    expect_error(buf, sizeof(buf), 0, &l, "Protocol error: too big mbulk count string");
    memcpy(buf, "*1\r\n$", 5);
    expect_error(buf, sizeof(buf), 0, &l, "Protocol error: too big bulk count string");
}
END_TEST

START_TEST(test_unauthenticated_limits)
{
    expect_error("*11\r\n", 5, 1, &lim, "Protocol error: unauthenticated multibulk length");
    expect_error("*1\r\n$16385\r\n", 12, 1, &lim, "Protocol error: unauthenticated bulk length");
    struct resp_req r = {0};
    ck_assert_int_eq(scan_text(&r, "*10\r\n$16384\r\n", 13, 1, &lim), RESP_PARTIAL);
    resp_req_reset(&r);
    ck_assert_int_eq(scan_text(&r, "*11\r\n$16385\r\n", 13, 0, &lim), RESP_PARTIAL);
    resp_req_deinit(&r);
}
END_TEST

START_TEST(test_no_allocation_for_claims)
{
    struct resp_req r = {0};
    /* A million arguments and a 512 MB value claimed: nothing sized by them. */
    ck_assert_int_eq(scan_text(&r, "*1048576\r\n$536870912\r\nab", 24, 0, &lim), RESP_PARTIAL);
    ck_assert_uint_eq(r.argv_cap, 0);
    resp_req_deinit(&r);

    /* A request with many arguments grows the array; reset gives it back. */
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_printf(b, "*1000\r\n");
    for (int i = 0; i < 1000; i++)
        evbuffer_add_printf(b, "$1\r\nx\r\n");
    ck_assert_int_eq(resp_req_scan(&r, b, &lim, 0), RESP_FRAME);
    ck_assert_uint_eq(r.argc, 1000);
    ck_assert_uint_ge(r.argv_cap, 1000);
    resp_req_reset(&r);
    ck_assert_uint_eq(r.argv_cap, 0);
    ck_assert_ptr_null(r.argv);
    evbuffer_free(b);
    resp_req_deinit(&r);
}
END_TEST

START_TEST(test_reply_encoders)
{
    struct evbuffer *out = evbuffer_new();
    resp_add_error(out, "ERR bad %s", "line\r\nbreak");
    resp_add_status(out, "OK");
    resp_add_bulk(out, "a\0b", 3);
    static const char want[] = "-ERR bad line  break\r\n+OK\r\n$3\r\na\0b\r\n";
    ck_assert_uint_eq(evbuffer_get_length(out), sizeof(want) - 1);
    ck_assert_mem_eq(evbuffer_pullup(out, -1), want, sizeof(want) - 1);
    evbuffer_free(out);
}
END_TEST

/* ---- replies ---- */

/* Appends a random RESP2 reply of at most DEPTH levels to B; returns how
 * many replies hiredis will see for it (always 1). */
static void random_reply(struct evbuffer *b, int depth, unsigned *seed)
{
    int kind = rand_r(seed) % (depth > 0 ? 7 : 5);
    switch (kind) {
    case 0: evbuffer_add_printf(b, "+OK %u\r\n", rand_r(seed)); break;
    case 1: evbuffer_add_printf(b, "-ERR thing %u\r\n", rand_r(seed)); break;
    case 2: evbuffer_add_printf(b, ":%d\r\n", (int)rand_r(seed) - RAND_MAX / 2); break;
    case 3: {
        size_t n = (size_t)rand_r(seed) % 40;
        evbuffer_add_printf(b, "$%zu\r\n", n);
        for (size_t i = 0; i < n; i++) {
            char c = "ab\r\n\0*$:"[rand_r(seed) % 9];
            evbuffer_add(b, &c, 1);
        }
        evbuffer_add(b, "\r\n", 2);
        break;
    }
    case 4: evbuffer_add_printf(b, "$-1\r\n"); break;
    case 5: evbuffer_add_printf(b, "*-1\r\n"); break;
    default: {
        int n = rand_r(seed) % 5;
        evbuffer_add_printf(b, "*%d\r\n", n);
        for (int i = 0; i < n; i++)
            random_reply(b, depth - 1, seed);
    }
    }
}

/* Appends the next 1 to 16 bytes of a stream, as a separate chain the way a
 * socket read lands, so that the scanner resumes across chain edges. */
static size_t feed_piece(struct evbuffer *in, const char *next, size_t left, unsigned *seed)
{
    size_t n = 1 + (size_t)rand_r(seed) % 16;
    if (n > left)
        n = left;
    struct evbuffer *piece = evbuffer_new();
    evbuffer_add(piece, next, n);
    evbuffer_add_buffer(in, piece);
    evbuffer_free(piece);
    return n;
}

/* hiredis's reader is the oracle: each frame our scanner cuts must be
 * exactly one whole reply to it. */
START_TEST(test_reply_scan_against_hiredis)
{
    unsigned seed = 12345;
    for (int round = 0; round < 200; round++) {
        struct evbuffer *stream = evbuffer_new();
        int nreplies = 1 + rand_r(&seed) % 20;
        for (int i = 0; i < nreplies; i++)
            random_reply(stream, 4, &seed);
        size_t total = evbuffer_get_length(stream);
        const char *all = (const char *)evbuffer_pullup(stream, -1);

        /* Arrive in random pieces, each its own chain. */
        struct evbuffer *in = evbuffer_new();
        size_t fed = 0;
        int got = 0;
        struct resp_reply r = {0};
        while (got < nreplies) {
            enum resp_status st = resp_reply_scan(&r, in);
            ck_assert_int_ne(st, RESP_ERROR);
            if (st == RESP_PARTIAL) {
                ck_assert_uint_lt(fed, total);
                fed += feed_piece(in, all + fed, total - fed, &seed);
                continue;
            }
            const char *frame = (const char *)evbuffer_pullup(in, (ev_ssize_t)r.len);
            redisReader *rd = redisReaderCreate();
            void *reply = NULL;
            ck_assert_int_eq(redisReaderFeed(rd, frame, r.len), REDIS_OK);
            ck_assert_int_eq(redisReaderGetReply(rd, &reply), REDIS_OK);
            ck_assert_ptr_nonnull(reply); /* the frame holds a whole reply ... */
            freeReplyObject(reply);
            reply = NULL;
            ck_assert_int_eq(redisReaderGetReply(rd, &reply), REDIS_OK);
            ck_assert_ptr_null(reply); /* ... and nothing more */
            ck_assert_uint_eq(rd->pos, rd->len);
            redisReaderFree(rd);
            ck_assert_int_eq(r.type, frame[0]);
            evbuffer_drain(in, r.len);
            memset(&r, 0, sizeof(r));
            got++;
        }
        ck_assert_uint_eq(fed, total);
        ck_assert_uint_eq(evbuffer_get_length(in), 0);
        evbuffer_free(in);
        evbuffer_free(stream);
    }
}
END_TEST

/* A random RESP3 reply of at most DEPTH levels: every type, aggregates
 * (maps, sets, push frames, attributes before a value) nested. */
static void random_reply3(struct evbuffer *b, int depth, unsigned *seed)
{
    int kind = rand_r(seed) % (depth > 0 ? 14 : 9);
    switch (kind) {
    case 0: evbuffer_add_printf(b, "_\r\n"); break;
    case 1: evbuffer_add_printf(b, ",%d.%d\r\n", rand_r(seed) % 1000, rand_r(seed) % 100); break;
    case 2: evbuffer_add_printf(b, ",-inf\r\n"); break;
    case 3: evbuffer_add_printf(b, "#%c\r\n", rand_r(seed) % 2 ? 't' : 'f'); break;
    case 4: evbuffer_add_printf(b, "(%d%d%d\r\n", rand_r(seed), rand_r(seed), rand_r(seed)); break;
    case 5: {
        int n = rand_r(seed) % 30;
        evbuffer_add_printf(b, "=%d\r\ntxt:", n + 4);
        for (int i = 0; i < n; i++)
            evbuffer_add(b, i % 7 == 3 ? "\r" : i % 7 == 4 ? "\n" : "x", 1);
        evbuffer_add(b, "\r\n", 2);
        break;
    }
    case 6: {
        int n = rand_r(seed) % 5;
        evbuffer_add_printf(b, "!%d\r\nERR %.*s\r\n", 4 + n, n, "eeeee");
        break;
    }
    case 7: evbuffer_add_printf(b, "$%d\r\n%0*d\r\n", 3, 3, rand_r(seed) % 1000); break;
    case 8: evbuffer_add_printf(b, ":%d\r\n", rand_r(seed)); break;
    default: {
        static const char aggregate[] = "*%~>|";
        char t = aggregate[kind - 9];
        int n = rand_r(seed) % 4;
        evbuffer_add_printf(b, "%c%d\r\n", t, n);
        int elements = t == '%' || t == '|' ? 2 * n : n;
        for (int i = 0; i < elements; i++)
            random_reply3(b, depth - 1, seed);
        if (t == '|')
            random_reply3(b, depth - 1, seed); /* the value the attributes describe */
    }
    }
}

/* The RESP3 twin of the hiredis oracle, whose 0.14 reader knows RESP2
 * only: the generator knows where each reply ends, and the scanner must
 * cut every stream, fed in random pieces, exactly there. */
START_TEST(test_reply_scan_resp3_random)
{
    unsigned seed = 4242;
    for (int round = 0; round < 300; round++) {
        struct evbuffer *stream = evbuffer_new();
        size_t ends[32];
        int nreplies = 1 + rand_r(&seed) % 20;
        for (int i = 0; i < nreplies; i++) {
            random_reply3(stream, 4, &seed);
            ends[i] = evbuffer_get_length(stream);
        }
        size_t total = evbuffer_get_length(stream);
        const char *all = (const char *)evbuffer_pullup(stream, -1);
        struct evbuffer *in = evbuffer_new();
        size_t fed = 0, done = 0;
        int got = 0;
        struct resp_reply r = {0};
        while (got < nreplies) {
            enum resp_status st = resp_reply_scan(&r, in);
            ck_assert_msg(st != RESP_ERROR, "%s", r.error);
            if (st == RESP_PARTIAL) {
                ck_assert_uint_lt(fed, total);
                fed += feed_piece(in, all + fed, total - fed, &seed);
                continue;
            }
            ck_assert_uint_eq(done + r.len, ends[got]);
            ck_assert_int_eq(r.type, all[done]);
            evbuffer_drain(in, r.len);
            done += r.len;
            memset(&r, 0, sizeof(r));
            got++;
        }
        ck_assert_uint_eq(done, total);
        evbuffer_free(in);
        evbuffer_free(stream);
    }
}
END_TEST

static size_t reply_len(const char *text, size_t len, enum resp_status want)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, text, len);
    struct resp_reply r = {0};
    enum resp_status st = resp_reply_scan(&r, b);
    evbuffer_free(b);
    ck_assert_int_eq(st, want);
    return st == RESP_FRAME ? r.len : 0;
}

#define REPLY(text) reply_len(text, sizeof(text) - 1, RESP_FRAME)

START_TEST(test_reply_scan_resp3_and_errors)
{
    ck_assert_uint_eq(REPLY("%2\r\n+a\r\n:1\r\n$1\r\nb\r\n*1\r\n_\r\nXX"), 26);
    ck_assert_uint_eq(REPLY("~2\r\n,1.5\r\n#t\r\n"), 14);
    ck_assert_uint_eq(REPLY("|1\r\n+key\r\n+val\r\n:7\r\n"), 20);
    ck_assert_uint_eq(REPLY(">2\r\n+message\r\n(12345678901234567890\r\n"), 37);
    ck_assert_uint_eq(REPLY("=8\r\ntxt:abcd\r\n!3\r\nerr\r\n"), 14);
    ck_assert_uint_eq(REPLY("*0\r\n"), 4);
    ck_assert_uint_eq(REPLY("*3\r\n*0\r\n*-1\r\n$0\r\n\r\n"), 19);
#define REPLY_STATUS(text, st) reply_len(text, sizeof(text) - 1, st)
    REPLY_STATUS("*2\r\n:1\r\n", RESP_PARTIAL);
    REPLY_STATUS("$5\r\nabc", RESP_PARTIAL);
    REPLY_STATUS("?1\r\n", RESP_ERROR);
    REPLY_STATUS("$-2\r\n", RESP_ERROR);
    REPLY_STATUS("%-1\r\n", RESP_ERROR);
    REPLY_STATUS("$3\r\nabcd\r\n", RESP_ERROR);
    REPLY_STATUS("*x\r\n", RESP_ERROR);
}
END_TEST

START_TEST(test_parse_redirect)
{
    struct resp_redirect rd;
    static const char moved[] = "MOVED 3999 127.0.0.1:6381";
    ck_assert_int_eq(resp_parse_redirect(moved, sizeof(moved) - 1, &rd), 0);
    ck_assert_int_eq(rd.ask, 0);
    ck_assert_uint_eq(rd.slot, 3999);
    ck_assert_str_eq(rd.host, "127.0.0.1");
    ck_assert_int_eq(rd.port, 6381);
    static const char ask[] = "ASK 16383 ::1:7000";
    ck_assert_int_eq(resp_parse_redirect(ask, sizeof(ask) - 1, &rd), 0);
    ck_assert_int_eq(rd.ask, 1);
    ck_assert_str_eq(rd.host, "::1");
    ck_assert_int_eq(rd.port, 7000);
    static const char nohost[] = "MOVED 1 :7000";
    ck_assert_int_eq(resp_parse_redirect(nohost, sizeof(nohost) - 1, &rd), 0);
    ck_assert_str_eq(rd.host, "");
    const char *bad[] = {"MOVED", "MOVED 16384 a:1", "MOVED 1 a", "MOVED 1 a:0", "MOVED 1 a:1 x", "ERR x",
                         "ASK 1 a:99999", "MOVED x a:1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(resp_parse_redirect(bad[i], strlen(bad[i]), &rd) == -1, "%s", bad[i]);
}
END_TEST

START_TEST(test_head_and_flat_elements)
{
    char head[RESP_HEAD_MAX];
    const struct { char type; size_t n; const char *want; } heads[] = {
        {'*', 0, "*0\r\n"}, {'$', 7, "$7\r\n"}, {'*', 10, "*10\r\n"}, {':', 16384, ":16384\r\n"},
        {'$', SIZE_MAX, "$18446744073709551615\r\n"}};
    for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
        size_t n = resp_head(head, heads[i].type, heads[i].n);
        ck_assert_uint_eq(n, strlen(heads[i].want));
        ck_assert(memcmp(head, heads[i].want, n) == 0);
    }
    const struct { const char *s; size_t want; } elems[] = {
        {"$3\r\nabc\r\n$1\r\nx\r\n", 9}, {"$0\r\n\r\n", 6}, {"$-1\r\n:1\r\n", 5}, {"_\r\n", 3},
        {"+OK\r\n", 5}, {"-ERR x\r\n", 8}, {":-5\r\n", 5},
        {"$3\r\nab", 0},          /* runs past the end */
        {"$3\r\nabc", 0},         /* no CRLF after the bytes */
        {"$3x\r\nabc\r\n", 0},    /* not a length */
        {"*1\r\n$1\r\nx\r\n", 0}, /* an array: not flat */
        {"%1\r\n", 0}, {"+OK", 0}, {"+OK\n", 0}, {"", 0},
        {"$99999999999999999999999\r\nx\r\n", 0}};
    for (size_t i = 0; i < sizeof(elems) / sizeof(elems[0]); i++)
        ck_assert_msg(resp_flat_element(elems[i].s, strlen(elems[i].s)) == elems[i].want, "%s", elems[i].s);
}
END_TEST

/* Whole values at any depth, each cut short at every length: a node's
 * reply the cross-slot merge walks (XREAD's streams). */
START_TEST(test_flat_values)
{
    const struct { const char *s; size_t want; } values[] = {
        {"*2\r\n$1\r\na\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n:9\r\n", 46},
        {"%1\r\n$1\r\nk\r\n~2\r\n,1.5\r\n#t\r\n", 25}, {"*-1\r\n", 5}, {"*0\r\n", 4}, {"_\r\n", 3},
        {"|1\r\n+a\r\n:1\r\n$1\r\nx\r\n", 19}, {">2\r\n+m\r\n$-1\r\n", 13}, {"=7\r\ntxt:abc\r\n", 13},
        {"*3\r\n:1\r\n:2\r\n", 0},          /* one element short */
        {"*99999999999\r\n:1\r\n", 0},      /* a count past what is there */
        {"*1\r\n?x\r\n", 0}, {"$2\r\nabc\r\n", 0}, {"", 0}, {"*1x\r\n:1\r\n", 0}};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        size_t len = strlen(values[i].s);
        ck_assert_msg(resp_flat_value(values[i].s, len) == values[i].want, "%s", values[i].s);
        for (size_t cut = 0; values[i].want && cut < values[i].want; cut++)
            ck_assert_msg(resp_flat_value(values[i].s, cut) == 0, "%s cut at %zu", values[i].s, cut);
    }
    /* nesting deeper than any stack */
    size_t depth = 100000, at = 0;
    char *deep = malloc(depth * 4 + 8);
    for (size_t d = 0; d < depth; d++, at += 4)
        memcpy(deep + at, "*1\r\n", 4);
    memcpy(deep + at, ":1\r\n", 4);
    ck_assert_uint_eq(resp_flat_value(deep, at + 4), at + 4);
    free(deep);
}
END_TEST

static Suite *resp_suite(void)
{
    Suite *s = suite_create("resp");
    TCase *tc = tcase_create("requests");
    tcase_add_test(tc, test_simple_frame);
    tcase_add_test(tc, test_every_split_point);
    tcase_add_test(tc, test_byte_by_byte_chains);
    tcase_add_test(tc, test_empty_requests);
    tcase_add_test(tc, test_inline);
    tcase_add_test(tc, test_inline_split);
    tcase_add_test(tc, test_protocol_errors);
    tcase_add_test(tc, test_long_lines);
    tcase_add_test(tc, test_unauthenticated_limits);
    tcase_add_test(tc, test_no_allocation_for_claims);
    tcase_add_test(tc, test_reply_encoders);
    tcase_add_test(tc, test_arg_reader_words_and_copies);
    tcase_add_test(tc, test_arg_reader_long_argument);
    tcase_add_test(tc, test_arg_reader_numbers);
    suite_add_tcase(s, tc);
    TCase *tr = tcase_create("replies");
    tcase_add_test(tr, test_reply_scan_against_hiredis);
    tcase_add_test(tr, test_reply_scan_resp3_and_errors);
    tcase_add_test(tr, test_reply_scan_resp3_random);
    tcase_add_test(tr, test_parse_redirect);
    tcase_add_test(tr, test_head_and_flat_elements);
    tcase_add_test(tr, test_flat_values);
    suite_add_tcase(s, tr);
    return s;
}

UNIT_MAIN(resp_suite)
