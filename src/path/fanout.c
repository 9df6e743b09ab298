/*
 * fanout: requests several nodes answer, see fanout.h.
 *
 * The client request (the parent) holds a struct fanout while its parts are
 * out; each part completes through the parts' sink, which folds its reply
 * into the parent's as the command's merge says, and the last one finishes
 * the parent. Parts are addressed by slot, never by node: a broadcast part
 * goes to "the master of the first slot this master serves", so a part
 * retried after a failover reaches the master that took those slots over.
 *
 * A split copies each key's elements from the client's frame into its part
 * as they are, headers included, so nothing is formatted again; a frame too
 * large for one chain moves instead (evbuffer_remove_buffer: whole chains
 * change hands), so an MSET of large values is not copied to be split.
 *
 * Parts' short replies are taken straight from the node's input buffer
 * (req_sink.take) where the merge allows: an MSET's "+OK" is counted, a
 * DEL's integer added, an MGET's elements copied into one staging area of
 * the parent's, so a part is back in the pool as soon as it is answered and
 * the merged reply is written in one piece.
 */
#include "path/fanout.h"

#include "conn/client.h"
#include "model/cmd.h"
#include "model/conf.h"
#include "model/slotmap.h"
#include "conn/backend.h"
#include "base/netio.h"
#include "loop/req.h"
#include "base/resp.h"
#include "path/route.h"
#include "path/session.h"
#include "base/slot.h"
#include "loop/worker.h"

#include <event2/buffer.h>
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEAD_MAX 64 /* enough for any reply header fanout parses */
#define SPLIT_NAME_MAX 32 /* longer than any split command's name */
#define STAGE_MAX 4096 /* a part's reply up to this size is staged (MERGE_KEYORDER) */

/* fanout_split's scratch, one per worker thread: a slot's part index + 1,
 * all zero between calls. */
static _Thread_local uint16_t slot_part[SLOT_COUNT];

struct fanout {
    uint8_t merge;          /* enum cmd_merge */
    unsigned failed : 1;    /* the parent's reply is an error: later parts are dropped */
    unsigned ok : 1;        /* MERGE_ANY_OK: a success is in */
    uint32_t pending;       /* parts still out, plus one while sending */
    long long acc;          /* MERGE_SUM, MERGE_MIN: the integer so far */
    size_t count;           /* MERGE_CONCAT: elements so far; MERGE_AND: elements */
    uint64_t scan_next;     /* MERGE_SCAN: the cursor once this master is done */
    uint16_t scan_first;    /* MERGE_SCAN: this master's first slot */
    size_t nkeys;           /* MERGE_KEYORDER */
    uint16_t *part_of_key;  /* MERGE_KEYORDER: [nkeys] */
    struct req **parts;     /* MERGE_KEYORDER: replies kept until the merge (NULL: staged) */
    size_t nparts;
    /* A split's keys, part by part, each part's in key order: part i's are
     * [first_unit[i], first_unit[i + 1]) of unit and elem. */
    uint32_t *first_unit;   /* [nparts + 1] */
    struct span {
        uint32_t off, len;
    } *unit,                /* [nkeys]: a key and its values in the parent's frame */
      *elem,                /* MERGE_KEYORDER, [nkeys]: a key's element in stage */
      name;                 /* the command's name in the parent's frame */
    uint8_t step;           /* a key and its values: 1 (MGET), 2 (MSET) */
    char *stage;            /* MERGE_KEYORDER: staged elements, end to end */
    size_t staged, stage_cap;
    unsigned char *and;     /* MERGE_AND: [count] */
    const struct fanout_fold *fold; /* MERGE_FOLD: the caller's fold, and its state */
    void *fold_state;
};

/* Parses the integer after a one-byte type at the start of HEAD. Returns
 * 0, or -1 if HEAD does not hold a whole line with a number. */
static int head_number(const char *head, long long *out, size_t *line_len)
{
    char *end;
    long long v = strtoll(head + 1, &end, 10);
    if (end == head + 1 || end[0] != '\r' || end[1] != '\n')
        return -1;
    *out = v;
    if (line_len)
        *line_len = (size_t)(end + 2 - head);
    return 0;
}

/* head_number of the LEN bytes at S, which need not end in a NUL. */
static int flat_number(const char *s, size_t len, long long *out, size_t *line_len)
{
    char head[HEAD_MAX];
    size_t hn = len < HEAD_MAX - 1 ? len : HEAD_MAX - 1;
    memcpy(head, s, hn);
    head[hn] = '\0';
    return head_number(head, out, line_len);
}

