/*
 * slotmap: the cluster's map, parsed from CLUSTER NODES, see slotmap.h.
 */
#include "model/slotmap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct slotmap *slotmap_ref(struct slotmap *m)
{
    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
    return m;
}

void slotmap_unref(struct slotmap *m)
{
    if (m == NULL || atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) != 1)
        return;
    free(m->nodes);
    free(m);
}

/* The decimal at S, up to its first byte that is not a digit, which must be
 * STOP: its value, or -1 if there is none or it is over MAX. A node's text
 * is a peer's like any other: atoi would take "4294967296" for slot 0. */
static long node_number(const char *s, char stop, long max)
{
    long v = 0;
    const char *p = s;
    for (; *p >= '0' && *p <= '9'; p++)
        if ((v = v * 10 + (*p - '0')) > max)
            return -1;
    return p == s || *p != stop ? -1 : v;
}

/* Splits LINE in place at spaces into at most MAX fields; returns the count. */
static int split_fields(char *line, char **f, int max)
{
    int n = 0;
    char *save = NULL;
    for (char *p = strtok_r(line, " ", &save); p && n < max; p = strtok_r(NULL, " ", &save))
        f[n++] = p;
    return n;
}

static int parse_node_addr(const char *field, const char *source_host, struct slotmap_node *n)
{
    char buf[SLOTMAP_ADDR_MAX + 16];
    snprintf(buf, sizeof(buf), "%s", field);
    char *at = strchr(buf, '@'), *comma = at ? strchr(at, ',') : NULL;
    /* "ip:port@cport,hostname", and in 7.2 ",hostname,shard-id=..." */
    size_t nlen = comma ? strcspn(comma + 1, ",") : 0;
    if (nlen && nlen < sizeof(n->name) && memchr(comma + 1, '=', nlen) == NULL) {
        memcpy(n->name, comma + 1, nlen);
        n->name[nlen] = '\0';
    }
    if (at)
        *at = '\0';
    char *colon = strrchr(buf, ':');
    if (colon == NULL)
        return -1;
    *colon = '\0';
    if ((n->port = (int)node_number(colon + 1, '\0', 65535)) <= 0)
        return -1;
    const char *host = buf[0] ? buf : source_host;
    if (strlen(host) >= sizeof(n->host))
        return -1;
    memcpy(n->host, host, strlen(host) + 1);
    return n->port > 0 && n->port <= 65535 && n->host[0] ? 0 : -1;
}

struct slotmap *slotmap_parse(const char *text, size_t len, const char *source_host, char *err, size_t errlen)
{
    struct slotmap *m = calloc(1, sizeof(*m));
    char *copy = malloc(len + 1);
    size_t cap = 0;
    char (*master_ids)[SLOTMAP_ID_LEN + 1] = NULL;
    if (m == NULL || copy == NULL)
        goto nomem;
    atomic_init(&m->refs, 1);
    memcpy(copy, text, len);
    copy[len] = '\0';
    for (int i = 0; i < SLOT_COUNT; i++)
        m->owner[i] = -1;

    char *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *f[8 + SLOT_COUNT]; /* a node may own every slot singly */
        size_t ll = strlen(line);
        if (ll && line[ll - 1] == '\r')
            line[ll - 1] = '\0';
        int nf = split_fields(line, f, (int)(sizeof(f) / sizeof(f[0])));
        if (nf == 0)
            continue;
        if (nf < 8 || strlen(f[0]) != SLOTMAP_ID_LEN) {
            snprintf(err, errlen, "unexpected line in CLUSTER NODES: %.80s", f[0]);
            goto fail;
        }
        if (strstr(f[2], "handshake") || strstr(f[2], "noaddr"))
            continue;
        if (m->nnodes == INT16_MAX) { /* owner[] holds an index as an int16_t */
            snprintf(err, errlen, "more than %d nodes in CLUSTER NODES", INT16_MAX);
            goto fail;
        }
        if (m->nnodes == cap) {
            cap = cap ? cap * 2 : 8;
            struct slotmap_node *nodes = realloc(m->nodes, cap * sizeof(*nodes));
            char(*ids)[SLOTMAP_ID_LEN + 1] = realloc(master_ids, cap * sizeof(*ids));
            if (nodes)
                m->nodes = nodes;
            if (ids)
                master_ids = ids;
            if (nodes == NULL || ids == NULL)
                goto nomem;
        }
        struct slotmap_node *n = &m->nodes[m->nnodes];
        memset(n, 0, sizeof(*n));
        memcpy(n->id, f[0], SLOTMAP_ID_LEN);
        if (parse_node_addr(f[1], source_host, n) < 0) {
            snprintf(err, errlen, "unexpected address in CLUSTER NODES: %.80s", f[1]);
            goto fail;
        }
        n->is_master = strstr(f[2], "master") != NULL;
        n->failing = strstr(f[2], "fail") != NULL;
        n->master = -1;
        snprintf(master_ids[m->nnodes], SLOTMAP_ID_LEN + 1, "%s", f[3]);
        for (int i = 8; i < nf && n->is_master; i++) {
            if (f[i][0] == '[')
                continue; /* a migrating or importing mark, not ownership */
            const char *dash = strchr(f[i], '-');
            long lo = node_number(f[i], dash ? '-' : '\0', SLOT_COUNT - 1);
            long hi = dash ? node_number(dash + 1, '\0', SLOT_COUNT - 1) : lo;
            if (lo < 0 || hi < 0 || lo > hi) {
                snprintf(err, errlen, "unexpected slot range in CLUSTER NODES: %.40s", f[i]);
                goto fail;
            }
            for (long s = lo; s <= hi; s++)
                m->owner[s] = (int16_t)m->nnodes;
        }
        m->nnodes++;
    }
    for (size_t i = 0; i < m->nnodes; i++)
        for (size_t j = 0; !m->nodes[i].is_master && j < m->nnodes; j++)
            if (strcmp(master_ids[i], m->nodes[j].id) == 0)
                m->nodes[i].master = (int)j;
    for (int s = 0; s < SLOT_COUNT; s++)
        m->nassigned += m->owner[s] >= 0;
    free(master_ids);
    free(copy);
    return m;
nomem:
    snprintf(err, errlen, "out of memory");
fail:
    free(master_ids);
    free(copy);
    slotmap_unref(m);
    return NULL;
}

int slotmap_same(const struct slotmap *a, const struct slotmap *b)
{
    if (a == NULL || b == NULL || a->nnodes != b->nnodes || memcmp(a->owner, b->owner, sizeof(a->owner)) != 0)
        return 0;
    for (size_t i = 0; i < a->nnodes; i++) {
        const struct slotmap_node *x = &a->nodes[i], *y = &b->nodes[i];
        if (strcmp(x->id, y->id) || strcmp(x->host, y->host) || strcmp(x->name, y->name) || x->port != y->port ||
            x->master != y->master ||
            x->is_master != y->is_master || x->failing != y->failing)
            return 0;
    }
    return 1;
}
