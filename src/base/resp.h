/*
 * resp: a pure RESP scanner over evbuffers. No I/O, nothing copied out of the
 * buffer but short length lines, and no allocation proportional to a length
 * the peer merely claims.
 *
 * Requests: resp_req_scan() finds the next complete request frame at the front
 * of a buffer (multibulk, or an inline line), recording each argument's
 * extent relative to the frame's first byte. It is resumable: called again
 * after more bytes arrived, it continues where it stopped instead of
 * rescanning. It never modifies the buffer; the caller removes the frame.
 */
#ifndef RG_RESP_H
#define RG_RESP_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;

struct resp_limits {
    uint64_t max_bulk_len;      /* largest argument */
    uint64_t max_inline_len;    /* longest inline request or length line */
    uint64_t max_multibulk_len; /* most arguments in one request */
};

/* Redis's own limits for a client that still has to authenticate. */
#define RESP_UNAUTH_MAX_MULTIBULK 10
#define RESP_UNAUTH_MAX_BULK 16384

struct resp_arg {
    size_t off; /* from the frame's first byte */
    size_t len;
};

enum resp_status {
    RESP_ERROR = -1,  /* protocol error: see .error; the connection is done */
    RESP_PARTIAL = 0, /* call again when more bytes arrived */
    RESP_FRAME = 1,   /* a whole frame of .frame_len bytes */
};

struct resp_req {
    /* The result, valid after RESP_FRAME. */
    struct resp_arg *argv; /* multibulk arguments; argc == 0 for an empty request */
    size_t argc;
    size_t frame_len;      /* bytes to remove from the buffer */
    size_t inline_len;     /* inline request: its line, without the line end */
    int is_inline;
    const char *error;     /* after RESP_ERROR: Redis's text, without "-ERR " */

    /* Resumable state; all zero is the start of a frame. */
    size_t argv_cap;
    int state;
    size_t pos;            /* bytes of the frame scanned so far */
    long long nargs;       /* declared argument count */
    long long bulk;        /* declared length of the argument being read */
    char errbuf[64];       /* .error when it has to quote a byte */
};

/* Scans the front of BUF for one request frame. UNAUTH applies Redis's
 * tighter limits for a client that has not authenticated. */
enum resp_status resp_req_scan(struct resp_req *r, struct evbuffer *buf, const struct resp_limits *lim,
                               int unauth);

/* Forgets the last frame so the next scan starts a new one. Keeps a small
 * argument array for reuse and frees a large one. */
void resp_req_reset(struct resp_req *r);
void resp_req_deinit(struct resp_req *r);

/*
 * Replies: resp_reply_scan() finds the end of the next complete reply at the
 * front of a buffer, at any nesting depth (RESP2 and RESP3 types), without a
 * stack: it counts the elements still owed. Resumable like the request
 * scanner.
 */
#define RESP_REPLY_LINE_MAX (1 << 20) /* longest header or simple line */

struct resp_reply {
    size_t len;          /* after RESP_FRAME: the whole reply's length */
    char type;           /* the reply's first byte ('+', '-', '$', '*', ...) */
    const char *error;   /* after RESP_ERROR: why the bytes are not RESP */

    /* Resumable state; all zero is the start of a reply. */
    size_t pos;
    long long pending;   /* elements still to scan, the current one included */
    long long bulk;      /* payload length of the bulk being read */
    int in_bulk;
};

enum resp_status resp_reply_scan(struct resp_reply *r, struct evbuffer *buf);

/* A redirection: "-MOVED <slot> <host>:<port>" or "-ASK ...". */
struct resp_redirect {
    int ask;             /* 1 for ASK, 0 for MOVED */
    unsigned slot;
    char host[256];
    int port;
};

/* Parses the error LINE (without "-" and CRLF) as a redirection. Returns 0,
 * or -1 if it is some other error. */
int resp_parse_redirect(const char *line, size_t len, struct resp_redirect *out);

/*
 * The one argument reader. A handler reads a request's arguments only
 * through these: none copies or compares a frame's bytes itself. I is an
 * argument index into Q, whose frame is FRAME; an index at or past
 * Q->argc reads as an argument that is absent (no word, no number, an
 * empty copy), so a handler that miscounts cannot read past the frame.
 */

/* Whether argument I is WORD (ASCII), in any case. */
int resp_arg_is(struct evbuffer *frame, const struct resp_req *q, size_t i, const char *word);

/* Redis's replies to an argument that is not a number of the kind wanted. */
#define RESP_NOT_INTEGER "ERR value is not an integer or out of range"
#define RESP_NOT_FLOAT "ERR value is not a valid float"

/* Argument I as an integer read the way Redis reads one (string2ll: an
 * optional '-', no '+', no leading zero, no space), within MIN..MAX.
 * Returns 0 and *OUT, or -1: absent, not an integer, or out of range
 * (Redis answers RESP_NOT_INTEGER). */
int resp_arg_ll(struct evbuffer *frame, const struct resp_req *q, size_t i, long long min, long long max,
                long long *out);

/* Argument I as an unsigned 64-bit decimal of digits only, at most 20 of
 * them. Returns 0 and *OUT, or -1. */
