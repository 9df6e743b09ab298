/*
 * resp: the RESP request scanner, see resp.h.
 *
 * Error texts are redis-server's own (networking.c, processMultibulkBuffer and
 * processInlineBuffer), so a client sees the same words from respgate as from
 * Redis. Unlike Redis, the CRLF after each bulk is checked: respgate forwards
 * the frame's bytes as they are, and a malformed frame must never reach a
 * backend connection that other clients share.
 */
#include "base/resp.h"

#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { ST_START = 0, ST_BULK_HEADER, ST_BULK_DATA };

#define LEN_LINE_MAX 24 /* "$" or "*", a sign, 19 digits, and room to spare */

static enum resp_status fail(struct resp_req *r, const char *msg)
{
    r->error = msg;
    return RESP_ERROR;
}

/* A read position in a buffer that only moves forward within one scan call,
 * so each call walks the buffer's chains once, not once per element: an
 * evbuffer_ptr set from the start costs a walk over every chain before it.
 * The buffer's first chain is read directly: a frame that lies in it, as
 * nearly every one does, is scanned with plain loads and memchr, and only
 * bytes past it go through evbuffer calls. */
struct cursor {
    struct evbuffer *buf;
    const unsigned char *flat; /* the first chain's bytes */
    size_t flat_len;
    struct evbuffer_ptr p;
    size_t pos;
    int ok; /* p is at pos; set at the first read past the first chain */
};

static void cursor_init(struct cursor *c, struct evbuffer *buf)
{
    struct evbuffer_iovec v;
    c->buf = buf;
    c->pos = 0;
    c->ok = 0;
    if (evbuffer_peek(buf, -1, NULL, &v, 1) >= 1) {
        c->flat = v.iov_base;
        c->flat_len = v.iov_len;
    } else {
        c->flat = NULL;
        c->flat_len = 0;
    }
}

static int cursor_seek(struct cursor *c, size_t pos)
{
    if (c->ok && pos >= c->pos)
        c->ok = evbuffer_ptr_set(c->buf, &c->p, pos - c->pos, EVBUFFER_PTR_ADD) == 0;
    else
        c->ok = evbuffer_ptr_set(c->buf, &c->p, pos, EVBUFFER_PTR_SET) == 0;
    c->pos = pos;
    return c->ok ? 0 : -1;
}

static int byte_at(struct cursor *c, size_t pos)
{
    unsigned char b;
    if (pos < c->flat_len)
        return c->flat[pos];
    if (cursor_seek(c, pos) < 0 || evbuffer_copyout_from(c->buf, &c->p, &b, 1) != 1)
        return -1;
    return b;
}

/* Length of the line starting at POS up to its line end, or -1 if no line end
 * is in the buffer yet. */
static long long line_len(struct cursor *c, size_t pos, enum evbuffer_eol_style style)
{
    struct evbuffer_ptr e;
    size_t eol_len;
    for (size_t from = pos; from < c->flat_len;) {
        const unsigned char *lf = memchr(c->flat + from, '\n', c->flat_len - from);
        if (lf == NULL)
            break; /* the line goes on past the first chain */
        size_t at = (size_t)(lf - c->flat);
        if (style == EVBUFFER_EOL_LF)
            return (long long)(at - pos);
        if (at > pos && c->flat[at - 1] == '\r')
            return (long long)(at - 1 - pos);
        from = at + 1; /* a bare LF: CRLF_STRICT looks further */
    }
    if (cursor_seek(c, pos) < 0)
        return -1;
    e = evbuffer_search_eol(c->buf, &c->p, &eol_len, style);
    return e.pos < 0 ? -1 : (long long)(e.pos - (ev_ssize_t)pos);
}

/* Parses the decimal number of a length line "*N" or "$N" of LEN bytes at POS
 * (prefix included) the way Redis's string2ll does: an optional minus sign,
 * no leading zeros, no other characters. Returns 0 or -1. */
