/*
 * proxyproto: PROXY protocol v1 and v2 headers, see proxyproto.h.
 */
#include "base/proxyproto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

static const unsigned char v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static int fail(char *why, size_t whylen, const char *text)
{
    snprintf(why, whylen, "%s", text);
    return -1;
}

/* A decimal port of at most 5 digits, no leading zero, 0 to 65535. */
static int parse_port(const char *s, unsigned *port)
{
    size_t n = strlen(s);
    if (n == 0 || n > 5 || (n > 1 && s[0] == '0') || strspn(s, "0123456789") != n)
        return -1;
    unsigned long v = strtoul(s, NULL, 10);
    if (v > 65535)
        return -1;
    *port = (unsigned)v;
    return 0;
}

/* "PROXY TCP4|TCP6 src dst sport dport\r\n", or "PROXY UNKNOWN ...\r\n". */
static int parse_v1(const unsigned char *buf, size_t len, struct proxyproto_result *out, char *why, size_t whylen)
{
    /* 107 bytes with the CRLF: the CR is within the first 106. */
    const unsigned char *cr = memchr(buf, '\r', len < PROXYPROTO_V1_MAX - 1 ? len : PROXYPROTO_V1_MAX - 1);
    if (cr == NULL)
        return len < PROXYPROTO_V1_MAX ? 0 : fail(why, whylen, "a PROXY v1 line longer than 107 bytes");
    size_t n = (size_t)(cr - buf);
    if (n + 1 >= len)
        return 0;
    if (cr[1] != '\n')
        return fail(why, whylen, "a PROXY v1 line not ended by CRLF");
    char line[PROXYPROTO_V1_MAX + 1];
    memcpy(line, buf, n);
    line[n] = '\0';
    if (memchr(line, '\0', n))
        return fail(why, whylen, "a NUL byte in a PROXY v1 line");
    out->version = 1;
    if (strncmp(line, "PROXY UNKNOWN", 13) == 0 && (line[13] == '\0' || line[13] == ' ')) {
        out->local = 1;
        return (int)n + 2;
    }
    char *f[7], *save = NULL;
    int nf = 0;
    for (char *t = strtok_r(line, " ", &save); t && nf < 7; t = strtok_r(NULL, " ", &save))
        f[nf++] = t;
    unsigned sport, dport;
    if (nf != 6 || strcmp(f[0], "PROXY") != 0 || (strcmp(f[1], "TCP4") != 0 && strcmp(f[1], "TCP6") != 0) ||
        parse_port(f[4], &sport) < 0 || parse_port(f[5], &dport) < 0)
        return fail(why, whylen, "a malformed PROXY v1 line");
    memset(&out->src, 0, sizeof(out->src));
    if (f[1][3] == '4') {
        struct sockaddr_in *sin = (struct sockaddr_in *)&out->src;
        struct in_addr dst;
        if (inet_pton(AF_INET, f[2], &sin->sin_addr) != 1 || inet_pton(AF_INET, f[3], &dst) != 1)
            return fail(why, whylen, "a PROXY v1 line with a bad IPv4 address");
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)sport);
        out->srclen = sizeof(*sin);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->src;
        struct in6_addr dst;
        if (inet_pton(AF_INET6, f[2], &sin6->sin6_addr) != 1 || inet_pton(AF_INET6, f[3], &dst) != 1)
            return fail(why, whylen, "a PROXY v1 line with a bad IPv6 address");
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)sport);
        out->srclen = sizeof(*sin6);
    }
    return (int)n + 2;
}

/* The binary header: signature, version and command, family and protocol,
 * length, then the addresses and TLVs (ignored). */
static int parse_v2(const unsigned char *buf, size_t len, struct proxyproto_result *out, char *why, size_t whylen)
{
    if (len < 16)
        return 0;
    if ((buf[12] >> 4) != 2)
        return fail(why, whylen, "a PROXY v2 header of an unknown version");
    unsigned cmd = buf[12] & 0x0F, fam = buf[13] >> 4, proto = buf[13] & 0x0F;
    size_t alen = (size_t)buf[14] << 8 | buf[15];
    if (cmd > 1)
        return fail(why, whylen, "a PROXY v2 header with an unknown command");
    if (16 + alen > PROXYPROTO_MAX)
        return fail(why, whylen, "a PROXY v2 header longer than respgate accepts");
    if (len < 16 + alen)
        return 0;
    const unsigned char *a = buf + 16;
    out->version = 2;
    memset(&out->src, 0, sizeof(out->src));
    if (cmd == 0 || proto == 0 || fam == 0) {
        /* LOCAL (the proxy's health check), or a family or protocol it could
         * not name: the connection's own addresses stand. */
        out->local = 1;
        return (int)(16 + alen);
    }
    if (proto != 1)
        return fail(why, whylen, "a PROXY v2 header for a protocol other than TCP");
    if (fam == 1) {
        if (alen < 12)
            return fail(why, whylen, "a PROXY v2 header too short for IPv4 addresses");
        struct sockaddr_in *sin = (struct sockaddr_in *)&out->src;
        sin->sin_family = AF_INET;
        memcpy(&sin->sin_addr, a, 4);
        memcpy(&sin->sin_port, a + 8, 2);
        out->srclen = sizeof(*sin);
    } else if (fam == 2) {
        if (alen < 36)
            return fail(why, whylen, "a PROXY v2 header too short for IPv6 addresses");
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->src;
        sin6->sin6_family = AF_INET6;
        memcpy(&sin6->sin6_addr, a, 16);
        memcpy(&sin6->sin6_port, a + 32, 2);
        out->srclen = sizeof(*sin6);
    } else if (fam == 3) {
        if (alen < 216)
            return fail(why, whylen, "a PROXY v2 header too short for unix socket addresses");
        struct sockaddr_un *sun = (struct sockaddr_un *)&out->src;
        sun->sun_family = AF_UNIX;
        memcpy(sun->sun_path, a, sizeof(sun->sun_path) - 1 < 108 ? sizeof(sun->sun_path) - 1 : 108);
        out->srclen = sizeof(*sun);
    } else {
        return fail(why, whylen, "a PROXY v2 header of an unknown address family");
    }
    return (int)(16 + alen);
}

int proxyproto_parse(const unsigned char *buf, size_t len, struct proxyproto_result *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof(*out));
    if (len == 0)
        return 0;
    /* As many bytes as there are of either signature must match it. */
    size_t n1 = len < 6 ? len : 6, n2 = len < sizeof(v2_sig) ? len : sizeof(v2_sig);
    if (memcmp(buf, "PROXY ", n1) == 0)
        return n1 < 6 ? 0 : parse_v1(buf, len, out, why, whylen);
    if (memcmp(buf, v2_sig, n2) == 0)
        return n2 < sizeof(v2_sig) ? 0 : parse_v2(buf, len, out, why, whylen);
    return fail(why, whylen, "no PROXY protocol header");
}
