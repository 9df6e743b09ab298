/*
 * clock: respgate's one clock. Durations, deadlines and ages are read from
 * CLOCK_MONOTONIC (clock_us), which no change of the system's time moves;
 * a worker reads it once per loop turn (worker_turn_us). The wall clock
 * (clock_wall_us) is only for what is shown or sent as a date: log lines
 * and absolute TTLs.
 */
#ifndef RG_CLOCK_H
#define RG_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Now, in microseconds of CLOCK_MONOTONIC. */
static inline uint64_t clock_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static inline uint64_t clock_ms(void)
{
    return clock_us() / 1000;
}

/* The date now, in microseconds since the epoch. */
static inline uint64_t clock_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

#endif