/* The first bytes of BUF as a C string, for parsing a header. */
static void peek_head(struct evbuffer *buf, char *head)
{
    size_t n = evbuffer_copyout(buf, head, HEAD_MAX - 1);
    head[n] = '\0';
}

/* Makes PART's reply (an error, or ERR text) the parent's one reply. */
static void fail_with(struct fanout *f, struct req *p, struct req *part, const char *text)
{
    if (f->failed)
        return;
    f->failed = 1;
    evbuffer_drain(p->reply, evbuffer_get_length(p->reply));
    if (text)
        resp_add_error(p->reply, "%s", text);
    else
        evbuffer_add_buffer(p->reply, part->reply);
}

static int is_nil(const char *head)
{
    return strncmp(head, "$-1\r\n", 5) == 0 || strncmp(head, "*-1\r\n", 5) == 0 || strncmp(head, "_\r\n", 3) == 0;
}

/* MERGE_SCAN: the node's "*2 cursor keys" with the node's cursor turned
 * into respgate's (see fanout_broadcast), into the parent's reply. */
static const char *merge_scan(struct fanout *f, struct req *p, struct req *part, const char *head)
{
    long long n, len;
    size_t l1, l2;
    if (head_number(head, &n, &l1) < 0 || n != 2 || head[l1] != '$' || head_number(head + l1, &len, &l2) < 0)
        return "ERR respgate: unexpected SCAN reply from a node";
    const char *digits = head + l1 + l2;
    char *end;
    unsigned long long c = strtoull(digits, &end, 10);
    if (len <= 0 || end != digits + len || end[0] != '\r' || c > (UINT64_MAX - SLOT_COUNT) / SLOT_COUNT)
        return "ERR respgate: unexpected SCAN cursor from a node";
    uint64_t ours = c ? c * SLOT_COUNT + f->scan_first : f->scan_next;
    char num[24];
    int k = snprintf(num, sizeof(num), "%" PRIu64, ours);
    evbuffer_drain(part->reply, (size_t)(end + 2 - head));
    evbuffer_add_printf(p->reply, "*2\r\n$%d\r\n%s\r\n", k, num);
    evbuffer_add_buffer(p->reply, part->reply);
    return NULL;
}

/* MERGE_AND: folds an array of 0/1 integers into F->and. */
static const char *merge_and(struct fanout *f, struct req *part)
{
    size_t len = evbuffer_get_length(part->reply);
    const char *s = (const char *)evbuffer_pullup(part->reply, -1), *e = s + len;
    long long n;
    size_t l;
    if (len == 0 || s[0] != '*' || flat_number(s, len, &n, &l) < 0 || n < 0 || (size_t)n > len / 4 ||
        (f->and && (size_t)n != f->count))
        return "ERR respgate: unexpected reply from a node";
    if (f->and == NULL) {
        f->count = (size_t)n;
        f->and = malloc(f->count ? f->count : 1);
        if (f->and == NULL)
            return REQ_OUT_OF_MEMORY;
        memset(f->and, 1, f->count);
    }
    s += l;
    for (size_t i = 0; i < f->count; i++) {
        if (e - s < 4 || s[0] != ':' || (s[1] != '0' && s[1] != '1') || s[2] != '\r' || s[3] != '\n')
            return "ERR respgate: unexpected reply from a node";
        f->and[i] &= (unsigned char)(s[1] == '1');
        s += 4;
    }
    return NULL;
}


/* Folds PART's reply into its parent's. Returns NULL, or an error text that
 * becomes the parent's reply. Keeps PART (MERGE_KEYORDER) by clearing *FREE. */
/* MERGE_SUM and MERGE_MIN: the integer reply whose first line is HEAD. */
static const char *merge_number(struct fanout *f, const char *head)
{
    long long v;
    if (head[0] != ':' || head_number(head, &v, NULL) < 0)
        return "ERR respgate: unexpected reply from a node";
    if (f->merge == MERGE_MIN && (f->count++ == 0 || v < f->acc))
        f->acc = v;
    else if (f->merge == MERGE_SUM && __builtin_add_overflow(f->acc, v, &f->acc))
        return "ERR respgate: the nodes' counts overflow a 64-bit integer";
    return NULL;
}

/* MERGE_CONCAT: PART's array (first line HEAD) joins P's reply. */
static const char *merge_concat(struct fanout *f, struct req *p, struct req *part, const char *head)
{
    long long v;
    size_t l;
    if (head[0] != '*' || head_number(head, &v, &l) < 0)
        return "ERR respgate: unexpected reply from a node";
    if (v > 0) {
        f->count += (size_t)v;
        evbuffer_drain(part->reply, l);
        evbuffer_add_buffer(p->reply, part->reply);
    }
    return NULL;
}

