/*
 * check_proxyproto: PROXY protocol v1 and v2 headers, whole, cut at every
 * byte, and forged.
 */
#include "base/proxyproto.h"
#include "unit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

static int parse(const void *buf, size_t len, struct proxyproto_result *r)
{
    char why[128];
    return proxyproto_parse(buf, len, r, why, sizeof(why));
}

/* Every proper prefix of a valid header asks for more. */
static void check_prefixes(const unsigned char *h, size_t n)
{
    struct proxyproto_result r;
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(parse(h, i, &r) == 0, "prefix of %zu bytes", i);
}

START_TEST(test_v1_tcp4)
{
    static const char h[] = "PROXY TCP4 192.0.2.7 10.0.0.1 54321 6380\r\n*1\r\n$4\r\nPING\r\n";
    size_t hl = strlen("PROXY TCP4 192.0.2.7 10.0.0.1 54321 6380\r\n");
    struct proxyproto_result r;
    ck_assert_int_eq(parse(h, sizeof(h) - 1, &r), (int)hl);
    ck_assert_int_eq(r.version, 1);
    ck_assert_int_eq(r.local, 0);
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&r.src;
    ck_assert_int_eq(sin->sin_family, AF_INET);
    ck_assert_int_eq(ntohs(sin->sin_port), 54321);
    char text[INET_ADDRSTRLEN];
    ck_assert_str_eq(inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text)), "192.0.2.7");
    check_prefixes((const unsigned char *)h, hl);
}
END_TEST

START_TEST(test_v1_tcp6_and_unknown)
{
    static const char h6[] = "PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n";
    struct proxyproto_result r;
    ck_assert_int_eq(parse(h6, sizeof(h6) - 1, &r), (int)sizeof(h6) - 1);
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&r.src;
    ck_assert_int_eq(sin6->sin6_family, AF_INET6);
    ck_assert_int_eq(ntohs(sin6->sin6_port), 1);
    static const char hu[] = "PROXY UNKNOWN\r\n";
    ck_assert_int_eq(parse(hu, sizeof(hu) - 1, &r), (int)sizeof(hu) - 1);
    ck_assert_int_eq(r.local, 1);
    static const char hu2[] = "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
    ck_assert_int_eq(parse(hu2, sizeof(hu2) - 1, &r), (int)sizeof(hu2) - 1);
}
END_TEST

START_TEST(test_v1_forged)
{
    static const char *const bad[] = {
        "PROXY TCP4 192.0.2.7 10.0.0.1 54321\r\n",          /* a port missing */
        "PROXY TCP4 192.0.2.7 10.0.0.1 54321 6380 7\r\n",   /* one field too many */
        "PROXY TCP4 300.0.2.7 10.0.0.1 54321 6380\r\n",     /* not an address */
        "PROXY TCP4 2001:db8::1 10.0.0.1 1 2\r\n",          /* IPv6 under TCP4 */
        "PROXY TCP4 192.0.2.7 10.0.0.1 65536 6380\r\n",     /* a port out of range */
        "PROXY TCP4 192.0.2.7 10.0.0.1 0654 6380\r\n",      /* a leading zero */
        "PROXY TCP4 192.0.2.7 10.0.0.1 -1 6380\r\n",
        "PROXY UDP4 192.0.2.7 10.0.0.1 1 2\r\n",
        "PROXY TCP4 192.0.2.7 10.0.0.1 1 2\rX",             /* CR without LF */
        "*1\r\n$4\r\nPING\r\n",                              /* no header at all */
        "PROXX TCP4",
    };
    struct proxyproto_result r;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(parse(bad[i], strlen(bad[i]), &r) == -1, "accepted: %s", bad[i]);
    /* No CRLF within 107 bytes: refused once 107 bytes are in, not later. */
    char longline[200] = "PROXY TCP4 ";
    memset(longline + 11, '1', sizeof(longline) - 12);
    longline[sizeof(longline) - 1] = '\0';
    ck_assert_int_eq(parse(longline, PROXYPROTO_V1_MAX - 1, &r), 0);
    ck_assert_int_eq(parse(longline, PROXYPROTO_V1_MAX, &r), -1);
    /* 108 bytes with the CRLF: one too many, though the CR is at byte 107. */
    longline[PROXYPROTO_V1_MAX - 1] = '\r';
    longline[PROXYPROTO_V1_MAX] = '\n';
    ck_assert_int_eq(parse(longline, PROXYPROTO_V1_MAX + 1, &r), -1);
}
END_TEST

