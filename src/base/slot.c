/*
 * slot: key hashing, see slot.h.
 *
 * Hash tag rule (cluster spec): if the key has a '{' and, after it, a '}'
 * with at least one byte between them, only the bytes between the first '{'
 * and the first '}' after it are hashed; otherwise the whole key is.
 */
#include "base/slot.h"

#include "base/resp.h"

#include <event2/buffer.h>
#include <pthread.h>
#include <string.h>

/* crc_table[i]: the CRC of byte i. The CRC is linear over XOR, so two
 * bytes fold into two independent lookups (crc_table2[i]: byte i followed
 * by a zero byte) instead of a chain of two: keys hash about twice as fast. */
static uint16_t crc_table[256];
static uint16_t crc_table2[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_table_init(void)
{
    for (unsigned i = 0; i < 256; i++) {
        uint16_t c = (uint16_t)(i << 8);
        for (int b = 0; b < 8; b++)
            c = (uint16_t)((c & 0x8000) ? (c << 1) ^ 0x1021 : c << 1);
        crc_table[i] = c;
    }
    for (unsigned i = 0; i < 256; i++)
        crc_table2[i] = (uint16_t)((crc_table[i] << 8) ^ crc_table[crc_table[i] >> 8]);
}

uint16_t slot_crc16(uint16_t crc, const void *data, size_t len)
{
    const unsigned char *p = data;
    pthread_once(&crc_once, crc_table_init);
    for (; len >= 2; p += 2, len -= 2)
        crc = (uint16_t)(crc_table2[(crc >> 8) ^ p[0]] ^ crc_table[(crc & 0xff) ^ p[1]]);
    if (len)
        crc = (uint16_t)((crc << 8) ^ crc_table[((crc >> 8) ^ p[0]) & 0xff]);
    return crc;
}

unsigned slot_of(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open) {
        const char *close = memchr(open + 1, '}', len - (size_t)(open + 1 - key));
        if (close && close > open + 1)
            return slot_crc16(0, open + 1, (size_t)(close - open - 1)) & (SLOT_COUNT - 1);
    }
    return slot_crc16(0, key, len) & (SLOT_COUNT - 1);
}

/* slot_tag's table: every slot has a tag of at most four of these 36
 * characters (checked by the unit test), most of three. */
static char tag_table[SLOT_COUNT][SLOT_TAG_MAX + 1];
static pthread_once_t tag_once = PTHREAD_ONCE_INIT;

static void tag_table_init(void)
{
    static const char alphabet[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    const unsigned base = sizeof(alphabet) - 1;
    size_t left = SLOT_COUNT;
    for (unsigned len = 1, count = base; len <= SLOT_TAG_MAX && left; len++, count *= base)
        for (unsigned n = 0; n < count && left; n++) {
            char tag[SLOT_TAG_MAX + 1];
            for (unsigned i = 0, v = n; i < len; i++, v /= base)
                tag[len - 1 - i] = alphabet[v % base];
            tag[len] = '\0';
            unsigned slot = slot_crc16(0, tag, len) & (SLOT_COUNT - 1);
            if (tag_table[slot][0] == '\0') {
                memcpy(tag_table[slot], tag, len + 1);
                left--;
            }
        }
}

const char *slot_tag(unsigned slot)
{
    pthread_once(&tag_once, tag_table_init);
    return tag_table[slot & (SLOT_COUNT - 1)];
}

#define PEEK_VECS 8

/* Calls FN on each contiguous piece of bytes [from, from+len) of argument A. */
static void each_piece(struct evbuffer *frame, const struct resp_arg *a, size_t from, size_t len,
                       void (*fn)(const char *p, size_t n, void *ctx), void *ctx)
{
    struct evbuffer_ptr ptr;
    struct evbuffer_iovec v[PEEK_VECS];
    if (evbuffer_ptr_set(frame, &ptr, a->off + from, EVBUFFER_PTR_SET) < 0)
        return;
    while (len > 0) {
        int n = evbuffer_peek(frame, (ev_ssize_t)len, &ptr, v, PEEK_VECS);
        if (n <= 0)
            return;
        for (int i = 0; i < n && i < PEEK_VECS && len > 0; i++) {
            size_t take = v[i].iov_len < len ? v[i].iov_len : len;
            fn(v[i].iov_base, take, ctx);
            len -= take;
            evbuffer_ptr_set(frame, &ptr, take, EVBUFFER_PTR_ADD);
        }
    }
}

struct tag_search {
    size_t pos;   /* bytes seen so far */
    size_t open;  /* offset of the first '{', or SIZE_MAX */
    size_t close; /* offset of the first '}' after it, or SIZE_MAX */
};

static void find_tag(const char *p, size_t n, void *ctx)
{
    struct tag_search *t = ctx;
    if (t->close != SIZE_MAX)
        return;
    const char *q;
    if (t->open == SIZE_MAX) {
        if ((q = memchr(p, '{', n)) == NULL) {
            t->pos += n;
            return;
        }
        t->open = t->pos + (size_t)(q - p);
        n -= (size_t)(q + 1 - p);
        t->pos = t->open + 1;
        p = q + 1;
    }
    if ((q = memchr(p, '}', n)) != NULL)
        t->close = t->pos + (size_t)(q - p);
    t->pos += n;
}

static void crc_piece(const char *p, size_t n, void *ctx)
{
    uint16_t *crc = ctx;
    *crc = slot_crc16(*crc, p, n);
}

unsigned slot_of_arg(struct evbuffer *frame, const struct resp_arg *a)
{
    struct evbuffer_iovec v;
    if (evbuffer_peek(frame, -1, NULL, &v, 1) >= 1 && a->off + a->len <= v.iov_len)
        return slot_of((const char *)v.iov_base + a->off, a->len); /* the frame's first chain holds it */
    struct tag_search t = {0, SIZE_MAX, SIZE_MAX};
    size_t from = 0, len = a->len;
    uint16_t crc = 0;
    each_piece(frame, a, 0, a->len, find_tag, &t);
    if (t.close != SIZE_MAX && t.close > t.open + 1) {
        from = t.open + 1;
        len = t.close - from;
    }
    each_piece(frame, a, from, len, crc_piece, &crc);
    return crc & (SLOT_COUNT - 1);
}