static const char *merge_one(struct fanout *f, struct req *p, struct req *part, int *free_part)
{
    char head[HEAD_MAX];
    peek_head(part->reply, head);
    if (head[0] == '-') {
        if (f->merge == MERGE_ANY_OK) {
            if (!f->ok && evbuffer_get_length(p->reply) == 0)
                evbuffer_add_buffer(p->reply, part->reply);
            return NULL;
        }
        fail_with(f, p, part, NULL);
        return NULL;
    }
    switch (f->merge) {
    case MERGE_SUM:
    case MERGE_MIN:
        return merge_number(f, head);
    case MERGE_ALL:
        if (evbuffer_get_length(p->reply) == 0)
            evbuffer_add_buffer(p->reply, part->reply);
        return NULL;
    case MERGE_ANY_OK:
        if (!f->ok) {
            f->ok = 1;
            evbuffer_drain(p->reply, evbuffer_get_length(p->reply));
            evbuffer_add_buffer(p->reply, part->reply);
        }
        return NULL;
    case MERGE_NONNIL:
        if (!is_nil(head) && evbuffer_get_length(p->reply) == 0)
            evbuffer_add_buffer(p->reply, part->reply);
        return NULL;
    case MERGE_CONCAT:
        return merge_concat(f, p, part, head);
    case MERGE_AND:
        return merge_and(f, part);
    case MERGE_SCAN:
        return merge_scan(f, p, part, head);
    case MERGE_KEYORDER:
        *free_part = 0;
        return NULL;
    case MERGE_FOLD: {
        struct backend *b = p->client ? route_owner(p->client->w, part->slot) : NULL;
        return f->fold->part(f->fold_state, part->part, part->reply, b ? b->host : "?", b ? b->port : 0);
    }
    default:
        return "ERR respgate: no merge for this command";
    }
}

/* MERGE_KEYORDER: copies the elements of PART's reply (an array of one
 * element per key, LEN bytes at S) into F's staging area. Returns 0, or -1
 * (nothing staged) when the reply is not one to stage. */
static int stage_elements(struct fanout *f, const struct req *part, const char *s, size_t len)
{
    long long n;
    size_t l;
    uint32_t first = f->first_unit[part->part], count = f->first_unit[part->part + 1] - first;
    if (s[0] != '*' || flat_number(s, len, &n, &l) < 0 || n != (long long)count)
        return -1;
    if (f->stage_cap - f->staged < len) {
        size_t cap = f->stage_cap ? f->stage_cap : 512;
        while (cap - f->staged < len)
            cap *= 2;
        char *grown = realloc(f->stage, cap);
        if (grown == NULL)
            return -1;
        f->stage = grown;
        f->stage_cap = cap;
    }
    size_t at = l;
    for (uint32_t i = 0; i < count; i++) {
        size_t el = resp_flat_element(s + at, len - at);
        if (el == 0)
            return -1;
        f->elem[first + i] = (struct span){.off = (uint32_t)(f->staged + at - l), .len = (uint32_t)el};
        at += el;
    }
    if (at != len)
        return -1;
    memcpy(f->stage + f->staged, s + l, at - l);
    f->staged += at - l;
    return 0;
}

/* MERGE_KEYORDER: every part's array, one element per key, back in the
 * order of the request's keys, from the staging area or from the replies
 * kept whole. Returns NULL or an error text. */
static const char *merge_keyorder(struct fanout *f, struct req *p)
{
    int all_staged = 1;
    for (size_t i = 0; i < f->nparts; i++) {
        if (f->parts[i] == NULL)
            continue;
        all_staged = 0;
        char head[HEAD_MAX];
        long long n;
        size_t l;
        peek_head(f->parts[i]->reply, head);
        if (head[0] != '*' || head_number(head, &n, &l) < 0)
            return "ERR respgate: unexpected reply from a node";
        evbuffer_drain(f->parts[i]->reply, l);
    }
    char head[RESP_HEAD_MAX];
    size_t hl = resp_head(head, '*', f->nkeys);
    if (all_staged) {
        /* The usual case: one reservation, filled in key order. */
        struct evbuffer_iovec v;
        if (evbuffer_reserve_space(p->reply, (ev_ssize_t)(hl + f->staged), &v, 1) != 1)
            return REQ_OUT_OF_MEMORY;
        char *o = v.iov_base;
        memcpy(o, head, hl);
        o += hl;
        for (size_t k = 0; k < f->nkeys; k++) {
            const struct span *e = &f->elem[f->first_unit[f->part_of_key[k]]++]; /* the parts are done with it */
            memcpy(o, f->stage + e->off, e->len);
            o += e->len;
        }
        v.iov_len = (size_t)(o - (char *)v.iov_base);
        evbuffer_commit_space(p->reply, &v, 1);
        return NULL;
    }
    evbuffer_add(p->reply, head, hl);
    for (size_t k = 0; k < f->nkeys; k++) {
        size_t i = f->part_of_key[k];
        if (f->parts[i] == NULL) {
            const struct span *e = &f->elem[f->first_unit[i]++];
            evbuffer_add(p->reply, f->stage + e->off, e->len);
            continue;
        }
        struct evbuffer *from = f->parts[i]->reply;
        struct resp_reply el = {0};
        if (resp_reply_scan(&el, from) != RESP_FRAME)
            return "ERR respgate: a node's reply has fewer elements than keys";
        netio_move(p->reply, from, el.len);
    }
    return NULL;
}

