/*
 * tls: the OpenSSL contexts a configuration asks for. One for the listeners
 * marked tls (the server side: certificate, key, client verification,
 * minimum version, ciphers) and one for the connections to the nodes (the
 * client side: the CA that signs the nodes' certificates, an optional
 * client certificate). They are made again from the files at every reload,
 * so a renewed certificate is read without a restart; a connection keeps the
 * context it was made with (OpenSSL counts the references), so nobody is
 * dropped.
 */
#ifndef RG_TLS_H
#define RG_TLS_H

#include <stdatomic.h>
#include <stddef.h>

struct conf;
struct ssl_ctx_st;

struct tls_ctxs {
    atomic_int refs;
    struct ssl_ctx_st *listen;  /* NULL when no listener is marked tls */
    struct ssl_ctx_st *cluster; /* NULL unless cluster.tls */
};

/* The contexts CF asks for, with one reference; NULL with a reason in ERR
 * (a file that cannot be read, a key that does not match its certificate,
 * a cipher list OpenSSL refuses). A configuration without TLS gets an
 * empty set. */
struct tls_ctxs *tls_ctxs_new(const struct conf *cf, char *err, size_t errlen);

struct tls_ctxs *tls_ctxs_ref(struct tls_ctxs *t);
void tls_ctxs_unref(struct tls_ctxs *t); /* NULL is a no-op */

#endif
