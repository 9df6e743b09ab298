/*
 * check_slotmap: slotmap_parse, the pure part of the control plane: CLUSTER
 * NODES as 6.2 and 7.0 print it, into nodes, roles and the slot table.
 */
#include "model/slotmap.h"
#include "unit.h"

#include <string.h>

#define ID(c) c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c

static const char nodes_70[] =
    ID("a") " 127.0.0.1:7000@17000,node-a myself,master - 0 0 1 connected 0-5460 [5461->-" ID("b") "]\n"
    ID("b") " 127.0.0.1:7001@17001,node-b master - 0 1700000000000 2 connected 5461-10922\n"
    ID("c") " 127.0.0.1:7002@17002 master - 0 1700000000000 3 connected 10923-16383\n"
    ID("d") " 127.0.0.1:7003@17003 slave " ID("a") " 0 1700000000000 1 connected\n"
    ID("e") " 127.0.0.1:7004@17004 slave,fail? " ID("b") " 0 1700000000000 2 connected\n"
    ID("f") " 127.0.0.1:7005@17005 slave " ID("c") " 0 1700000000000 3 connected\n";

START_TEST(test_roles_slots_and_names)
{
    char err[200] = "";
    struct slotmap *m = slotmap_parse(nodes_70, sizeof(nodes_70) - 1, "10.0.0.1", err, sizeof(err));
    ck_assert_msg(m != NULL, "%s", err);
    ck_assert_uint_eq(m->nnodes, 6);
    ck_assert_uint_eq(m->nassigned, SLOT_COUNT);
    ck_assert_int_eq(m->owner[0], 0);
    ck_assert_int_eq(m->owner[5460], 0);
    ck_assert_int_eq(m->owner[5461], 1); /* the migrating mark is no ownership */
    ck_assert_int_eq(m->owner[16383], 2);
    ck_assert_str_eq(m->nodes[0].host, "127.0.0.1");
    ck_assert_int_eq(m->nodes[0].port, 7000);
    ck_assert_str_eq(m->nodes[0].name, "node-a");
    ck_assert_str_eq(m->nodes[2].name, "");
    ck_assert(m->nodes[0].is_master && !m->nodes[3].is_master);
    ck_assert_int_eq(m->nodes[3].master, 0);
    ck_assert_int_eq(m->nodes[4].master, 1);
    ck_assert_int_eq(m->nodes[0].master, -1);
    ck_assert(m->nodes[4].failing && !m->nodes[3].failing);
    slotmap_unref(m);
}
END_TEST

START_TEST(test_62_form_and_own_address)
{
    /* 6.2 prints no hostname; a node that does not know its own address
     * prints ":port", which stands for the address it was asked at. */
    static const char text[] = ID("a") " :7000@17000 myself,master - 0 0 1 connected 0-16383\r\n"
                               ID("b") " 127.0.0.1:7001@17001 slave " ID("a") " 0 0 1 connected\r\n";
    char err[200] = "";
    struct slotmap *m = slotmap_parse(text, sizeof(text) - 1, "10.0.0.1", err, sizeof(err));
    ck_assert_msg(m != NULL, "%s", err);
    ck_assert_uint_eq(m->nnodes, 2);
    ck_assert_str_eq(m->nodes[0].host, "10.0.0.1");
    ck_assert_int_eq(m->nodes[0].port, 7000);
    ck_assert_int_eq(m->nodes[1].master, 0);
    ck_assert_uint_eq(m->nassigned, SLOT_COUNT);
    slotmap_unref(m);
}
END_TEST

START_TEST(test_unassigned_and_skipped)
{
    /* Slots nobody owns stay unowned; a node in handshake is not a node yet;
     * single slots count as ranges of one. */
    static const char text[] = ID("a") " 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-99 200 300-301\n"
                               ID("b") " 127.0.0.1:7009@17009 handshake - 0 0 0 connected\n";
    char err[200] = "";
    struct slotmap *m = slotmap_parse(text, sizeof(text) - 1, "127.0.0.1", err, sizeof(err));
    ck_assert_msg(m != NULL, "%s", err);
    ck_assert_uint_eq(m->nnodes, 1);
    ck_assert_uint_eq(m->nassigned, 103);
    ck_assert_int_eq(m->owner[100], -1);
    ck_assert_int_eq(m->owner[200], 0);
    ck_assert_int_eq(m->owner[301], 0);
    slotmap_unref(m);
}
END_TEST

START_TEST(test_malformed)
{
    static const char *const bad[] = {
        "not a cluster nodes line\n",
        ID("a") " 127.0.0.1:7000@17000 master - 0 0 1 connected 0-16384\n",
        ID("a") " 127.0.0.1:7000@17000 master - 0 0 1 connected 9-3\n",
        ID("a") " 127.0.0.1:7000@17000 master - 0\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[200] = "";
        struct slotmap *m = slotmap_parse(bad[i], strlen(bad[i]), "127.0.0.1", err, sizeof(err));
        ck_assert_msg(m == NULL, "accepted: %s", bad[i]);
        ck_assert_msg(strstr(err, "CLUSTER NODES") != NULL, "reason: %s", err);
    }
}
END_TEST

static Suite *slotmap_suite(void)
{
    Suite *s = suite_create("topo");
    TCase *tc = tcase_create("slotmap_parse");
    tcase_add_test(tc, test_roles_slots_and_names);
    tcase_add_test(tc, test_62_form_and_own_address);
    tcase_add_test(tc, test_unassigned_and_skipped);
    tcase_add_test(tc, test_malformed);
    suite_add_tcase(s, tc);
    return s;
}

UNIT_MAIN(slotmap_suite)
