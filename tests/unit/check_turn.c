/*
 * check_turn: a worker's count of the clients read in one loop turn, which
 * decides whether node and client writes wait for the next turn
 * (worker_busy_turn, worker_hold_flush): two clients read in a turn make
 * it busy, one client read twice does not, the count starts afresh in the
 * next turn, and a large write or one that waited already never waits;
 * each turn has one time, and the loop stops when told. Turns run on a real
 * event_base, one worker_run_turn each.
 */
#include "unit.h"
#include "loop/worker.h"

#include <event2/event.h>
#include <unistd.h>

struct turns {
    struct worker w;
    struct event *first, *second, *flush;
    uint64_t client_a, client_b; /* each client's record of its last counted turn */
    int busy_a, busy_a_again, busy_ab, holds_large, holds_small, flush_pending, holds_from_timer;
    int next_busy, next_busy_b, next_busy_ba;
    int ran;
    uint64_t us_first, us_first_again, us_second;
};

static void on_nothing(evutil_socket_t fd, short what, void *arg)
{
}

static void on_second(evutil_socket_t fd, short what, void *arg)
{
    struct turns *t = arg;
    t->us_second = worker_turn_us(&t->w);
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
    t->us_first = worker_turn_us(&t->w);
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
    usleep(50); /* the next turn's time is later than this one's */
    t->us_first_again = worker_turn_us(&t->w);
    static const struct timeval zero = {0, 0};
    event_add(t->second, &zero);
}

START_TEST(test_two_clients_make_a_busy_turn_and_the_next_starts_afresh)
{
    struct turns t = {0};
    t.w.base = event_base_new();
    ck_assert_ptr_nonnull(t.w.base);
    t.first = event_new(t.w.base, -1, 0, on_first, &t);
    t.second = event_new(t.w.base, -1, 0, on_second, &t);
    t.flush = event_new(t.w.base, -1, 0, on_nothing, &t);
    static const struct timeval soon = {0, 1000};
    event_add(t.first, &soon);
    ck_assert_int_eq(worker_run_turn(&t.w), 1);
    ck_assert_int_eq(t.ran, 1); /* one turn, one call */
    ck_assert_int_eq(worker_run_turn(&t.w), 1);
    ck_assert_int_eq(t.ran, 2);
    ck_assert_int_eq(event_pending(t.flush, EV_TIMEOUT, NULL), 0); /* the held flush ran in that turn */
    ck_assert_uint_ne(t.us_first, 0);
    ck_assert_uint_eq(t.us_first_again, t.us_first);
    ck_assert_uint_gt(t.us_second, t.us_first);
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

static void on_break(evutil_socket_t fd, short what, void *arg)
{
    event_base_loopbreak(arg);
}

static void on_exit_soon(evutil_socket_t fd, short what, void *arg)
{
    event_base_loopexit(arg, NULL);
}

START_TEST(test_a_turn_tells_when_the_loop_is_told_to_stop)
{
    struct worker w = {0};
    w.base = event_base_new();
    ck_assert_ptr_nonnull(w.base);
    static const struct timeval soon = {0, 1000};
    ck_assert_int_eq(event_base_once(w.base, -1, EV_TIMEOUT, on_nothing, NULL, &soon), 0);
    ck_assert_int_eq(worker_run_turn(&w), 1);
    ck_assert_int_eq(event_base_once(w.base, -1, EV_TIMEOUT, on_break, w.base, &soon), 0);
    ck_assert_int_eq(worker_run_turn(&w), 0);
    ck_assert_int_eq(event_base_once(w.base, -1, EV_TIMEOUT, on_exit_soon, w.base, &soon), 0);
    ck_assert_int_eq(worker_run_turn(&w), 0);
    ck_assert_uint_eq(w.turn_no, 3);
    event_base_free(w.base);
}
END_TEST

static Suite *turn_suite(void)
{
    Suite *s = suite_create("turn");
    TCase *tc = tcase_create("turn");
    tcase_add_test(tc, test_two_clients_make_a_busy_turn_and_the_next_starts_afresh);
    tcase_add_test(tc, test_a_turn_tells_when_the_loop_is_told_to_stop);
    suite_add_tcase(s, tc);
    return s;
}

UNIT_MAIN(turn_suite)