/* Drops one of P's pending counts; the last one writes the merged reply
 * and completes P. */
static void release(struct worker *w, struct req *r);

static void finish(struct worker *w, struct req *p)
{
    struct fanout *f = p->fan;
    if (--f->pending > 0)
        return;
    if (!f->failed) {
        const char *err = NULL;
        char num[32];
        switch (f->merge) {
        case MERGE_SUM:
        case MERGE_MIN:
            evbuffer_add_printf(p->reply, ":%lld\r\n", f->acc);
            break;
        case MERGE_CONCAT:
            snprintf(num, sizeof(num), "*%zu\r\n", f->count);
            evbuffer_prepend(p->reply, num, strlen(num));
            break;
        case MERGE_KEYORDER:
            err = merge_keyorder(f, p);
            break;
        case MERGE_AND:
            evbuffer_add_printf(p->reply, "*%zu\r\n", f->count);
            for (size_t i = 0; i < f->count; i++)
                evbuffer_add(p->reply, f->and[i] ? ":1\r\n" : ":0\r\n", 4);
            break;
        case MERGE_NONNIL:
            if (evbuffer_get_length(p->reply) == 0)
                resp_add_nil(p->reply, p->resp3 ? 3 : 2);
            break;
        case MERGE_FOLD:
            f->fold->finish(f->fold_state, p->reply, p->resp3 ? 3 : 2);
            break;
        default:
            break;
        }
        if (err) {
            evbuffer_drain(p->reply, evbuffer_get_length(p->reply));
            resp_add_error(p->reply, "%s", err);
        }
    }
    release(w, p);
    req_complete(w, p);
}

static void part_done(struct worker *w, struct req *part)
{
    struct req *p = part->parent;
    struct fanout *f = p->fan;
    int free_part = 1;
    if (!f->failed) {
        const char *err = merge_one(f, p, part, &free_part);
        if (err) {
            fail_with(f, p, part, err);
            free_part = 1;
        }
    }
    if (free_part) {
        if (f->parts)
            f->parts[part->part] = NULL;
        req_free(w, part);
    }
    finish(w, p);
}

/* PART's reply is the LEN bytes at the front of IN: merges that need
 * nothing but a number or a status take it from there, and a short MGET
 * part's elements are staged; the rest go the way of part_done. */
static void part_take(struct worker *w, struct req *part, struct evbuffer *in, size_t len, char type)
{
    struct req *p = part->parent;
    struct fanout *f = p->fan;
    const char *s = len <= STAGE_MAX ? netio_front(in, len) : NULL;
    int taken = 0;
    if (s && !f->failed && type != '-') {
        long long v, sum;
        switch (f->merge) {
        case MERGE_ALL:
            if (evbuffer_get_length(p->reply) == 0)
                evbuffer_add(p->reply, s, len);
            taken = 1;
            break;
        case MERGE_SUM:
            if (type == ':') {
                taken = flat_number(s, len, &v, NULL) == 0 && !__builtin_add_overflow(f->acc, v, &sum);
                if (taken)
                    f->acc = sum;
            }
            break;
        case MERGE_KEYORDER:
            taken = stage_elements(f, part, s, len) == 0;
            break;
        default:
            break;
        }
    }
    if (!taken) {
        netio_move(part->reply, in, len);
        part_done(w, part);
        return;
    }
    evbuffer_drain(in, len);
    if (f->parts)
        f->parts[part->part] = NULL;
    req_free(w, part);
    finish(w, p);
}

static int part_wanted(const struct req *part)
{
    return req_wanted(part->parent);
}

static void part_wrote(struct req *part, struct backend *b)
{
    req_wrote(part->parent, b);
}