static int length_at(struct cursor *c, size_t pos, long long len, long long *out)
{
    char buf[LEN_LINE_MAX];
    const char *s = buf;
    if (len < 2 || len >= LEN_LINE_MAX)
        return -1;
    if (pos + (size_t)len <= c->flat_len)
        s = (const char *)c->flat + pos + 1;
    else if (cursor_seek(c, pos + 1) < 0 || evbuffer_copyout_from(c->buf, &c->p, buf, (size_t)len - 1) != len - 1)
        return -1;
    size_t n = (size_t)len - 1, i = 0;
    int neg = s[0] == '-';
    i = (size_t)neg;
    if (i == n || s[i] < '0' || s[i] > '9' || (s[i] == '0' && n - i > 1))
        return -1;
    unsigned long long v = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9' || v > (9223372036854775807ULL - (unsigned)(s[i] - '0')) / 10)
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = neg ? -(long long)v : (long long)v;
    return 0;
}

static int push_arg(struct resp_req *r, size_t off, size_t len)
{
    if (r->argc == r->argv_cap) {
        size_t cap = r->argv_cap ? r->argv_cap * 2 : 8;
        struct resp_arg *v = realloc(r->argv, cap * sizeof(*v));
        if (v == NULL)
            return -1;
        r->argv = v;
        r->argv_cap = cap;
    }
    r->argv[r->argc].off = off;
    r->argv[r->argc].len = len;
    r->argc++;
    return 0;
}

static enum resp_status scan_inline(struct resp_req *r, struct cursor *cur, const struct resp_limits *lim)
{
    size_t avail = evbuffer_get_length(cur->buf);
    long long n = line_len(cur, 0, EVBUFFER_EOL_LF);
    if (n < 0)
        return avail > lim->max_inline_len ? fail(r, "Protocol error: too big inline request") : RESP_PARTIAL;
    if ((unsigned long long)n > lim->max_inline_len)
        return fail(r, "Protocol error: too big inline request");
    r->is_inline = 1;
    r->frame_len = (size_t)n + 1;
    r->inline_len = (size_t)n;
    if (n > 0 && byte_at(cur, (size_t)n - 1) == '\r')
        r->inline_len--;
    return RESP_FRAME;
}

enum resp_status resp_req_scan(struct resp_req *r, struct evbuffer *buf, const struct resp_limits *lim, int unauth)
{
    size_t avail = evbuffer_get_length(buf);
    long long n, v;
    struct cursor cur;
    cursor_init(&cur, buf);

    if (r->state == ST_START) {
        int c = byte_at(&cur, 0);
        if (c < 0)
            return RESP_PARTIAL;
        if (c != '*')
            return scan_inline(r, &cur, lim);
        if ((n = line_len(&cur, 0, EVBUFFER_EOL_CRLF_STRICT)) < 0)
            return avail > lim->max_inline_len ? fail(r, "Protocol error: too big mbulk count string")
                                               : RESP_PARTIAL;
        if (length_at(&cur, 0, n, &v) < 0 || v > (long long)lim->max_multibulk_len)
            return fail(r, "Protocol error: invalid multibulk length");
        if (unauth && v > RESP_UNAUTH_MAX_MULTIBULK)
            return fail(r, "Protocol error: unauthenticated multibulk length");
        r->pos = (size_t)n + 2;
        r->argc = 0;
        if (v <= 0) { /* Redis skips "*0" and "*-1" silently */
            r->frame_len = r->pos;
            return RESP_FRAME;
        }
        r->nargs = v;
        r->state = ST_BULK_HEADER;
    }

    while (r->argc < (size_t)r->nargs) {
        if (r->state == ST_BULK_HEADER) {
            int c = byte_at(&cur, r->pos);
            if (c < 0)
                return RESP_PARTIAL;
            if (c != '$') {
                snprintf(r->errbuf, sizeof(r->errbuf), "Protocol error: expected '$', got '%c'", c);
                return fail(r, r->errbuf);
            }
            if ((n = line_len(&cur, r->pos, EVBUFFER_EOL_CRLF_STRICT)) < 0)
                return avail - r->pos > lim->max_inline_len ? fail(r, "Protocol error: too big bulk count string")
                                                            : RESP_PARTIAL;
            if (length_at(&cur, r->pos, n, &v) < 0 || v < 0 || (unsigned long long)v > lim->max_bulk_len)
                return fail(r, "Protocol error: invalid bulk length");
            if (unauth && v > RESP_UNAUTH_MAX_BULK)
                return fail(r, "Protocol error: unauthenticated bulk length");
            r->pos += (size_t)n + 2;
            r->bulk = v;
            r->state = ST_BULK_DATA;
        }
        size_t end = r->pos + (size_t)r->bulk;
        if (avail < end + 2)
            return RESP_PARTIAL;
        if (byte_at(&cur, end) != '\r' || byte_at(&cur, end + 1) != '\n')
            return fail(r, "Protocol error: expected CRLF after bulk data");
        if (push_arg(r, r->pos, (size_t)r->bulk) < 0)
            return fail(r, "Protocol error: out of memory for the request's arguments");
        r->pos = end + 2;
        r->state = ST_BULK_HEADER;
    }
    r->frame_len = r->pos;
    return RESP_FRAME;
}

