/*
 * proxyproto: the PROXY protocol header (HAProxy's, versions 1 and 2) that a
 * load balancer such as Nginx's stream proxy sends before a client's own
 * bytes, naming the client's address. A pure parser over a byte buffer: it
 * decides from at most PROXYPROTO_MAX bytes, and never reads past the header.
 */
#ifndef RG_PROXYPROTO_H
#define RG_PROXYPROTO_H

#include <stddef.h>
#include <sys/socket.h>

/* The most bytes a header respgate accepts may take: a version 1 line is at
 * most 107; a version 2 header is 16 bytes and its length, which respgate
 * accepts up to PROXYPROTO_MAX - 16 (addresses and a few TLVs). */
#define PROXYPROTO_V1_MAX 107
#define PROXYPROTO_MAX 1024

struct proxyproto_result {
    int version;                  /* 1 or 2 */
    int local;                    /* the proxy's own connection (v2 LOCAL, v1 UNKNOWN): keep the socket's addresses */
    struct sockaddr_storage src;  /* the client's address, unless local */
    socklen_t srclen;
};

/* Parses the header at the start of BUF (LEN bytes so far). Returns the
 * header's length (> 0) with *OUT filled; 0 if LEN bytes are a valid start
 * but not yet the whole header; or -1 if they cannot start a valid one, with
 * the reason in WHY (WHYLEN bytes). */
int proxyproto_parse(const unsigned char *buf, size_t len, struct proxyproto_result *out, char *why, size_t whylen);

#endif