/* A part's reply is merged into its parent's; the last one completes it. */
static int part_frame(const struct req *part, struct evbuffer *out);
static const struct req_sink part_sink = {
    .done = part_done, .wanted = part_wanted, .wrote = part_wrote, .take = part_take, .frame = part_frame};

static void release(struct worker *w, struct req *r)
{
    struct fanout *f = r->fan;
    r->fan = NULL;
    if (f == NULL)
        return;
    /* Kept for a merge: none is out any more, or none was sent. */
    for (size_t i = 0; f->pending == 0 && f->parts && i < f->nparts; i++)
        if (f->parts[i])
            req_free(w, f->parts[i]);
    free(f->and);
    free(f->stage);
    if (f->fold)
        f->fold->free(f->fold_state);
    free(f);
}

/* A new part of P for SLOT, counted as pending. NULL if out of memory. */
static struct req *new_part(struct worker *w, struct req *p, int slot)
{
    struct req *part = req_new(w, REQ_PART, &part_sink);
    if (part == NULL)
        return NULL;
    part->parent = p;
    part->slot = (uint16_t)slot;
    part->write = p->write;
    part->readonly = p->readonly;
    part->miss = p->miss;
    part->resp3 = p->resp3;
    p->fan->pending++;
    return part;
}

/* A fan-out for P merging by MERGE, with EXTRA bytes after it for arrays. */
static struct fanout *new_fanout(struct req *p, int merge, size_t extra)
{
    struct fanout *f = calloc(1, sizeof(*f) + extra);
    if (f == NULL)
        return NULL;
    f->merge = (uint8_t)merge;
    f->pending = 1; /* held while sending, so a part failing at once cannot finish P early */
    p->fan = f;
    client_awaits(p);
    return f;
}

/* One part of P per slot of its NKEYS keys (argument indexes KEYS), in the
 * order the slots first appear; UNITS[i] counts part i's keys. Returns
 * NULL, or the error if out of memory (no part is left then). */
static const char *make_parts(struct worker *w, struct req *p, const struct resp_req *q, const size_t *keys,
                              size_t nkeys, size_t *units)
{
    struct fanout *f = p->fan;
    const char *oom = NULL;
    for (size_t k = 0; k < nkeys; k++) {
        unsigned s = slot_of_arg(p->buf, &q->argv[keys[k]]);
        if (slot_part[s] == 0) {
            struct req *part = oom ? NULL : new_part(w, p, (int)s);
            if (part == NULL) {
                oom = REQ_OUT_OF_MEMORY;
                continue;
            }
            part->part = (uint16_t)f->nparts;
            f->parts[f->nparts++] = part;
            slot_part[s] = (uint16_t)f->nparts;
        }
        f->part_of_key[k] = (uint16_t)(slot_part[s] - 1);
        units[f->part_of_key[k]]++;
    }
    for (size_t i = 0; i < f->nparts; i++)
        slot_part[f->parts[i]->slot] = 0;
    if (oom) {
        for (size_t i = 0; i < f->nparts; i++)
            req_free(w, f->parts[i]);
        f->nparts = 0;
    }
    return oom;
}

/* A part's head: "*N", the command's name. Returns its length. */
static size_t part_head(const struct fanout *f, uint32_t nunits, const char *name, char *head)
{
    size_t hl = resp_head(head, '*', 1 + (size_t)nunits * f->step);
    hl += resp_head(head + hl, '$', f->name.len);
    memcpy(head + hl, name, f->name.len);
    hl += f->name.len;
    head[hl++] = '\r';
    head[hl++] = '\n';
    return hl;
}

/* The frame of PART, made from its parent's, which lies in one chain: its
 * head, then each of its keys' elements as they are in the client's frame,
 * "$len" headers and CRLFs included, written in one reservation of OUT. */
static int part_frame(const struct req *part, struct evbuffer *out)
{
    const struct req *p = part->parent;
    const struct fanout *f = p->fan;
    const char *flat = netio_front(p->buf, evbuffer_get_length(p->buf));
    uint32_t a = f->first_unit[part->part], b = f->first_unit[part->part + 1];
    char head[2 * RESP_HEAD_MAX + SPLIT_NAME_MAX];
    size_t hl = part_head(f, b - a, flat + f->name.off, head), total = hl;
    for (uint32_t u = a; u < b; u++)
        total += f->unit[u].len;
    struct evbuffer_iovec v;
    if (evbuffer_reserve_space(out, (ev_ssize_t)total, &v, 1) != 1)
        return -1;
    char *o = v.iov_base;
    memcpy(o, head, hl);
    o += hl;
    for (uint32_t u = a; u < b; u++) {
        memcpy(o, flat + f->unit[u].off, f->unit[u].len);
        o += f->unit[u].len;
    }
    v.iov_len = total;
    return evbuffer_commit_space(out, &v, 1);
}