/* The line at R->pos of type C, N bytes before its CRLF: counts the
 * elements it completes or opens. Returns NULL, or the error text. */
static inline const char *take_line(struct resp_reply *r, struct cursor *cur, int c, long long n)
{
    long long v;
    switch (c) {
    case '+': case '-': case ':': case ',': case '#': case '(': case '_':
        r->pending--;
        break;
    case '$': case '=': case '!':
        if (length_at(cur, r->pos, n, &v) < 0 || v < -1 || (v == -1 && c != '$'))
            return "invalid bulk length";
        if (v == -1) {
            r->pending--;
        } else {
            r->in_bulk = 1;
            r->bulk = v;
        }
        break;
    case '*': case '~': case '>': case '%': case '|':
        if (length_at(cur, r->pos, n, &v) < 0 || v < -1 || v > INT32_MAX || (v == -1 && c != '*'))
            return "invalid aggregate length";
        if (v == -1)
            r->pending--;
        else if (c == '%')
            r->pending += 2 * v - 1;
        else if (c == '|')
            r->pending += 2 * v; /* attributes precede the element they describe */
        else
            r->pending += v - 1;
        break;
    default:
        return "unknown reply type";
    }
    return NULL;
}

enum resp_status resp_reply_scan(struct resp_reply *r, struct evbuffer *buf)
{
    size_t avail = evbuffer_get_length(buf);
    long long n;
    struct cursor cur;
    cursor_init(&cur, buf);

    if (r->pending == 0 && r->pos == 0)
        r->pending = 1;
    for (;;) {
        if (r->in_bulk) {
            size_t end = r->pos + (size_t)r->bulk;
            if (avail < end + 2)
                return RESP_PARTIAL;
            if (byte_at(&cur, end) != '\r' || byte_at(&cur, end + 1) != '\n') {
                r->error = "bulk data not followed by CRLF";
                return RESP_ERROR;
            }
            r->pos = end + 2;
            r->in_bulk = 0;
            r->pending--;
        }
        if (r->pending == 0) {
            r->len = r->pos;
            return RESP_FRAME;
        }
        int c = byte_at(&cur, r->pos);
        if (c < 0)
            return RESP_PARTIAL;
        if (r->pos == 0)
            r->type = (char)c;
        if ((n = line_len(&cur, r->pos, EVBUFFER_EOL_CRLF_STRICT)) < 0) {
            if (avail - r->pos > RESP_REPLY_LINE_MAX) {
                r->error = "reply line too long";
                return RESP_ERROR;
            }
            return RESP_PARTIAL;
        }
        const char *bad = take_line(r, &cur, c, n);
        if (bad) {
            r->error = bad;
            return RESP_ERROR;
        }
        r->pos += (size_t)n + 2;
    }
}

int resp_parse_redirect(const char *line, size_t len, struct resp_redirect *out)
{
    char buf[320];
    if (len >= sizeof(buf))
        return -1;
    memcpy(buf, line, len);
    buf[len] = '\0';
    char host[256];
    unsigned slot;
    int port, used = 0;
    const char *rest;
    if (strncmp(buf, "MOVED ", 6) == 0)
        out->ask = 0, rest = buf + 6;
    else if (strncmp(buf, "ASK ", 4) == 0)
        out->ask = 1, rest = buf + 4;
    else
        return -1;
    /* "<slot> <host>:<port>", where host may itself hold colons (IPv6) */
    const char *colon = strrchr(rest, ':');
    if (colon == NULL || sscanf(rest, "%u %255[^ ]%n", &slot, host, &used) != 2 || rest[used] != '\0' ||
        slot >= 16384)
        return -1;
    char *hcolon = strrchr(host, ':');
    if (hcolon == NULL || sscanf(hcolon + 1, "%d%n", &port, &used) != 1 || hcolon[1 + used] != '\0' || port <= 0 ||
        port > 65535)
        return -1;
    *hcolon = '\0';
    out->slot = slot;
    out->port = port;
    snprintf(out->host, sizeof(out->host), "%s", host);
    return 0;
}

