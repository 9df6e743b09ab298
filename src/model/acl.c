/* acl: users and what they may run (acl.h). */
#include "model/acl.h"

#include "model/cmd.h"

#include <event2/buffer.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void acl_sha256(const void *data, size_t len, unsigned char out[32])
{
    unsigned int n = 32;
    if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1)
        memset(out, 0, 32); /* no password hashes to zeros: nothing matches */
}

/* ---- glob ---- */

/* Whether C matches the one-character pattern at PAT[P] (a literal, ?, an
 * escape or a [class]); *ADV is its length in PAT. */
static int one_matches(const char *pat, size_t plen, size_t p, char c, size_t *adv)
{
    if (pat[p] == '?') {
        *adv = 1;
        return 1;
    }
    if (pat[p] == '\\' && p + 1 < plen) {
        *adv = 2;
        return pat[p + 1] == c;
    }
    if (pat[p] == '[') {
        size_t q = p + 1;
        int negate = q < plen && pat[q] == '^', hit = 0;
        q += negate;
        size_t end = q;
        while (end < plen && pat[end] != ']')
            end += pat[end] == '\\' && end + 1 < plen ? 2 : 1;
        if (end >= plen) { /* no closing bracket: a literal '[' */
            *adv = 1;
            return c == '[';
        }
        while (q < end) {
            if (pat[q] == '\\' && q + 1 < end) {
                hit |= pat[q + 1] == c;
                q += 2;
            } else if (q + 2 < end && pat[q + 1] == '-') {
                unsigned char lo = (unsigned char)pat[q], hi = (unsigned char)pat[q + 2], uc = (unsigned char)c;
                if (lo > hi) {
                    unsigned char t = lo;
                    lo = hi;
                    hi = t;
                }
                hit |= uc >= lo && uc <= hi;
                q += 3;
            } else {
                hit |= pat[q] == c;
                q++;
            }
        }
        *adv = end + 1 - p;
        return negate ? !hit : hit;
    }
    *adv = 1;
    return pat[p] == c;
}

int acl_glob(const char *pat, size_t plen, const char *s, size_t slen)
{
    size_t p = 0, i = 0, star_p = (size_t)-1, star_i = 0, adv;
    while (i < slen) {
        if (p < plen && pat[p] == '*') {
            while (p < plen && pat[p] == '*')
                p++;
            if (p == plen)
                return 1;
            star_p = p;
            star_i = i;
            continue;
        }
        if (p < plen && one_matches(pat, plen, p, s[i], &adv)) {
            p += adv;
            i++;
            continue;
        }
        if (star_p == (size_t)-1)
            return 0;
        /* the last star takes one more character, and the rest is tried again */
        p = star_p;
        i = ++star_i;
    }
    while (p < plen && pat[p] == '*')
        p++;
    return p == plen;
}

/* ---- rules ---- */

static void set_bit(struct acl_user *u, const struct cmd_spec *c, int on)
{
    if (on)
        u->allowed[c->id / 64] |= 1ull << (c->id % 64);
    else
        u->allowed[c->id / 64] &= ~(1ull << (c->id % 64));
}

/* A command and all its subcommands. */
static void set_command(struct acl_user *u, const struct cmd_spec *c, int on)
{
    set_bit(u, c, on);
    for (size_t i = 0; i < c->nsubs; i++)
        set_bit(u, &c->subs[i], on);
}

/* Every command (and subcommand) in category BIT (0: all of them). */
static void set_category(struct acl_user *u, uint32_t bit, int on)
{
    for (size_t i = 0; i < cmd_table_len; i++) {
        const struct cmd_spec *c = &cmd_table[i];
        if (bit == 0 || (c->acl & bit))
            set_bit(u, c, on);
        for (size_t j = 0; j < c->nsubs; j++)
            if (bit == 0 || (c->subs[j].acl & bit))
                set_bit(u, &c->subs[j], on);
    }
}