int resp_arg_u64(struct evbuffer *frame, const struct resp_req *q, size_t i, uint64_t *out);

/* Argument I as a double, read the way Redis reads one (no leading space,
 * nothing after the number, not NaN, no overflow; "inf" and "-inf" are
 * numbers). Returns 0 and *OUT, or -1 (Redis answers RESP_NOT_FLOAT). */
int resp_arg_double(struct evbuffer *frame, const struct resp_req *q, size_t i, double *out);

/* Copies argument I into DST, which has CAP bytes of room (CAP > 0), as a
 * C string: at most CAP - 1 bytes, then a '\0'. *LEN, if LEN is not NULL,
 * is the number of bytes copied. Returns 0 when the whole argument was
 * copied, or -1 when it was cut short (absent, or longer than CAP - 1). */
int resp_arg_str(struct evbuffer *frame, const struct resp_req *q, size_t i, char *dst, size_t cap, size_t *len);

/* Argument I for an error text, in BUF (CAP > 0 bytes) as a C string: at
 * most CAP - 1 bytes, a byte that is not printable ASCII as '?'. Returns
 * BUF. Redis, too, shows at most 128 bytes of an argument in an error. */
const char *resp_arg_printable(struct evbuffer *frame, const struct resp_req *q, size_t i, char *buf, size_t cap);

/* Argument I's bytes in one run of memory, *LEN of them: a pointer into
 * FRAME, which is made contiguous whole if it was not, so that every view
 * of it stays valid until FRAME changes. NULL when absent or out of
 * memory. Not for the request path's common commands: it may copy. */
const char *resp_arg_view(struct evbuffer *frame, const struct resp_req *q, size_t i, size_t *len);

/* How much of an argument an error text quotes ("%.*s", as an int): Redis
 * quotes some whole, and so does respgate up to 1 MiB. */
static inline int resp_quote_len(size_t len)
{
    return len < (1u << 20) ? (int)len : 1 << 20;
}

/* Appends argument A of FRAME to DST, with one copy and no temporary. */
int resp_arg_append(struct evbuffer *dst, struct evbuffer *frame, const struct resp_arg *a);

/* Appends argument A of FRAME to DST as a bulk string ("$len", the bytes, CRLF). */
int resp_add_arg(struct evbuffer *dst, struct evbuffer *frame, const struct resp_arg *a);

/* The first line of the LEN-byte reply at the front of IN (an error's
 * text, a status) into LINE, CAP bytes at most, without its CRLF. */
void resp_first_line(struct evbuffer *in, size_t len, char *line, size_t cap);

/* Splits an inline request LINE the way redis-server does (spaces separate,
 * "double quotes" with \n \r \t \b \a \\ \" \xHH escapes, 'single quotes'
 * with \'), appending it to OUT as a multibulk frame. Returns the number of
 * arguments (0 for a blank line), or -1 for unbalanced quotes. */
int resp_inline_to_multibulk(const char *line, size_t len, struct evbuffer *out);

/* Writes the header TYPE N CRLF ("*3\r\n", "$11\r\n") at OUT, which has
 * room for RESP_HEAD_MAX bytes, without printf's cost. Returns its length. */
#define RESP_HEAD_MAX 24
size_t resp_head(char *out, char type, size_t n);

/* The length of the one element at S, of at most AVAIL bytes, when it is a
 * bulk string, a nil or a one-line reply (status, error, integer); 0 when
 * it is another type or runs past AVAIL. For walking a reply already
 * scanned whole, in a flat run of memory. */
size_t resp_flat_element(const char *s, size_t avail);

/* The length of the one value of any type (aggregates whole, at any
 * depth, walked without recursion) at S, of at most AVAIL bytes; 0 when
 * it is malformed or runs past AVAIL. */
size_t resp_flat_value(const char *s, size_t avail);

/* Reply encoders. An error TEXT starts with its code ("ERR ...", "NOAUTH
 * ..."); CR and LF in it become spaces, as Redis does. */
void resp_add_error(struct evbuffer *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void resp_add_verror(struct evbuffer *out, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
void resp_add_status(struct evbuffer *out, const char *status);
void resp_add_bulk(struct evbuffer *out, const void *data, size_t len);

/* The encoders whose bytes depend on the client's protocol, PROTO 2 or 3
 * (HELLO): a nil ("$-1" or "_"), a map's header of N pairs ("*2N" or
 * "%N"), a set's ("*N" or "~N"), a push frame's ("*N" or ">N", Pub/Sub)
 * and a text ("$" or a verbatim "=" of format "txt", as Redis sends INFO
 * and CLIENT INFO). */
void resp_add_nil(struct evbuffer *out, int proto);
void resp_add_map_head(struct evbuffer *out, int proto, size_t n);
void resp_add_set_head(struct evbuffer *out, int proto, size_t n);
void resp_add_push_head(struct evbuffer *out, int proto, size_t n);
void resp_add_text(struct evbuffer *out, int proto, const void *data, size_t len);
/* The header of a text of LEN bytes at OUT (RESP_HEAD_MAX + 4 bytes of
 * room), for a text written after it: its length. */
size_t resp_text_head(char *out, int proto, size_t len);

#endif