/* A v2 header for FAMILY (0x11 TCP4, 0x21 TCP6), command CMD, with ALEN
 * address bytes from ADDR, into H; returns its length. */
static size_t v2(unsigned char *h, unsigned cmd, unsigned fam, const void *addr, size_t alen)
{
    static const unsigned char sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
    memcpy(h, sig, 12);
    h[12] = (unsigned char)(0x20 | cmd);
    h[13] = (unsigned char)fam;
    h[14] = (unsigned char)(alen >> 8);
    h[15] = (unsigned char)alen;
    memcpy(h + 16, addr, alen);
    return 16 + alen;
}

START_TEST(test_v2)
{
    unsigned char h[2048], a4[12] = {192, 0, 2, 9, 10, 0, 0, 1, 0xD4, 0x31, 0x18, 0xEC};
    struct proxyproto_result r;
    size_t n = v2(h, 1, 0x11, a4, sizeof(a4));
    ck_assert_int_eq(parse(h, n, &r), (int)n);
    ck_assert_int_eq(r.version, 2);
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&r.src;
    ck_assert_int_eq(sin->sin_family, AF_INET);
    ck_assert_int_eq(ntohs(sin->sin_port), 0xD431);
    ck_assert_int_eq(((const unsigned char *)&sin->sin_addr)[3], 9);
    check_prefixes(h, n);
    /* TLVs after the addresses are skipped. */
    unsigned char a4tlv[12 + 7];
    memcpy(a4tlv, a4, 12);
    memcpy(a4tlv + 12, "\x04\x00\x04test", 7);
    n = v2(h, 1, 0x11, a4tlv, sizeof(a4tlv));
    ck_assert_int_eq(parse(h, n, &r), (int)n);
    unsigned char a6[36] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1, [32] = 0x1F, [33] = 0x90};
    n = v2(h, 1, 0x21, a6, sizeof(a6));
    ck_assert_int_eq(parse(h, n, &r), (int)n);
    ck_assert_int_eq(((const struct sockaddr_in6 *)&r.src)->sin6_family, AF_INET6);
    ck_assert_int_eq(ntohs(((const struct sockaddr_in6 *)&r.src)->sin6_port), 8080);
    n = v2(h, 0, 0x00, "", 0); /* LOCAL: the proxy's own health check */
    ck_assert_int_eq(parse(h, n, &r), 16);
    ck_assert_int_eq(r.local, 1);
}
END_TEST

START_TEST(test_v2_forged)
{
    unsigned char h[2048], a4[12] = {0};
    struct proxyproto_result r;
    size_t n = v2(h, 1, 0x11, a4, 8); /* too short for IPv4 */
    ck_assert_int_eq(parse(h, n, &r), -1);
    n = v2(h, 1, 0x21, a4, 12); /* too short for IPv6 */
    ck_assert_int_eq(parse(h, n, &r), -1);
    n = v2(h, 2, 0x11, a4, 12); /* an unknown command */
    ck_assert_int_eq(parse(h, n, &r), -1);
    n = v2(h, 1, 0x12, a4, 12); /* UDP */
    ck_assert_int_eq(parse(h, n, &r), -1);
    n = v2(h, 1, 0x11, a4, 12);
    h[12] = 0x31; /* version 3 */
    ck_assert_int_eq(parse(h, n, &r), -1);
    n = v2(h, 1, 0x11, a4, 12);
    h[14] = 0xFF; /* claims 65 KB: refused at once, without waiting for them */
    ck_assert_int_eq(parse(h, 16, &r), -1);
    n = v2(h, 1, 0x11, a4, 12);
    h[3] = 0x0B; /* a broken signature */
    ck_assert_int_eq(parse(h, n, &r), -1);
}
END_TEST

static Suite *proxyproto_suite(void)
{
    Suite *s = suite_create("proxyproto");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, test_v1_tcp4);
    tcase_add_test(tc, test_v1_tcp6_and_unknown);
    tcase_add_test(tc, test_v1_forged);
    tcase_add_test(tc, test_v2);
    tcase_add_test(tc, test_v2_forged);
    suite_add_tcase(s, tc);
    return s;
}

UNIT_MAIN(proxyproto_suite)