static int hex_value(char ch)
{
    return ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

static int add_hash(struct acl_user *u, const unsigned char h[32])
{
    for (unsigned i = 0; i < u->npass; i++)
        if (memcmp(u->pass[i], h, 32) == 0)
            return 0;
    if (u->npass == ACL_PASSWORDS_MAX)
        return -1;
    memcpy(u->pass[u->npass++], h, 32);
    u->nopass = 0;
    return 0;
}

static void remove_hash(struct acl_user *u, const unsigned char h[32])
{
    for (unsigned i = 0; i < u->npass; i++)
        if (memcmp(u->pass[i], h, 32) == 0) {
            memmove(u->pass[i], u->pass[i + 1], (u->npass - i - 1) * 32);
            u->npass--;
            return;
        }
}

static void patterns_reset(struct acl_patterns *p)
{
    for (unsigned i = 0; i < p->n; i++)
        free(p->v[i]);
    p->n = 0;
    p->all = 0;
}

/* Adds pattern PAT (LEN bytes) to P, of KIND ("keys", "channels"), with
 * ALL_WORD the rule that allows all of them. Returns NULL or why not. */
static const char *patterns_add(struct acl_patterns *p, const char *pat, size_t len, const char *kind,
                                const char *all_word)
{
    static char why[256];
    if (len == 1 && pat[0] == '*') {
        patterns_reset(p);
        p->all = 1;
        return NULL;
    }
    if (p->all) {
        snprintf(why, sizeof(why), "Adding a pattern after the * pattern (or the '%s' flag) is not valid and does "
                 "not have any effect. Try 'reset%s' to start with an empty list of %s", all_word, kind,
                 kind[0] == 'k' ? "patterns" : "channels");
        return why;
    }
    if (p->n == ACL_PATTERNS_MAX) {
        snprintf(why, sizeof(why), "respgate: too many %s patterns for one user (%d at most)",
                 kind[0] == 'k' ? "key" : "channel", ACL_PATTERNS_MAX);
        return why;
    }
    if ((p->v[p->n] = strndup(pat, len)) == NULL)
        return "out of memory";
    p->len[p->n++] = len;
    return NULL;
}

static const char *command_rule(struct acl_user *u, const char *name, size_t len, int on)
{
    if (len > 1 && name[0] == '@') {
        if (len == 4 && strncasecmp(name + 1, "all", 3) == 0) {
            set_category(u, 0, on);
            u->all_commands = (unsigned)on;
            return NULL;
        }
        for (int i = 0; i < CMD_ACL_COUNT; i++)
            if (strlen(cmd_acl_names[i]) == len - 1 && strncasecmp(name + 1, cmd_acl_names[i], len - 1) == 0) {
                set_category(u, 1u << i, on);
                if (!on)
                    u->all_commands = 0;
                return NULL;
            }
        return "Unknown command or category name in ACL";
    }
    const char *bar = memchr(name, '|', len);
    const struct cmd_spec *c = cmd_lookup(name, bar ? (size_t)(bar - name) : len);
    if (c && bar)
        c = c->nsubs ? cmd_lookup_sub(c, bar + 1, len - (size_t)(bar + 1 - name)) : NULL;
    if (c == NULL)
        return bar ? "respgate: a first-argument rule or an unknown subcommand (only COMMAND|SUBCOMMAND rules of "
                     "known subcommands are supported)"
                   : "Unknown command or category name in ACL";
    set_command(u, c, on);
    if (!on)
        u->all_commands = 0;
    return NULL;
}

/* Applies the rule TOK (LEN bytes) to U. Returns NULL, or why it is refused. */
static const char *apply(struct acl_user *u, const char *tok, size_t len)
{
#define IS(word) (len == sizeof(word) - 1 && strncasecmp(tok, word, len) == 0)
    unsigned char h[32];
    if (IS("on") || IS("off")) {
        u->on = IS("on");
    } else if (IS("nopass")) {
        u->npass = 0;
        u->nopass = 1;
    } else if (IS("resetpass")) {
        u->npass = 0;
        u->nopass = 0;
    } else if (tok[0] == '>' || tok[0] == '<' || tok[0] == '#' || tok[0] == '!') {
        if (tok[0] == '>' || tok[0] == '<') {
            acl_sha256(tok + 1, len - 1, h);
        } else {
            for (int i = 0; i < 32; i++) {
                int hi = len == 65 ? hex_value(tok[1 + 2 * i]) : -1, lo = len == 65 ? hex_value(tok[2 + 2 * i]) : -1;
                if (hi < 0 || lo < 0)
                    return "The password hash must be exactly 64 characters and contain only lowercase "
                           "hexadecimal characters";
                h[i] = (unsigned char)(hi << 4 | lo);
            }
        }
        if (tok[0] == '<' || tok[0] == '!')
            remove_hash(u, h);
        else if (add_hash(u, h) < 0)
            return "respgate: too many passwords for one user (8 at most)";
    } else if (IS("allkeys")) {
        return patterns_add(&u->keys, "*", 1, "keys", "allkeys");
    } else if (IS("resetkeys")) {
        patterns_reset(&u->keys);
    } else if (tok[0] == '~') {
        return patterns_add(&u->keys, tok + 1, len - 1, "keys", "allkeys");
    } else if (tok[0] == '%') {
        return "respgate: read and write key patterns (%R~, %W~) are not supported; use ~pattern";
    } else if (IS("allchannels")) {
        return patterns_add(&u->channels, "*", 1, "channels", "allchannels");
    } else if (IS("resetchannels")) {
        patterns_reset(&u->channels);
    } else if (tok[0] == '&') {
        return patterns_add(&u->channels, tok + 1, len - 1, "channels", "allchannels");
    } else if (IS("sanitize-payload") || IS("skip-sanitize-payload")) {
        /* payloads are for the nodes to check */
    } else if (IS("allcommands")) {
        return command_rule(u, "@all", 4, 1);
    } else if (IS("nocommands")) {
        return command_rule(u, "@all", 4, 0);
    } else if (IS("reset")) {
        u->npass = 0;
        u->nopass = 0;
        patterns_reset(&u->keys);
        patterns_reset(&u->channels);
        u->on = 0;
        return command_rule(u, "@all", 4, 0);
    } else if ((tok[0] == '+' || tok[0] == '-') && len > 1) {
        return command_rule(u, tok + 1, len - 1, tok[0] == '+');
    } else {
        return "Syntax error";
    }
    return NULL;
#undef IS
}

/* Whether TOK (LEN bytes) says something about commands, for acl_describe. */
static int is_command_rule(const char *tok, size_t len)
{
    return tok[0] == '+' || tok[0] == '-' || (len == 11 && strncasecmp(tok, "allcommands", 11) == 0) ||
           (len == 10 && strncasecmp(tok, "nocommands", 10) == 0);
}

struct acl_user_private {
    struct acl_user u;
    char *commands; /* the command rules as given, for ACL LIST */
};

struct acl_user *acl_user_new(const char *name, const char *rules, char *why, size_t cap)
{
    struct acl_user_private *p = calloc(1, sizeof(*p));
    size_t words = (cmd_spec_count + 63) / 64;
    if (p == NULL || (p->u.allowed = calloc(words, sizeof(uint64_t))) == NULL ||
        (p->commands = calloc(1, strlen(rules) + 1)) == NULL) {
        snprintf(why, cap, "out of memory");
        acl_user_free(p ? &p->u : NULL);
        return NULL;
    }
    struct acl_user *u = &p->u;
    if (strlen(name) >= sizeof(u->name) || name[0] == '\0' || strpbrk(name, " \t\r\n")) {
        snprintf(why, cap, "a user name is 1 to %d characters without spaces", ACL_NAME_MAX - 1);
        acl_user_free(u);
        return NULL;
    }
    memcpy(u->name, name, strlen(name) + 1);
    for (const char *t = rules; *t;) {
        while (*t == ' ' || *t == '\t')
            t++;
        size_t len = strcspn(t, " \t");
        if (len == 0)
            break;
        const char *no = apply(u, t, len);
        if (no) {
            /* a password never reaches a message */
            int secret = t[0] == '>' || t[0] == '<';
            snprintf(why, cap, "Error in ACL SETUSER modifier '%.*s': %s", (int)(secret ? 1 : len > 80 ? 80 : len), t,
                     no);
            acl_user_free(u);
            return NULL;
        }
        if (is_command_rule(t, len)) {
            if (p->commands[0])
                strcat(p->commands, " ");
            strncat(p->commands, t, len);
        }
        t += len;
    }
    return u;
}

void acl_user_free(struct acl_user *u)
{
    if (u == NULL)
        return;
    struct acl_user_private *p = (struct acl_user_private *)u;
    patterns_reset(&u->keys);
    patterns_reset(&u->channels);
    free(u->allowed);
    free(p->commands);
    OPENSSL_cleanse(u->pass, sizeof(u->pass));
    free(p);
}

int acl_password_ok(const struct acl_user *u, const char *pass, size_t len)
{
    unsigned char h[32];
    int ok = 0;
    acl_sha256(pass, len, h);
    for (unsigned i = 0; i < u->npass; i++)
        ok |= CRYPTO_memcmp(h, u->pass[i], 32) == 0;
    OPENSSL_cleanse(h, sizeof(h));
    return u->on && (ok || u->nopass);
}

int acl_may_run(const struct acl_user *u, const struct cmd_spec *cmd)
{
    if (cmd->id == 0)
        return u->all_commands; /* taught by the nodes: in no rule but +@all */
    return (u->allowed[cmd->id / 64] >> (cmd->id % 64)) & 1;
}

int acl_key_ok(const struct acl_user *u, const char *key, size_t len)
{
    const struct acl_patterns *p = &u->keys;
    for (unsigned i = 0; !p->all && i < p->n; i++)
        if (acl_glob(p->v[i], p->len[i], key, len))
            return 1;
    return p->all;
}

int acl_channel_ok(const struct acl_user *u, const char *ch, size_t len, int is_pattern)
{
    const struct acl_patterns *p = &u->channels;
    for (unsigned i = 0; !p->all && i < p->n; i++)
        if (is_pattern ? p->len[i] == len && memcmp(p->v[i], ch, len) == 0 : acl_glob(p->v[i], p->len[i], ch, len))
            return 1;
    return p->all;
}

void acl_describe(const struct acl_user *u, struct evbuffer *out)
{
    const struct acl_user_private *p = (const struct acl_user_private *)u;
    evbuffer_add_printf(out, "user %s %s", u->name, u->on ? "on" : "off");
    if (u->nopass)
        evbuffer_add_printf(out, " nopass");
    if (u->keys.all)
        evbuffer_add_printf(out, " ~*");
    for (unsigned i = 0; i < u->keys.n; i++)
        evbuffer_add_printf(out, " ~%s", u->keys.v[i]);
    if (u->channels.all)
        evbuffer_add_printf(out, " &*");
    for (unsigned i = 0; i < u->channels.n; i++)
        evbuffer_add_printf(out, " &%s", u->channels.v[i]);
    if (!u->channels.all && u->channels.n == 0)
        evbuffer_add_printf(out, " resetchannels");
    if (p->commands[0])
        evbuffer_add_printf(out, " %s", p->commands);
    else
        evbuffer_add_printf(out, " -@all");
}
