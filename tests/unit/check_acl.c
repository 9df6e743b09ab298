/*
 * check_acl: users built from Redis ACL rules: passwords (plain and SHA-256),
 * commands by name, subcommand and category in the order given, key
 * patterns with Redis's glob, and the rules refused with a reason.
 */
#include "model/acl.h"
#include "model/cmd.h"
#include "unit.h"

#include <event2/buffer.h>
#include <string.h>

static struct acl_user *user(const char *rules)
{
    char why[256] = "";
    struct acl_user *u = acl_user_new("app", rules, why, sizeof(why));
    ck_assert_msg(u != NULL, "%s: %s", rules, why);
    return u;
}

static const char *refusal(const char *rules)
{
    static char why[256];
    why[0] = '\0';
    struct acl_user *u = acl_user_new("app", rules, why, sizeof(why));
    ck_assert_msg(u == NULL, "%s was accepted", rules);
    return why;
}

static const struct cmd_spec *spec(const char *name)
{
    const char *bar = strchr(name, '|');
    const struct cmd_spec *c = cmd_lookup(name, bar ? (size_t)(bar - name) : strlen(name));
    if (c && bar)
        c = cmd_lookup_sub(c, bar + 1, strlen(bar + 1));
    ck_assert_msg(c != NULL, "no command %s", name);
    return c;
}

