/*
 * check_turn: a worker's count of the clients read in one loop turn, which
 * decides whether node and client writes wait for the next turn
 * (worker_busy_turn, worker_hold_flush): two clients read in a turn make
 * it busy, one client read twice does not, the count starts afresh in the
 * next turn, and a large write or one that waited already never waits. Turns run on a real event_base.
 */
#include "unit.h"
#include "worker.h"

#include <event2/event.h>
#include <unistd.h>

struct turns {
    struct worker w;
    struct event *first, *second, *flush;
    uint64_t client_a, client_b; /* each client's record of its last counted turn */
    int busy_a, busy_a_again, busy_ab, holds_large, holds_small, flush_pending, holds_from_timer;
    int next_busy, next_busy_b, next_busy_ba;
    int ran;
};

static void on_nothing(evutil_socket_t fd, short what, void *arg)
{
}

static void on_second(evutil_socket_t fd, short what, void *arg)
{
    struct turns *t = arg;
    t->next_busy = worker_busy_turn(&t->w);
    worker_note_read(&t->w, &t->client_b);
    t->next_busy_b = worker_busy_turn(&t->w);
    worker_note_read(&t->w, &t->client_a);
    t->next_busy_ba = worker_busy_turn(&t->w);
    t->ran++;
}

static void on_first(evutil_socket_t fd, short what, void *arg)
{
    struct turns *t = arg;
    worker_note_read(&t->w, &t->client_a);
    t->busy_a = worker_busy_turn(&t->w);
    worker_note_read(&t->w, &t->client_a); /* a TLS client read again in the same turn */
    t->busy_a_again = worker_busy_turn(&t->w);
    worker_note_read(&t->w, &t->client_b);
    t->busy_ab = worker_busy_turn(&t->w);
    t->holds_large = worker_hold_flush(&t->w, t->flush, EV_READ, WORKER_HOLD_MAX);
    t->holds_from_timer = worker_hold_flush(&t->w, t->flush, EV_TIMEOUT, 100); /* it waited once already */
    t->holds_small = worker_hold_flush(&t->w, t->flush, EV_READ, 100);
    t->flush_pending = event_pending(t->flush, EV_TIMEOUT, NULL) != 0;
    t->ran++;
    /* The next turn's clock is read after its poll: a few microseconds
     * from now, so it cannot match this turn's. */
    usleep(50);
    static const struct timeval zero = {0, 0};
    event_add(t->second, &zero);
}

START_TEST(test_two_clients_make_a_busy_turn_and_the_next_starts_afresh)
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
    t.flush = event_new(t.w.base, -1, 0, on_nothing, &t);
    static const struct timeval soon = {0, 1000};
    event_add(t.first, &soon);
    ck_assert_int_ne(event_base_dispatch(t.w.base), -1); /* 1: it ran out of events */
    ck_assert_int_eq(t.ran, 2);
    ck_assert_int_eq(t.busy_a, 0);
    ck_assert_int_eq(t.busy_a_again, 0);
    ck_assert_int_eq(t.busy_ab, 1);
    ck_assert_int_eq(t.holds_large, 0);
    ck_assert_int_eq(t.holds_from_timer, 0);
    ck_assert_int_eq(t.holds_small, 1);
    ck_assert_int_eq(t.flush_pending, 1);
    ck_assert_int_eq(t.next_busy, 0);
    ck_assert_int_eq(t.next_busy_b, 0);
    ck_assert_int_eq(t.next_busy_ba, 1);
    event_free(t.first);
    event_free(t.second);
    event_free(t.flush);
    event_base_free(t.w.base);
}
END_TEST

static Suite *turn_suite(void)
{
    Suite *s = suite_create("turn");
    TCase *tc = tcase_create("turn");
    tcase_add_test(tc, test_two_clients_make_a_busy_turn_and_the_next_starts_afresh);
    suite_add_tcase(s, tc);
    return s;
}

UNIT_MAIN(turn_suite)