void resp_req_reset(struct resp_req *r)
{
    struct resp_arg *argv = r->argv;
    size_t cap = r->argv_cap;
    if (cap > 256) { /* one huge request must not pin its array forever */
        free(argv);
        argv = NULL;
        cap = 0;
    }
    memset(r, 0, sizeof(*r));
    r->argv = argv;
    r->argv_cap = cap;
}

void resp_req_deinit(struct resp_req *r)
{
    free(r->argv);
    memset(r, 0, sizeof(*r));
}

/* ---- the one argument reader ---- */

/* Copies the first N bytes of argument A of FRAME into DST; N is at most
 * A->len. Returns 0, or -1 if the frame is shorter than A says. */
static int arg_bytes(struct evbuffer *frame, const struct resp_arg *a, char *dst, size_t n)
{
    struct evbuffer_ptr p;
    if (n == 0)
        return 0;
    if (evbuffer_ptr_set(frame, &p, a->off, EVBUFFER_PTR_SET) < 0 ||
        evbuffer_copyout_from(frame, &p, dst, n) != (ev_ssize_t)n)
        return -1;
    return 0;
}

/* Argument I of Q, or NULL when Q has no such argument. */
static const struct resp_arg *arg_at(const struct resp_req *q, size_t i)
{
    return i < q->argc ? &q->argv[i] : NULL;
}

int resp_arg_is(struct evbuffer *frame, const struct resp_req *q, size_t i, const char *word)
{
    const struct resp_arg *a = arg_at(q, i);
    size_t wlen = strlen(word);
    if (a == NULL || a->len != wlen)
        return 0;
    char buf[64];
    struct resp_arg piece = *a;
    for (size_t done = 0; done < wlen; done += piece.len) {
        piece.off = a->off + done;
        piece.len = wlen - done < sizeof(buf) ? wlen - done : sizeof(buf);
        if (arg_bytes(frame, &piece, buf, piece.len) < 0 || strncasecmp(buf, word + done, piece.len) != 0)
            return 0;
    }
    return 1;
}

int resp_arg_str(struct evbuffer *frame, const struct resp_req *q, size_t i, char *dst, size_t cap, size_t *len)
{
    const struct resp_arg *a = arg_at(q, i);
    size_t n = a == NULL ? 0 : a->len < cap - 1 ? a->len : cap - 1;
    if (a && arg_bytes(frame, a, dst, n) < 0)
        n = 0, a = NULL;
    dst[n] = '\0';
    if (len)
        *len = n;
    return a && n == a->len ? 0 : -1;
}

#define LONG_STR_MAX 20 /* "-9223372036854775808", as Redis's LONG_STR_SIZE less its '\0' */

/* The N digits at S (digits only) into *V. Returns 0, or -1 for another
 * byte or a value past 2^64 - 1. */
static int digits_u64(const char *s, size_t n, uint64_t *v)
{
    uint64_t x = 0;
    for (size_t p = 0; p < n; p++) {
        unsigned d = (unsigned)(s[p] - '0');
        if (d > 9 || x > (UINT64_MAX - d) / 10)
            return -1;
        x = x * 10 + d;
    }
    *v = x;
    return 0;
}

int resp_arg_ll(struct evbuffer *frame, const struct resp_req *q, size_t i, long long min, long long max,
                long long *out)
{
    char buf[LONG_STR_MAX + 1];
    size_t n, p = 0;
    if (resp_arg_str(frame, q, i, buf, sizeof(buf), &n) < 0 || n == 0)
        return -1;
    int neg = buf[0] == '-';
    if (neg && ++p == n)
        return -1;
    if (buf[p] == '0' && (neg || n - p > 1)) /* "0" alone is zero; "-0" and "01" are not numbers */
        return -1;
    uint64_t v;
    if (digits_u64(buf + p, n - p, &v) < 0 || v > (uint64_t)LLONG_MAX + (neg ? 1u : 0u))
        return -1;
    long long x = neg ? (long long)(0 - v) : (long long)v;
    if (x < min || x > max)
        return -1;
    *out = x;
    return 0;
}

