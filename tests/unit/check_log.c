/* Unit tests for log: levels, file output, reopen, escaping, truncation. */
#include "base/log.h"
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64];
static char path[128];

static void setup(void)
{
    strcpy(dir, "/tmp/rg-log-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/respgate.log", dir);
    ck_assert_int_eq(log_open(path), 0);
    log_set_level(LOGL_NOTICE);
}

static void teardown(void)
{
    log_close();
    char moved[160];
    snprintf(moved, sizeof(moved), "%s.1", path);
    unlink(moved);
    unlink(path);
    rmdir(dir);
}

/* Returns the file's text (static buffer). */
static const char *slurp(const char *p)
{
    static char buf[8192];
    FILE *f = fopen(p, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

START_TEST(test_level_names)
{
    ck_assert_int_eq(log_level_parse("error"), LOGL_ERROR);
    ck_assert_int_eq(log_level_parse("warning"), LOGL_WARNING);
    ck_assert_int_eq(log_level_parse("notice"), LOGL_NOTICE);
    ck_assert_int_eq(log_level_parse("info"), LOGL_INFO);
    ck_assert_int_eq(log_level_parse("debug"), LOGL_DEBUG);
    ck_assert_int_eq(log_level_parse("verbose"), -1);
    ck_assert_int_eq(log_level_parse(""), -1);
    ck_assert_str_eq(log_level_name(LOGL_WARNING), "warning");
}
END_TEST

START_TEST(test_line_format_and_filter)
{
    log_notice("hello %d", 42);
    log_info("not shown");
    log_debug("not shown either");
    log_warning("careful");
    const char *s = slurp(path);
    ck_assert_int_eq(count_lines(s), 2);
    /* "YYYY-MM-DD HH:MM:SS.mmmZ [pid] notice: hello 42" */
    char want[64];
    snprintf(want, sizeof(want), "Z [%d] notice: hello 42\n", (int)getpid());
    ck_assert_ptr_nonnull(strstr(s, want));
    ck_assert_int_eq(s[4], '-');
    ck_assert_int_eq(s[10], ' ');
    ck_assert_int_eq(s[19], '.');
    ck_assert_ptr_nonnull(strstr(s, "warning: careful\n"));
    ck_assert_ptr_null(strstr(s, "not shown"));

    log_set_level(LOGL_DEBUG);
    ck_assert(log_enabled(LOGL_DEBUG));
    log_debug("now shown");
    ck_assert_ptr_nonnull(strstr(slurp(path), "debug: now shown\n"));
}
END_TEST

START_TEST(test_escapes_control_bytes)
{
    log_notice("client name %s", "evil\nnotice: forged\x01");
    const char *s = slurp(path);
    ck_assert_int_eq(count_lines(s), 1);
    ck_assert_ptr_nonnull(strstr(s, "client name evil\\x0anotice: forged\\x01\n"));
}
END_TEST

START_TEST(test_truncates_long_lines)
{
    char big[4000];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    log_notice("%s", big);
    const char *s = slurp(path);
    ck_assert_int_eq(count_lines(s), 1);
    ck_assert_uint_le(strlen(s), LOG_LINE_MAX);
    ck_assert_ptr_nonnull(strstr(s, "a...\n"));
}
END_TEST

START_TEST(test_reopen_after_rotation)
{
    char moved[160];
    snprintf(moved, sizeof(moved), "%s.1", path);
    log_notice("before");
    ck_assert_int_eq(rename(path, moved), 0);
    log_notice("still to the moved file");
    ck_assert_int_eq(log_reopen(), 0);
    log_notice("after");
    const char *old = slurp(moved);
    ck_assert_ptr_nonnull(strstr(old, "before"));
    ck_assert_ptr_nonnull(strstr(old, "still to the moved file"));
    ck_assert_ptr_null(strstr(old, "after"));
    ck_assert_ptr_nonnull(strstr(slurp(path), "notice: after\n"));
}
END_TEST

START_TEST(test_open_failure_keeps_destination)
{
    ck_assert_int_lt(log_open("/nonexistent-dir/x.log"), 0);
    log_notice("kept");
    ck_assert_ptr_nonnull(strstr(slurp(path), "kept"));
}
END_TEST

static Suite *log_suite(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("log");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_level_names);
    tcase_add_test(tc, test_line_format_and_filter);
    tcase_add_test(tc, test_escapes_control_bytes);
    tcase_add_test(tc, test_truncates_long_lines);
    tcase_add_test(tc, test_reopen_after_rotation);
    tcase_add_test(tc, test_open_failure_keeps_destination);
    suite_add_tcase(s, tc);
    return s;
}

UNIT_MAIN(log_suite)