/* Where each key's unit (the key and its STEP - 1 values, which lie end to
 * end in P's frame) is, part by part. When the frame lies in one chain (a
 * frame the size of a read), it stays in P->buf and each part's frame is
 * made from it at every send (part_frame); a larger one is moved into the
 * parts as whole chains, so large values are not copied to be split. */
static void place_units(struct req *p, const struct resp_req *q, const size_t *keys, size_t nkeys, size_t *cursor)
{
    struct fanout *f = p->fan;
    size_t total = evbuffer_get_length(p->buf);
    int flat = total <= UINT32_MAX && f->name.len <= SPLIT_NAME_MAX && netio_front(p->buf, total) != NULL;
    if (!flat) {
        char name[SPLIT_NAME_MAX + 1], head[2 * RESP_HEAD_MAX + SPLIT_NAME_MAX];
        size_t n;
        resp_arg_str(p->buf, q, 0, name, sizeof(name), &n); /* a split command's name is short */
        f->name.len = (uint32_t)n;
        for (size_t i = 0; i < f->nparts; i++)
            evbuffer_add(f->parts[i]->buf, head, part_head(f, f->first_unit[i + 1] - f->first_unit[i], name, head));
    }
    for (size_t i = 0; i < f->nparts; i++)
        cursor[i] = f->first_unit[i];
    size_t consumed = 0;
    for (size_t k = 0; k < nkeys; k++) {
        const struct resp_arg *before = &q->argv[keys[k] - 1];
        size_t last = keys[k] + f->step - 1 < q->argc ? keys[k] + f->step - 1 : q->argc - 1;
        size_t from = before->off + before->len + 2, to = q->argv[last].off + q->argv[last].len + 2;
        struct req *part = f->parts[f->part_of_key[k]];
        if (flat) {
            f->unit[cursor[part->part]++] = (struct span){.off = (uint32_t)from, .len = (uint32_t)(to - from)};
            continue;
        }
        evbuffer_drain(p->buf, from - consumed);
        evbuffer_remove_buffer(p->buf, part->buf, to - from);
        consumed = to;
    }
    if (!flat)
        evbuffer_drain(p->buf, evbuffer_get_length(p->buf));
}

void fanout_split(struct worker *w, struct req *r, const struct cmd_spec *cmd, const struct resp_req *q,
                  const size_t *keys, size_t nkeys)
{
    size_t step = cmd->keyspecs[0].keystep > 0 ? (size_t)cmd->keyspecs[0].keystep : 1;
    if (keys[nkeys - 1] + step != q->argc) {
        /* MSET a 1 b: the last key has no value (the node would say so, but
         * only after the other parts ran). */
        req_fail(w, r, "ERR wrong number of arguments for '%s' command", cmd->name);
        return;
    }
    size_t maxparts = nkeys < SLOT_COUNT ? nkeys : SLOT_COUNT;
    size_t extra = maxparts * (sizeof(struct req *) + sizeof(size_t)) + 2 * nkeys * sizeof(struct span) +
                   (maxparts + 1) * sizeof(uint32_t) + nkeys * sizeof(uint16_t);
    struct fanout *f = new_fanout(r, cmd->merge, extra);
    if (f == NULL) {
        req_fail(w, r, REQ_OUT_OF_MEMORY);
        return;
    }
    f->parts = (struct req **)(f + 1);
    size_t *units = (size_t *)(f->parts + maxparts);
    f->unit = (struct span *)(units + maxparts);
    f->elem = f->unit + nkeys;
    f->first_unit = (uint32_t *)(f->elem + nkeys);
    f->part_of_key = (uint16_t *)(f->first_unit + maxparts + 1);
    f->step = (uint8_t)step;
    f->name = (struct span){.off = (uint32_t)q->argv[0].off, .len = (uint32_t)q->argv[0].len};
    f->nkeys = nkeys;
    const char *oom = make_parts(w, r, q, keys, nkeys, units);
    if (oom) {
        release(w, r);
        req_fail(w, r, "%s", oom);
        return;
    }
    size_t at = 0;
    for (size_t i = 0; i < f->nparts; at += units[i++])
        f->first_unit[i] = (uint32_t)at;
    f->first_unit[f->nparts] = (uint32_t)at;
    place_units(r, q, keys, nkeys, units);
    for (size_t i = 0; i < f->nparts; i++)
        route_send(w, f->parts[i], f->parts[i]->slot); /* completes through part_sink */
    finish(w, r);
}

