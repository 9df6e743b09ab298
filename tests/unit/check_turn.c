/*
 * check_turn: a worker's count of the clients read in one loop turn, which
 * decides whether node and client writes wait for the next turn
 * (worker_busy_turn): two reads in a turn make it busy, and the count
 * starts afresh in the next turn. Turns are run on a real event_base.
 */
#include "unit.h"
#include "worker.h"

#include <event2/event.h>
#include <unistd.h>

struct turns {
    struct worker w;
    struct event *first, *second;
    int busy_after_one, busy_after_two, busy_next_turn, busy_next_after_one, busy_next_after_two;
    int ran;
};

static void on_second(evutil_socket_t fd, short what, void *arg)
{
    struct turns *t = arg;
    t->busy_next_turn = worker_busy_turn(&t->w);
    worker_note_read(&t->w);
    t->busy_next_after_one = worker_busy_turn(&t->w);
    worker_note_read(&t->w);
    t->busy_next_after_two = worker_busy_turn(&t->w);
    t->ran++;
}

static void on_first(evutil_socket_t fd, short what, void *arg)
{
    struct turns *t = arg;
    worker_note_read(&t->w);
    t->busy_after_one = worker_busy_turn(&t->w);
    worker_note_read(&t->w);
    t->busy_after_two = worker_busy_turn(&t->w);
    t->ran++;
    /* The next turn's clock is read after its poll: a few microseconds
     * from now, so it cannot match this turn's. */
    usleep(50);
    static const struct timeval now = {0, 0};
    event_add(t->second, &now);
}

START_TEST(test_a_turn_that_read_two_clients_is_busy_and_the_next_starts_afresh)
{
    struct event_config *ec = event_config_new();
    ck_assert_ptr_nonnull(ec);
    ck_assert_int_eq(event_config_set_flag(ec, EVENT_BASE_FLAG_PRECISE_TIMER), 0);
    struct turns t = {0};
    t.w.base = event_base_new_with_config(ec);
    event_config_free(ec);
    ck_assert_ptr_nonnull(t.w.base);
    t.first = event_new(t.w.base, -1, 0, on_first, &t);
    t.second = event_new(t.w.base, -1, 0, on_second, &t);
    static const struct timeval soon = {0, 1000};
    event_add(t.first, &soon);
    ck_assert_int_ne(event_base_dispatch(t.w.base), -1); /* 1: it ran out of events */
    ck_assert_int_eq(t.ran, 2);
    ck_assert_int_eq(t.busy_after_one, 0);
    ck_assert_int_eq(t.busy_after_two, 1);
    ck_assert_int_eq(t.busy_next_turn, 0);
    ck_assert_int_eq(t.busy_next_after_one, 0);
    ck_assert_int_eq(t.busy_next_after_two, 1);
    event_free(t.first);
    event_free(t.second);
    event_base_free(t.w.base);
}
END_TEST

static Suite *turn_suite(void)
{
    Suite *s = suite_create("turn");
    TCase *tc = tcase_create("turn");
    tcase_add_test(tc, test_a_turn_that_read_two_clients_is_busy_and_the_next_starts_afresh);
    suite_add_tcase(s, tc);
    return s;
}

UNIT_MAIN(turn_suite)