START_TEST(test_glob)
{
    static const struct {
        const char *pat, *s;
        int match;
    } cases[] = {
        {"*", "", 1}, {"*", "abc", 1}, {"app:*", "app:1", 1}, {"app:*", "ap", 0}, {"a?c", "abc", 1},
        {"a?c", "ac", 0}, {"*:*:end", "x:y:z:end", 1}, {"*:*:end", "x:end", 0}, {"[abc]x", "bx", 1},
        {"[abc]x", "dx", 0}, {"[^abc]x", "dx", 1}, {"[a-c]1", "b1", 1}, {"[c-a]1", "b1", 1}, {"[a-c]1", "d1", 0},
        {"a\\*", "a*", 1}, {"a\\*", "ab", 0}, {"a[", "a[", 1}, {"**x", "abx", 1}, {"*a*a*a*b", "aaaaaaaaaaaaaaaaaaaa", 0},
        {"user:{*}", "user:{42}", 1}, {"[\\]]", "]", 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        ck_assert_msg(acl_glob(cases[i].pat, strlen(cases[i].pat), cases[i].s, strlen(cases[i].s)) == cases[i].match,
                      "%s ~ %s", cases[i].pat, cases[i].s);
}
END_TEST

START_TEST(test_passwords)
{
    struct acl_user *u = user("on >secret >other");
    ck_assert(acl_password_ok(u, "secret", 6));
    ck_assert(acl_password_ok(u, "other", 5));
    ck_assert(!acl_password_ok(u, "secre", 5));
    ck_assert(!acl_password_ok(u, "", 0));
    acl_user_free(u);
    u = user("off >secret");
    ck_assert(!acl_password_ok(u, "secret", 6)); /* a user that is off opens to nothing */
    acl_user_free(u);
    /* sha256("secret"), as ACL GETUSER shows it */
    u = user("on #2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b");
    ck_assert(acl_password_ok(u, "secret", 6));
    ck_assert(!acl_password_ok(u, "Secret", 6));
    acl_user_free(u);
    u = user("on >a >b <a");
    ck_assert(!acl_password_ok(u, "a", 1) && acl_password_ok(u, "b", 1));
    acl_user_free(u);
    u = user("on nopass");
    ck_assert(acl_password_ok(u, "anything", 8));
    acl_user_free(u);
    u = user("on nopass >x resetpass");
    ck_assert(!acl_password_ok(u, "x", 1) && !acl_password_ok(u, "y", 1));
    acl_user_free(u);
    ck_assert_str_eq(refusal("on #ABCDEF"), "Error in ACL SETUSER modifier '#ABCDEF': The password hash must be "
                                            "exactly 64 characters and contain only lowercase hexadecimal characters");
    /* a password is never quoted */
    ck_assert_ptr_null(strstr(refusal("on >hunter2 bogus"), "hunter2"));
}
END_TEST

START_TEST(test_commands_in_order)
{
    struct acl_user *u = user("on +@read -@dangerous +set");
    ck_assert(acl_may_run(u, spec("get")));
    ck_assert(acl_may_run(u, spec("hgetall")));
    ck_assert(acl_may_run(u, spec("set")));
    ck_assert(!acl_may_run(u, spec("del")));
    ck_assert(!acl_may_run(u, spec("keys"))); /* @read, but @dangerous */
    acl_user_free(u);
    u = user("+@all -@dangerous");
    ck_assert(acl_may_run(u, spec("del")) && !acl_may_run(u, spec("flushall")) && !acl_may_run(u, spec("config|set")));
    ck_assert(!u->all_commands);
    acl_user_free(u);
    u = user("allcommands");
    ck_assert(acl_may_run(u, spec("flushall")) && u->all_commands);
    struct cmd_spec learned = {.name = "newcmd"};
    ck_assert(acl_may_run(u, &learned)); /* only +@all covers what the nodes taught */
    acl_user_free(u);
    u = user("+@read");
    ck_assert(!acl_may_run(u, &learned));
    acl_user_free(u);
    u = user("+config -config|set");
    ck_assert(acl_may_run(u, spec("config|get")) && !acl_may_run(u, spec("config|set")));
    acl_user_free(u);
    u = user("+@all nocommands +ping");
    ck_assert(acl_may_run(u, spec("ping")) && !acl_may_run(u, spec("get")));
    acl_user_free(u);
    u = user("+@all reset");
    ck_assert(!acl_may_run(u, spec("get")) && !u->on);
    acl_user_free(u);
    ck_assert_str_eq(refusal("+nosuchcommand"),
                     "Error in ACL SETUSER modifier '+nosuchcommand': Unknown command or category name in ACL");
    ck_assert_str_eq(refusal("+@nosuch"), "Error in ACL SETUSER modifier '+@nosuch': Unknown command or category name "
                                          "in ACL");
    ck_assert(strstr(refusal("+select|0"), "first-argument") != NULL);
    ck_assert(strstr(refusal("bogus"), "Syntax error") != NULL);
}
END_TEST

START_TEST(test_keys)
{
    struct acl_user *u = user("~app:* ~session:{*}");
    ck_assert(acl_key_ok(u, "app:1", 5) && acl_key_ok(u, "session:{x}", 11));
    ck_assert(!acl_key_ok(u, "other", 5) && !acl_key_ok(u, "ap", 2));
    acl_user_free(u);
    u = user("allkeys");
    ck_assert(acl_key_ok(u, "anything", 8));
    acl_user_free(u);
    u = user("~* resetkeys ~a");
    ck_assert(!acl_key_ok(u, "b", 1) && acl_key_ok(u, "a", 1));
    acl_user_free(u);
    u = user("on");
    ck_assert(!acl_key_ok(u, "a", 1)); /* a new user has no keys */
    acl_user_free(u);
    ck_assert(strstr(refusal("~* ~a"), "resetkeys") != NULL);
    ck_assert(strstr(refusal("%R~a"), "not supported") != NULL);
    u = user("&news:* &chat");
    ck_assert(acl_channel_ok(u, "news:1", 6, 0) && acl_channel_ok(u, "chat", 4, 0) && !acl_channel_ok(u, "x", 1, 0));
    ck_assert(acl_channel_ok(u, "news:*", 6, 1));   /* a pattern must be one of the user's, as written */
    ck_assert(!acl_channel_ok(u, "news:1*", 7, 1));
    acl_user_free(u);
    u = user("on");
    ck_assert(!acl_channel_ok(u, "a", 1, 0)); /* no channels, as Redis 7's acl-pubsub-default */
    acl_user_free(u);
    u = user("allchannels");
    ck_assert(acl_channel_ok(u, "anything*", 9, 1));
    acl_user_free(u);
    u = user("&* resetchannels &a");
    ck_assert(!acl_channel_ok(u, "b", 1, 0) && acl_channel_ok(u, "a", 1, 0));
    acl_user_free(u);
    ck_assert(strstr(refusal("&* &a"), "resetchannels") != NULL);
}
END_TEST

START_TEST(test_describe_has_no_secrets)
{
    struct acl_user *u = user("on >hunter2 ~app:* allchannels +@read -keys");
    struct evbuffer *out = evbuffer_new();
    acl_describe(u, out);
    size_t n = evbuffer_get_length(out);
    char line[256];
    evbuffer_remove(out, line, n);
    line[n] = '\0';
    ck_assert_str_eq(line, "user app on ~app:* &* +@read -keys");
    evbuffer_free(out);
    acl_user_free(u);
    char why[256];
    ck_assert_ptr_null(acl_user_new("has space", "on", why, sizeof(why)));
}
END_TEST

static Suite *acl_suite(void)
{
    Suite *s = suite_create("acl");
    TCase *tc = tcase_create("acl");
    tcase_add_test(tc, test_glob);
    tcase_add_test(tc, test_passwords);
    tcase_add_test(tc, test_commands_in_order);
    tcase_add_test(tc, test_keys);
    tcase_add_test(tc, test_describe_has_no_secrets);
    suite_add_tcase(s, tc);
    return s;
}

UNIT_MAIN(acl_suite)