/* SCAN: respgate's cursor is node cursor * 16384 + the first slot of the
 * master being walked; 0 starts at the master of slot 0. When that master's
 * own cursor comes back 0, the next master's first slot is the cursor, and
 * after the last master, 0. A master that took over another's slots in a
 * failover serves the same first slot, so the walk goes on with it. */
static void scan(struct worker *w, struct req *r, const struct resp_req *q)
{
    uint64_t cursor;
    if (resp_arg_u64(r->buf, q, 1, &cursor) < 0) {
        req_fail(w, r, "ERR invalid cursor");
        return;
    }
    struct route_master *m = NULL;
    long n = route_masters(w, &m);
    if (n < 0) {
        req_fail(w, r, REQ_OUT_OF_MEMORY);
        return;
    }
    unsigned slot = (unsigned)(cursor % SLOT_COUNT);
    long i = 0;
    while (i < n && m[i].first != slot && cursor != 0)
        i++;
    /* Slots moved since the cursor was made: go on with whoever serves it. */
    for (long j = 0; i == n && j < n; j++)
        if (m[j].b == route_owner(w, slot))
            i = j;
    if (i == n) {
        free(m);
        req_fail(w, r, REQ_SLOT_NOT_SERVED);
        return;
    }
    struct fanout *f = new_fanout(r, MERGE_SCAN, 0);
    struct req *part = f ? new_part(w, r, m[i].first) : NULL;
    if (part == NULL) {
        free(m);
        release(w, r);
        req_fail(w, r, REQ_OUT_OF_MEMORY);
        return;
    }
    f->scan_first = m[i].first;
    f->scan_next = i + 1 < n ? m[i + 1].first : 0;
    free(m);
    char num[24];
    int k = snprintf(num, sizeof(num), "%" PRIu64, cursor / SLOT_COUNT);
    evbuffer_add_printf(part->buf, "*%zu\r\n$4\r\nSCAN\r\n$%d\r\n%s\r\n", q->argc, k, num);
    for (size_t a = 2; a < q->argc; a++)
        resp_add_arg(part->buf, r->buf, &q->argv[a]);
    route_send(w, part, part->slot);
    finish(w, r);
}

/* WAIT: the masters this session wrote to since its last WAIT. */
static long wait_targets(struct worker *w, struct client *c, struct route_master *m, long n)
{
    if (c->wrote.many || c->wrote.n == 0)
        return c->wrote.many ? n : (n > 0 ? 1 : 0);
    long k = 0;
    for (long i = 0; i < n; i++)
        for (size_t j = 0; j < c->wrote.n; j++)
            if (m[i].b == c->wrote.masters[j]) {
                m[k++] = m[i];
                break;
            }
    return k;
}

/* WAIT blocks the connection it runs on, and that connection is shared by
 * every client of this worker: its timeout is capped at half of
 * timeouts.backend (0, forever, included), so the others wait that long at
 * most and the connection is never timed out. WAIT may return before
 * enough replicas acknowledged; its reply says how many did. */
static void cap_wait_timeout(struct worker *w, struct req *r, const struct resp_req *q)
{
    uint64_t t, cap = w->conf->backend_timeout_ms / 2;
    if (resp_arg_u64(r->buf, q, 2, &t) < 0 || (t != 0 && t <= cap))
        return; /* not a number: the node answers with its own error */
    struct evbuffer *frame = evbuffer_new();
    if (frame == NULL)
        return;
    char num[24];
    int k = snprintf(num, sizeof(num), "%" PRIu64, cap ? cap : 1);
    evbuffer_add(frame, "*3\r\n$4\r\nWAIT\r\n", 14);
    resp_add_arg(frame, r->buf, &q->argv[1]);
    evbuffer_add_printf(frame, "$%d\r\n%s\r\n", k, num);
    evbuffer_drain(r->buf, evbuffer_get_length(r->buf));
    evbuffer_add_buffer(r->buf, frame);
    evbuffer_free(frame);
}

/* Sends PART to B's node on a connection of its own: a command a busy node
 * takes (SCRIPT KILL, FUNCTION KILL) must not queue behind the script it
 * ends on the shared connection, where the node reads nothing until the
 * script is over. Like a blocking command's, that connection has no reply
 * timeout: a node answers nobody until its script passed busy-reply-threshold.
 * Falls back to the shared connection when client C has no private
 * connection to spare (or is gone). */
