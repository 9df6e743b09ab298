/* Unit tests for opts: the command line. */
#include "model/conf.h"
#include "daemon/opts.h"
#include "unit.h"

#include <string.h>

static int parse(struct opts *o, char *err, const char *const *args)
{
    char *argv[16];
    int argc = 0;
    argv[argc++] = (char *)"respgate";
    for (; args[argc - 1]; argc++)
        argv[argc] = (char *)args[argc - 1];
    argv[argc] = NULL;
    return opts_parse(argc, argv, o, err, 256);
}

START_TEST(test_defaults)
{
    struct opts o;
    char err[256];
    const char *args[] = {NULL};
    ck_assert_int_eq(parse(&o, err, args), 0);
    ck_assert_str_eq(o.conf_path, CONF_DEFAULT_PATH);
    ck_assert_str_eq(o.conf_path, SYSCONFDIR "/respgate/respgate.yml");
    ck_assert_int_eq(o.test, 0);
    ck_assert_int_eq(o.daemonize, 0);
    ck_assert_ptr_null(o.pidfile);
}
END_TEST

START_TEST(test_short_and_long)
{
    struct opts o;
    char err[256];
    const char *a1[] = {"-c", "/x.yml", "-t", "-d", "-p", "/run/r.pid", NULL};
    ck_assert_int_eq(parse(&o, err, a1), 0);
    ck_assert_str_eq(o.conf_path, "/x.yml");
    ck_assert_int_eq(o.test, 1);
    ck_assert_int_eq(o.daemonize, 1);
    ck_assert_str_eq(o.pidfile, "/run/r.pid");

    const char *a2[] = {"--config=/y.yml", "--daemonize", "--foreground", "--pidfile", "/p", "-V", NULL};
    ck_assert_int_eq(parse(&o, err, a2), 0);
    ck_assert_str_eq(o.conf_path, "/y.yml");
    ck_assert_int_eq(o.daemonize, 0); /* the last word wins */
    ck_assert_int_eq(o.version, 1);
    ck_assert_str_eq(o.pidfile, "/p");

    const char *a3[] = {"-h", NULL};
    ck_assert_int_eq(parse(&o, err, a3), 0);
    ck_assert_int_eq(o.help, 1);
}
END_TEST

START_TEST(test_reload)
{
    struct opts o;
    char err[128];
    char *a[] = {"respgate", "--reload", "4242", NULL};
    ck_assert_int_eq(opts_parse(3, a, &o, err, sizeof(err)), 0);
    ck_assert_int_eq(o.reload_pid, 4242);
    char *b[] = {"respgate", "--reload", "12x", NULL};
    ck_assert_int_eq(opts_parse(3, b, &o, err, sizeof(err)), -1);
    ck_assert_str_eq(err, "--reload needs a process id, not 12x");
    char *c[] = {"respgate", "--reload", "0", NULL};
    ck_assert_int_eq(opts_parse(3, c, &o, err, sizeof(err)), -1);
    char *e[] = {"respgate", "--reload", "4294967295", NULL}; /* would wrap to -1: every process */
    ck_assert_int_eq(opts_parse(3, e, &o, err, sizeof(err)), -1);
    char *d[] = {"respgate", "--reload", NULL};
    ck_assert_int_eq(opts_parse(2, d, &o, err, sizeof(err)), -1);
}
END_TEST

START_TEST(test_errors)
{
    struct opts o;
    char err[256];
    const char *a1[] = {"-x", NULL};
    ck_assert_int_eq(parse(&o, err, a1), -1);
    ck_assert_str_eq(err, "unknown option -x");

    const char *a2[] = {"--bogus", NULL};
    ck_assert_int_eq(parse(&o, err, a2), -1);
    ck_assert_str_eq(err, "unknown option --bogus");

    const char *a3[] = {"-c", NULL};
    ck_assert_int_eq(parse(&o, err, a3), -1);
    ck_assert_str_eq(err, "option -c needs an argument");

    const char *a4[] = {"--config", NULL};
    ck_assert_int_eq(parse(&o, err, a4), -1);
    ck_assert_str_eq(err, "option --config needs an argument");

    const char *a5[] = {"-t", "extra", NULL};
    ck_assert_int_eq(parse(&o, err, a5), -1);
    ck_assert_str_eq(err, "unexpected argument extra");
}
END_TEST

static Suite *opts_suite(void)
{
    Suite *s = suite_create("opts");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_short_and_long);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_reload);
    suite_add_tcase(s, tc);
    return s;
}

UNIT_MAIN(opts_suite)