int resp_arg_u64(struct evbuffer *frame, const struct resp_req *q, size_t i, uint64_t *out)
{
    char buf[LONG_STR_MAX + 1];
    size_t n;
    return resp_arg_str(frame, q, i, buf, sizeof(buf), &n) < 0 || n == 0 ? -1 : digits_u64(buf, n, out);
}

#define DOUBLE_STR_MAX 5119 /* Redis's MAX_LONG_DOUBLE_CHARS */

int resp_arg_double(struct evbuffer *frame, const struct resp_req *q, size_t i, double *out)
{
    char buf[DOUBLE_STR_MAX + 1], *end;
    size_t n;
    if (resp_arg_str(frame, q, i, buf, sizeof(buf), &n) < 0 || n == 0 || isspace((unsigned char)buf[0]))
        return -1;
    errno = 0;
    double v = strtod(buf, &end);
    if ((size_t)(end - buf) != n || isnan(v) ||
        (errno == ERANGE && (v == HUGE_VAL || v == -HUGE_VAL || fpclassify(v) == FP_ZERO)))
        return -1;
    *out = v;
    return 0;
}

const char *resp_arg_printable(struct evbuffer *frame, const struct resp_req *q, size_t i, char *buf, size_t cap)
{
    size_t n;
    resp_arg_str(frame, q, i, buf, cap, &n); /* cut to fit: shown, not used */
    for (size_t j = 0; j < n; j++)
        if (buf[j] < 0x20 || buf[j] > 0x7e)
            buf[j] = '?';
    return buf;
}

const char *resp_arg_view(struct evbuffer *frame, const struct resp_req *q, size_t i, size_t *len)
{
    const struct resp_arg *a = arg_at(q, i);
    if (a == NULL || a->off + a->len > evbuffer_get_length(frame))
        return NULL;
    const char *flat = (const char *)evbuffer_pullup(frame, -1);
    if (flat == NULL)
        return NULL;
    *len = a->len;
    return flat + a->off;
}

int resp_arg_append(struct evbuffer *dst, struct evbuffer *frame, const struct resp_arg *a)
{
    struct evbuffer_ptr p;
    struct evbuffer_iovec vec[8];
    size_t left = a->len;
    if (evbuffer_ptr_set(frame, &p, a->off, EVBUFFER_PTR_SET) < 0)
        return -1;
    while (left > 0) {
        int n = evbuffer_peek(frame, (ev_ssize_t)left, &p, vec, 8);
        if (n <= 0)
            return -1;
        for (int i = 0; i < n && i < 8 && left > 0; i++) {
            size_t take = vec[i].iov_len < left ? vec[i].iov_len : left;
            if (evbuffer_add(dst, vec[i].iov_base, take) < 0)
                return -1;
            left -= take;
            evbuffer_ptr_set(frame, &p, take, EVBUFFER_PTR_ADD);
        }
    }
    return 0;
}

int resp_add_arg(struct evbuffer *dst, struct evbuffer *frame, const struct resp_arg *a)
{
    if (evbuffer_add_printf(dst, "$%zu\r\n", a->len) < 0 || resp_arg_append(dst, frame, a) < 0)
        return -1;
    return evbuffer_add(dst, "\r\n", 2);
}

void resp_first_line(struct evbuffer *in, size_t len, char *line, size_t cap)
{
    size_t n = evbuffer_copyout(in, line, len < cap - 1 ? len : cap - 1);
    line[n > 0 ? n : 0] = '\0';
    line[strcspn(line, "\r\n")] = '\0';
}

