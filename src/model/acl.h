/*
 * acl: the users a client may log in as, and what each may run: a common
 * subset of Redis's ACL rules (on/off, >password, #sha256, nopass,
 * resetpass, +@category, -@category, +command, -command, +command|sub,
 * allcommands, nocommands, ~pattern, allkeys, resetkeys, &pattern,
 * allchannels, resetchannels, reset), applied in
 * order as ACL SETUSER applies them. Checked by respgate before a command is
 * routed; the nodes never see these users (respgate logs in to them as
 * cluster.username). Pure: a user is built once per configuration, then
 * only read, by every worker.
 */
#ifndef RG_ACL_H
#define RG_ACL_H

#include <stddef.h>
#include <stdint.h>

struct cmd_spec;
struct evbuffer;

#define ACL_PASSWORDS_MAX 8
#define ACL_PATTERNS_MAX 64
#define ACL_NAME_MAX 64

/* Glob patterns (Redis's stringmatch), or all of them. */
struct acl_patterns {
    unsigned all;
    unsigned n;
    char *v[ACL_PATTERNS_MAX];
    size_t len[ACL_PATTERNS_MAX];
};

struct acl_user {
    char name[ACL_NAME_MAX];
    unsigned on : 1;
    unsigned nopass : 1;
    unsigned all_commands : 1;   /* +@all with nothing taken away since: commands the nodes taught too */
    unsigned npass;
    unsigned char pass[ACL_PASSWORDS_MAX][32]; /* SHA-256 of each password */
    uint64_t *allowed;           /* a bit per cmd_spec id (cmd_spec_count bits) */
    struct acl_patterns keys;     /* ~pattern */
    struct acl_patterns channels; /* &pattern */
};

/* A user named NAME as ACL SETUSER makes one (off, no password, no commands,
 * no keys, no channels: Redis 7's acl-pubsub-default), with RULES applied. Returns it, or NULL with the reason in WHY. */
struct acl_user *acl_user_new(const char *name, const char *rules, char *why, size_t cap);
void acl_user_free(struct acl_user *u); /* NULL is a no-op */

/* Whether PASS (LEN bytes) opens U: it is on, and nopass or one of its
 * passwords; in a time that does not depend on where a guess differs. */
int acl_password_ok(const struct acl_user *u, const char *pass, size_t len);

/* Whether U may run CMD (a subcommand's own spec when it has one). */
int acl_may_run(const struct acl_user *u, const struct cmd_spec *cmd);

/* Whether U may touch KEY (LEN bytes). */
int acl_key_ok(const struct acl_user *u, const char *key, size_t len);

/* Whether U may use channel CH (LEN bytes): as a channel (SUBSCRIBE,
 * PUBLISH) it must match one of U's patterns; as a pattern (PSUBSCRIBE) it
 * must be one of them, as Redis compares. */
int acl_channel_ok(const struct acl_user *u, const char *ch, size_t len, int is_pattern);

/* Redis's glob: * ? [a-z] [^x] and \ escapes. Bounded work: no recursion. */
int acl_glob(const char *pat, size_t plen, const char *s, size_t slen);

/* U as one line of ACL LIST, without its passwords ("user NAME on ..."). */
void acl_describe(const struct acl_user *u, struct evbuffer *out);

/* The SHA-256 of LEN bytes at DATA into OUT. */
void acl_sha256(const void *data, size_t len, unsigned char out[32]);

#endif
