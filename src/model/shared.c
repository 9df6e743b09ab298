/*
 * shared: what is in force, for every thread, see shared.h.
 */
#include "model/shared.h"
#include "base/clock.h"

#include "model/conf.h"
#include "model/nodecmd.h"
#include "model/slotmap.h"
#include "model/tls.h"

#include <stdio.h>
#include <string.h>

void shared_init(struct shared *sh, struct conf *conf, const char *conf_path)
{
    memset(sh, 0, sizeof(*sh));
    pthread_mutex_init(&sh->lock, NULL);
    sh->conf = conf;
    sh->conf_path = conf_path;
    sh->started_us = clock_us();
}

void shared_deinit(struct shared *sh)
{
    conf_unref(sh->conf);
    tls_ctxs_unref(sh->tls);
    slotmap_unref(sh->map);
    nodecmd_unref(sh->cmds);
    pthread_mutex_destroy(&sh->lock);
    memset(sh, 0, sizeof(*sh));
}

struct conf *shared_conf(struct shared *sh)
{
    pthread_mutex_lock(&sh->lock);
    struct conf *c = conf_ref(sh->conf);
    pthread_mutex_unlock(&sh->lock);
    return c;
}

struct tls_ctxs *shared_tls(struct shared *sh)
{
    pthread_mutex_lock(&sh->lock);
    struct tls_ctxs *t = tls_ctxs_ref(sh->tls);
    pthread_mutex_unlock(&sh->lock);
    return t;
}

struct slotmap *shared_map(struct shared *sh)
{
    pthread_mutex_lock(&sh->lock);
    struct slotmap *m = sh->map ? slotmap_ref(sh->map) : NULL;
    pthread_mutex_unlock(&sh->lock);
    return m;
}

struct nodecmd_table *shared_cmds(struct shared *sh)
{
    pthread_mutex_lock(&sh->lock);
    struct nodecmd_table *t = nodecmd_ref(sh->cmds);
    pthread_mutex_unlock(&sh->lock);
    return t;
}

void shared_set_conf(struct shared *sh, struct conf *conf, struct tls_ctxs *tls)
{
    pthread_mutex_lock(&sh->lock);
    struct conf *old = sh->conf;
    struct tls_ctxs *old_tls = sh->tls;
    sh->conf = conf;
    sh->tls = tls;
    pthread_mutex_unlock(&sh->lock);
    conf_unref(old);
    tls_ctxs_unref(old_tls);
}

void shared_set_map(struct shared *sh, struct slotmap *m)
{
    pthread_mutex_lock(&sh->lock);
    struct slotmap *old = sh->map;
    sh->map = m;
    pthread_mutex_unlock(&sh->lock);
    slotmap_unref(old);
}

void shared_set_cmds(struct shared *sh, struct nodecmd_table *t)
{
    pthread_mutex_lock(&sh->lock);
    struct nodecmd_table *old = sh->cmds;
    sh->cmds = t;
    pthread_mutex_unlock(&sh->lock);
    nodecmd_unref(old);
}

void shared_redis_version(struct shared *sh, char *buf, size_t len)
{
    pthread_mutex_lock(&sh->lock);
    snprintf(buf, len, "%s", sh->redis_version);
    pthread_mutex_unlock(&sh->lock);
}

void shared_set_redis_version(struct shared *sh, const char *version)
{
    pthread_mutex_lock(&sh->lock);
    snprintf(sh->redis_version, sizeof(sh->redis_version), "%s", version);
    pthread_mutex_unlock(&sh->lock);
}

uint64_t shared_busy_threshold_ms(struct shared *sh)
{
    uint64_t ms = atomic_load(&sh->busy_threshold_ms);
    return ms ? ms : 5000;
}

uint64_t shared_failover_wait_ms(struct shared *sh, const struct conf *cf)
{
    if (cf->failover_wait_ms)
        return cf->failover_wait_ms;
    uint64_t node_timeout = atomic_load(&sh->node_timeout_ms);
    return (node_timeout ? node_timeout : 15000) + 5000;
}

void shared_request_refresh(struct shared *sh)
{
    if (sh->refresh)
        sh->refresh(sh->refresh_arg);
}