static void send_beside(struct worker *w, struct client *c, struct req *part, struct backend *b)
{
    struct backend *own = c && c->nprivate < SESSION_PRIVATE_MAX
                              ? client_open_private(c, &session_private_ops, b->host, b->port, BACKEND_BESIDE)
                              : NULL;
    if (own == NULL) {
        route_send(w, part, part->slot);
        return;
    }
    part->pinned = 1; /* for this node: never redirected or sent elsewhere */
    if (backend_send(own, part) < 0)
        req_fail(w, part, "ERR respgate: cannot reach %s:%d", b->host, b->port);
    backend_release(own); /* closes once answered */
}

/* Sends R's FRAME (LEN bytes) to every replica in W's map that is not
 * failing, each as a part of fan-out F: a replica takes its master's place
 * in a failover, so it gets the same configuration. */
static void send_to_replicas(struct worker *w, struct fanout *f, struct req *r, const unsigned char *frame, size_t len)
{
    for (size_t i = 0; i < w->map->nnodes; i++) {
        const struct slotmap_node *node = &w->map->nodes[i];
        if (node->is_master || node->failing)
            continue;
        struct backend *b = route_backend(w, node->host, node->port);
        struct req *part = b ? new_part(w, r, 0) : NULL;
        if (part == NULL) {
            fail_with(f, r, NULL, REQ_OUT_OF_MEMORY);
            return;
        }
        evbuffer_add(part->buf, frame, len);
        part->pinned = 1; /* for this node, never redirected or sent elsewhere */
        if (backend_send(b, part) < 0)
            req_fail(w, part, "ERR respgate: cannot reach replica %s:%d", b->host, b->port);
    }
}

void fanout_broadcast(struct worker *w, struct req *r, const struct cmd_spec *cmd, const struct resp_req *q)
{
    if (cmd->merge == MERGE_SCAN) {
        scan(w, r, q);
        return;
    }
    struct route_master *m = NULL;
    long n = route_masters(w, &m);
    struct fanout *f = n < 0 ? NULL : new_fanout(r, cmd->merge, 0);
    if (f == NULL) {
        free(m);
        req_fail(w, r, REQ_OUT_OF_MEMORY);
        return;
    }
    if (cmd->merge == MERGE_MIN && r->client) {
        client_note_blocking(w, r); /* WAIT */
        int wrote = r->client->wrote.n || r->client->wrote.many;
        n = wait_targets(w, r->client, m, n);
        r->client->wrote.n = 0;
        r->client->wrote.many = 0;
        if (n == 0 && wrote) {
            /* The masters written to serve no slots any more (a failover):
             * nobody can acknowledge those writes now. */
            free(m);
            release(w, r);
            evbuffer_add(r->reply, ":0\r\n", 4);
            req_complete(w, r);
            return;
        }
        cap_wait_timeout(w, r, q);
    }
    size_t len = evbuffer_get_length(r->buf);
    const unsigned char *frame = evbuffer_pullup(r->buf, -1);
    for (long i = 0; i < n; i++) {
        struct req *part = new_part(w, r, m[i].first);
        if (part == NULL) {
            fail_with(f, r, NULL, REQ_OUT_OF_MEMORY);
            break;
        }
        /* A copy: these frames are small, and each part must own one. */
        evbuffer_add(part->buf, frame, len);
        if (cmd->flags & CMDF_ALLOW_BUSY)
            send_beside(w, r->client, part, m[i].b);
        else
            route_send(w, part, part->slot);
    }
    free(m);
    if ((cmd->ctx & CMD_CTX_REPLICAS_TOO) && n > 0)
        send_to_replicas(w, f, r, frame, len);
    if (n == 0)
        fail_with(f, r, NULL, "CLUSTERDOWN The cluster is down");
    finish(w, r);
}

int fanout_fold(struct worker *w, struct req *r, const struct fanout_fold *fold, void *state, const char *frame,
                size_t len)
{
    struct route_master *m = NULL;
    long n = route_masters(w, &m);
    struct fanout *f = n > 0 ? new_fanout(r, MERGE_FOLD, 0) : NULL;
    if (f == NULL) {
        free(m);
        return -1;
    }
    f->fold = fold;
    f->fold_state = state;
    for (long i = 0; i < n; i++) {
        struct req *part = new_part(w, r, m[i].first);
        if (part == NULL) {
            fail_with(f, r, NULL, REQ_OUT_OF_MEMORY);
            break;
        }
        part->part = (uint16_t)i; /* slot order: part 0 is the first master */
        part->resp3 = 0;          /* the text is read here, and RESP2 sends it plain */
        evbuffer_add(part->buf, frame, len);
        route_send(w, part, part->slot);
    }
    free(m);
    finish(w, r);
    return 0;
}
