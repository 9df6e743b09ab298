/* Unit tests for compat: version numbers, the texts each version words
 * differently, and the list of what respgate itself sends to nodes. */
#include "base/compat.h"
#include "unit.h"

#include <string.h>

START_TEST(test_parse)
{
    ck_assert_uint_eq(compat_parse("6.2.6", 5), 60206);
    ck_assert_uint_eq(compat_parse("7.0.15", 6), 70015);
    ck_assert_uint_eq(compat_parse("7.2.4\r\n", 7), 70204);
    ck_assert_uint_eq(compat_parse("8.0", 3), 80000);
    ck_assert_uint_eq(compat_parse("255.255.255", 11), 0u + COMPAT_V(255, 255, 255));
    ck_assert_uint_eq(compat_parse("", 0), 0);
    ck_assert_uint_eq(compat_parse("x7.0", 4), 0);
    ck_assert_uint_eq(compat_parse("7.0.1", 3), 70000); /* only LEN bytes are read */
}
END_TEST

START_TEST(test_has)
{
    ck_assert(compat_has(0, COMPAT_V7_0)); /* unknown counts as the newest */
    ck_assert(compat_has(70015, COMPAT_V7_0));
    ck_assert(!compat_has(60206, COMPAT_V7_0));
    ck_assert(compat_has(60206, COMPAT_V6_0));
}
END_TEST

START_TEST(test_texts_differ_by_version)
{
    const struct compat_texts *six = compat_texts(60206), *seven = compat_texts(70015);
    ck_assert_str_eq(six->quote, "`");
    ck_assert_str_eq(seven->quote, "'");
    ck_assert(!six->subcommand_table && seven->subcommand_table);
    ck_assert_ptr_eq(compat_texts(0), seven);
    ck_assert(strstr(seven->subscribed, "(P|S)") && !strstr(six->subscribed, "(P|S)"));
}
END_TEST

START_TEST(test_node_commands_are_known_to_the_oldest_version)
{
    /* INFO's section list is the one form gated by version (info.c): none
     * of these may need more than the oldest version respgate supports. */
    ck_assert_uint_gt(compat_node_cmds_len, 5);
    for (size_t i = 0; i < compat_node_cmds_len; i++)
        ck_assert_msg(compat_node_cmds[i].since <= COMPAT_OLDEST, "%s needs %u", compat_node_cmds[i].form,
                      compat_node_cmds[i].since);
}
END_TEST

static Suite *compat_suite(void)
{
    Suite *s = suite_create("compat");
    TCase *tc = tcase_create("compat");
    tcase_add_test(tc, test_parse);
    tcase_add_test(tc, test_has);
    tcase_add_test(tc, test_texts_differ_by_version);
    tcase_add_test(tc, test_node_commands_are_known_to_the_oldest_version);
    suite_add_tcase(s, tc);
    return s;
}

UNIT_MAIN(compat_suite)
