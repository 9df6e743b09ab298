/*
 * tls: contexts from the configuration, see tls.h.
 */
#include "model/tls.h"

#include "model/conf.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>

/* What OpenSSL said last, after WHAT, into ERR. */
static void say(char *err, size_t errlen, const char *what)
{
    char why[256] = "";
    unsigned long e = ERR_peek_last_error();
    if (e)
        ERR_error_string_n(e, why, sizeof(why));
    ERR_clear_error();
    snprintf(err, errlen, "%s%s%s", what, e ? ": " : "", why);
}

/* What both sides share: the versions, and the modes netio.c relies on. */
static SSL_CTX *ctx_new(const SSL_METHOD *method, int min_version)
{
    SSL_CTX *ctx = SSL_CTX_new(method);
    if (ctx == NULL)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, min_version == TLS_V1_3 ? TLS1_3_VERSION : TLS1_2_VERSION);
    /* No renegotiation: a write never has to wait for a read, nor a read
     * for a write, once the handshake is done (netio.c). A peer that
     * closes without close_notify (most Redis clients do) has closed. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_COMPRESSION);
    /* A write returns after each record, and retries with the same bytes
     * wherever the buffer has moved; idle connections give their buffers
     * back (thousands of clients); a read takes whatever the socket has. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_read_ahead(ctx, 1);
    return ctx;
}

static int set_ciphers(SSL_CTX *ctx, const char *ciphers, const char *suites, const char *prefix, char *err,
                       size_t errlen)
{
    char what[64];
    if (ciphers && !SSL_CTX_set_cipher_list(ctx, ciphers)) {
        snprintf(what, sizeof(what), "%sciphers: OpenSSL accepts none of them", prefix);
        say(err, errlen, what);
        return -1;
    }
    if (suites && !SSL_CTX_set_ciphersuites(ctx, suites)) {
        snprintf(what, sizeof(what), "%sciphersuites: OpenSSL accepts none of them", prefix);
        say(err, errlen, what);
        return -1;
    }
    return 0;
}

/* Loads CERT (a chain, leaf first) and KEY into CTX. */
static int use_cert(SSL_CTX *ctx, const char *cert, const char *key, const char *prefix, char *err, size_t errlen)
{
    char what[CONF_HOST_MAX + 64];
    if (!SSL_CTX_use_certificate_chain_file(ctx, cert)) {
        snprintf(what, sizeof(what), "%scert_file: cannot load %s", prefix, cert);
        say(err, errlen, what);
        return -1;
    }
    if (!SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM)) {
        if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH)
            snprintf(what, sizeof(what), "%skey_file: %s does not match %s", prefix, key, cert);
        else
            snprintf(what, sizeof(what), "%skey_file: cannot load %s", prefix, key);
        say(err, errlen, what);
        return -1;
    }
    if (!SSL_CTX_check_private_key(ctx)) {
        snprintf(what, sizeof(what), "%skey_file: %s does not match %s", prefix, key, cert);
        say(err, errlen, what);
        return -1;
    }
    return 0;
}

static SSL_CTX *listen_ctx(const struct conf *cf, char *err, size_t errlen)
{
    SSL_CTX *ctx = ctx_new(TLS_server_method(), cf->tls_min_version);
    if (ctx == NULL) {
        say(err, errlen, "tls: cannot make a context");
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (use_cert(ctx, cf->tls_cert_file, cf->tls_key_file, "tls.", err, errlen) < 0 ||
        set_ciphers(ctx, cf->tls_ciphers, cf->tls_ciphersuites, "tls.", err, errlen) < 0)
        goto fail;
    if (cf->tls_ca_file) {
        if (!SSL_CTX_load_verify_locations(ctx, cf->tls_ca_file, NULL)) {
            char what[CONF_HOST_MAX + 64];
            snprintf(what, sizeof(what), "tls.ca_file: cannot load %s", cf->tls_ca_file);
            say(err, errlen, what);
            goto fail;
        }
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cf->tls_ca_file);
        if (names)
            SSL_CTX_set_client_CA_list(ctx, names);
    }
    if (cf->tls_auth_clients != TLS_AUTH_NO)
        SSL_CTX_set_verify(ctx,
                           SSL_VERIFY_PEER | (cf->tls_auth_clients == TLS_AUTH_YES ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
                           NULL);
    /* Resumed sessions skip the certificate exchange; OpenSSL refuses to
     * resume a verified one without a context name. */
    static const unsigned char sid[] = "respgate";
    SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

static SSL_CTX *cluster_ctx(const struct conf *cf, char *err, size_t errlen)
{
    SSL_CTX *ctx = ctx_new(TLS_client_method(), TLS_V1_2);
    if (ctx == NULL) {
        say(err, errlen, "cluster.tls: cannot make a context");
        return NULL;
    }
    /* The nodes' certificates are always verified: against the given CA,
     * or the system's. */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (cf->cluster_tls_ca_file ? !SSL_CTX_load_verify_locations(ctx, cf->cluster_tls_ca_file, NULL)
                                : !SSL_CTX_set_default_verify_paths(ctx)) {
        char what[CONF_HOST_MAX + 64];
        snprintf(what, sizeof(what), "cluster.tls_ca_file: cannot load %s",
                 cf->cluster_tls_ca_file ? cf->cluster_tls_ca_file : "the system's CAs");
        say(err, errlen, what);
        goto fail;
    }
    if (cf->cluster_tls_cert_file &&
        use_cert(ctx, cf->cluster_tls_cert_file, cf->cluster_tls_key_file, "cluster.tls_", err, errlen) < 0)
        goto fail;
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

struct tls_ctxs *tls_ctxs_new(const struct conf *cf, char *err, size_t errlen)
{
    struct tls_ctxs *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        snprintf(err, errlen, "tls: out of memory");
        return NULL;
    }
    atomic_init(&t->refs, 1);
    int want_listen = 0;
    for (size_t i = 0; i < cf->listen.n; i++)
        want_listen |= cf->listen.v[i].tls;
    if ((want_listen && (t->listen = listen_ctx(cf, err, errlen)) == NULL) ||
        (cf->cluster_tls && (t->cluster = cluster_ctx(cf, err, errlen)) == NULL)) {
        tls_ctxs_unref(t);
        return NULL;
    }
    return t;
}

struct tls_ctxs *tls_ctxs_ref(struct tls_ctxs *t)
{
    atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
    return t;
}

void tls_ctxs_unref(struct tls_ctxs *t)
{
    if (t == NULL || atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1)
        return;
    SSL_CTX_free(t->listen);
    SSL_CTX_free(t->cluster);
    free(t);
}