static int is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int hex_val(char c)
{
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

static int is_sep(char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\v' || c == '\f' || c == '\0';
}

/* Reads one token starting at *P into TOK; returns its length or -1 for
 * unbalanced quotes. Leaves *P after the token. */
static long long inline_token(const char **pp, const char *end, char *tok)
{
    const char *p = *pp;
    size_t n = 0;
    int dq = 0, sq = 0;
    for (;;) {
        if (dq) {
            if (p == end)
                return -1;
            if (*p == '\\' && end - p >= 4 && p[1] == 'x' && is_hex(p[2]) && is_hex(p[3])) {
                tok[n++] = (char)(hex_val(p[2]) * 16 + hex_val(p[3]));
                p += 4;
                continue;
            }
            if (*p == '\\' && end - p >= 2) {
                char c = p[1];
                tok[n++] = c == 'n' ? '\n' : c == 'r' ? '\r' : c == 't' ? '\t' : c == 'b' ? '\b' : c == 'a' ? '\a' : c;
                p += 2;
                continue;
            }
            if (*p == '"') {
                p++;
                if (p != end && !is_sep(*p))
                    return -1; /* a closing quote must end the token */
                break;
            }
            tok[n++] = *p++;
        } else if (sq) {
            if (p == end)
                return -1;
            if (*p == '\\' && end - p >= 2 && p[1] == '\'') {
                tok[n++] = '\'';
                p += 2;
                continue;
            }
            if (*p == '\'') {
                p++;
                if (p != end && !is_sep(*p))
                    return -1;
                break;
            }
            tok[n++] = *p++;
        } else {
            if (p == end || is_sep(*p))
                break;
            if (*p == '"')
                dq = 1;
            else if (*p == '\'')
                sq = 1;
            else
                tok[n++] = *p;
            p++;
        }
    }
    *pp = p;
    return (long long)n;
}

int resp_inline_to_multibulk(const char *line, size_t len, struct evbuffer *out)
{
    const char *p = line, *end = line + len;
    struct evbuffer *args = evbuffer_new();
    char *tok = malloc(len + 1);
    int argc = 0;
    if (args == NULL || tok == NULL)
        goto fail;
    for (;;) {
        while (p != end && is_sep(*p))
            p++;
        if (p == end)
            break;
        long long n = inline_token(&p, end, tok);
        if (n < 0)
            goto fail;
        evbuffer_add_printf(args, "$%lld\r\n", n);
        evbuffer_add(args, tok, (size_t)n);
        evbuffer_add(args, "\r\n", 2);
        argc++;
    }
    if (argc > 0) {
        evbuffer_add_printf(out, "*%d\r\n", argc);
        evbuffer_add_buffer(out, args);
    }
    evbuffer_free(args);
    free(tok);
    return argc;
fail:
    if (args)
        evbuffer_free(args);
    free(tok);
    return -1;
}

void resp_add_verror(struct evbuffer *out, const char *fmt, va_list ap)
{
    char small[512], *msg = small, *big = NULL;
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    /* Redis quotes an argument whole in some errors (a tracking prefix,
     * 6.2's unknown command): a long one gets room of its own rather than
     * being cut. */
    if (n >= (int)sizeof(small) && (big = malloc((size_t)n + 1)) != NULL && vsnprintf(big, (size_t)n + 1, fmt, again) == n)
        msg = big;
    va_end(again);
    if (n >= 0) {
        size_t len = msg == small && (size_t)n >= sizeof(small) ? sizeof(small) - 1 : (size_t)n;
        for (size_t i = 0; i < len; i++)
            if (msg[i] == '\r' || msg[i] == '\n')
                msg[i] = ' ';
        evbuffer_add(out, "-", 1);
        evbuffer_add(out, msg, len);
        evbuffer_add(out, "\r\n", 2);
    }
    free(big);
}

void resp_add_error(struct evbuffer *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    resp_add_verror(out, fmt, ap);
    va_end(ap);
}

size_t resp_head(char *out, char type, size_t n)
{
    char digits[20];
    size_t k = 0;
    do
        digits[k++] = (char)('0' + n % 10);
    while ((n /= 10) > 0);
    out[0] = type;
    for (size_t i = 0; i < k; i++)
        out[1 + i] = digits[k - 1 - i];
    out[k + 1] = '\r';
    out[k + 2] = '\n';
    return k + 3;
}

size_t resp_flat_element(const char *s, size_t avail)
{
    const char *eol = avail > 0 ? memchr(s, '\n', avail) : NULL;
    if (eol == NULL || eol == s || eol[-1] != '\r')
        return 0;
    size_t line = (size_t)(eol + 1 - s);
    switch (s[0]) {
    case '+':
    case '-':
    case ':':
    case '_':
        return line;
    case '$': {
        if (s[1] == '-')
            return line; /* $-1 */
        size_t n = 0;
        for (const char *d = s + 1; d < eol - 1; d++) {
            if (*d < '0' || *d > '9' || n > SIZE_MAX / 10 - 1)
                return 0;
            n = n * 10 + (size_t)(*d - '0');
        }
        return n <= avail - line && avail - line - n >= 2 ? line + n + 2 : 0;
    }
    default:
        return 0;
    }
}

/* The count in the header line of an aggregate or a string at S (its type
 * byte, digits, CRLF at EOL): -1 for a nil, -2 if malformed. */
static long long head_count(const char *s, const char *eol)
{
    if (eol - s == 3 && s[1] == '-' && s[2] == '1')
        return -1;
    long long n = 0;
    for (const char *d = s + 1; d < eol; d++) {
        if (*d < '0' || *d > '9' || n > (LLONG_MAX - 9) / 10)
            return -2;
        n = n * 10 + (*d - '0');
    }
    return eol > s + 1 ? n : -2;
}

size_t resp_flat_value(const char *s, size_t avail)
{
    size_t pos = 0;
    unsigned long long left = 1; /* values still to walk: no recursion, whatever the depth */
    while (left > 0) {
        const char *at = s + pos, *eol = pos < avail ? memchr(at, '\r', avail - pos) : NULL;
        if (eol == NULL || (size_t)(eol - s) + 1 >= avail || eol[1] != '\n')
            return 0;
        size_t line = (size_t)(eol + 2 - at);
        long long n = strchr("$=!*~>%|", at[0]) && at[0] ? head_count(at, eol) : 0;
        left--;
        if (n == -2)
            return 0;
        switch (at[0]) {
        case '+': case '-': case ':': case ',': case '#': case '(': case '_':
            pos += line;
            break;
        case '$': case '=': case '!':
            if (n >= 0 && ((unsigned long long)n > avail - pos - line || avail - pos - line - (size_t)n < 2 ||
                           at[line + (size_t)n] != '\r' || at[line + (size_t)n + 1] != '\n'))
                return 0;
            pos += line + (n >= 0 ? (size_t)n + 2 : 0);
            break;
        case '*': case '~': case '>': case '%': case '|':
            /* each element takes 3 bytes at least: a count past what is left is a lie */
            if (n > 0 && (unsigned long long)n > avail)
                return 0;
            pos += line;
            left += n < 0 ? 0 : at[0] == '%' ? 2 * (unsigned long long)n
                              : at[0] == '|' ? 2 * (unsigned long long)n + 1 : (unsigned long long)n;
            break;
        default:
            return 0;
        }
    }
    return pos;
}

void resp_add_status(struct evbuffer *out, const char *status)
{
    evbuffer_add_printf(out, "+%s\r\n", status);
}

void resp_add_bulk(struct evbuffer *out, const void *data, size_t len)
{
    evbuffer_add_printf(out, "$%zu\r\n", len);
    evbuffer_add(out, data, len);
    evbuffer_add(out, "\r\n", 2);
}

void resp_add_nil(struct evbuffer *out, int proto)
{
    if (proto == 3)
        evbuffer_add(out, "_\r\n", 3);
    else
        evbuffer_add(out, "$-1\r\n", 5);
}

static void add_head(struct evbuffer *out, char type, size_t n)
{
    char head[RESP_HEAD_MAX];
    evbuffer_add(out, head, resp_head(head, type, n));
}

void resp_add_map_head(struct evbuffer *out, int proto, size_t n)
{
    add_head(out, proto == 3 ? '%' : '*', proto == 3 ? n : 2 * n);
}

void resp_add_set_head(struct evbuffer *out, int proto, size_t n)
{
    add_head(out, proto == 3 ? '~' : '*', n);
}

void resp_add_push_head(struct evbuffer *out, int proto, size_t n)
{
    add_head(out, proto == 3 ? '>' : '*', n);
}

size_t resp_text_head(char *out, int proto, size_t len)
{
    if (proto != 3)
        return resp_head(out, '$', len);
    size_t n = resp_head(out, '=', len + 4);
    memcpy(out + n, "txt:", 4);
    return n + 4;
}

void resp_add_text(struct evbuffer *out, int proto, const void *data, size_t len)
{
    char head[RESP_HEAD_MAX + 4];
    evbuffer_add(out, head, resp_text_head(head, proto, len));
    evbuffer_add(out, data, len);
    evbuffer_add(out, "\r\n", 2);
}
