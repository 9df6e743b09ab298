/*
 * log: formatting and delivery of log lines. See log.h for the contract.
 *
 * Format: "2026-11-25 11:30:00.123 [pid] level: message". Bytes that are not
 * printable ASCII are written as \xNN so that a client-supplied name or key
 * can never forge a second log line.
 */
#include "base/log.h"
#include "base/clock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

const char *const log_level_names[] = {"error", "warning", "notice", "info", "debug", NULL};

static atomic_int cur_level = LOGL_NOTICE;
static atomic_int log_fd = STDERR_FILENO; /* where lines go; set once, then only dup2'd over */
static char *log_path;             /* NULL while logging to stderr */

int log_level_parse(const char *name)
{
    for (size_t i = 0; log_level_names[i] != NULL; i++)
        if (strcmp(name, log_level_names[i]) == 0)
            return (int)i;
    return -1;
}

const char *log_level_name(enum log_level level)
{
    return log_level_names[level];
}

void log_set_level(enum log_level level)
{
    atomic_store(&cur_level, (int)level);
}

int log_enabled(enum log_level level)
{
    return (int)level <= atomic_load_explicit(&cur_level, memory_order_relaxed);
}

static int open_append(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    return fd < 0 ? -errno : fd;
}

int log_open(const char *path)
{
    if (path == NULL || path[0] == '\0') {
        log_close();
        return 0;
    }
    int fd = open_append(path);
    if (fd < 0)
        return fd;
    char *copy = strdup(path);
    if (copy == NULL) {
        close(fd);
        return -ENOMEM;
    }
    if (log_fd == STDERR_FILENO) {
        log_fd = fd; /* the first file: this descriptor number stays from now on */
    } else {
        dup2(fd, log_fd);
        close(fd);
    }
    free(log_path);
    log_path = copy;
    return 0;
}

int log_reopen(void)
{
    if (log_path == NULL)
        return 0;
    int fd = open_append(log_path);
    if (fd < 0)
        return fd;
    /* dup2 replaces the descriptor atomically: a concurrent writer sees the
     * old file or the new one, never a closed descriptor. */
    dup2(fd, log_fd);
    close(fd);
    return 0;
}

void log_close(void)
{
    /* Other threads may be writing to log_fd: it is never closed or
     * changed once it is a file's, only pointed back at stderr. */
    if (log_fd != STDERR_FILENO)
        dup2(STDERR_FILENO, log_fd);
    free(log_path);
    log_path = NULL;
}

/* Copies SRC into DST (capacity CAP), escaping what is not printable. Returns
 * the bytes written; stops early when full, leaving *USED short of LEN. */
static size_t escape_into(char *dst, size_t cap, const char *src, size_t len, size_t *used)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c >= 0x20 && c < 0x7f) {
            if (o + 1 > cap)
                break;
            dst[o++] = (char)c;
        } else {
            if (o + 4 > cap)
                break;
            dst[o++] = '\\';
            dst[o++] = 'x';
            dst[o++] = hex[c >> 4];
            dst[o++] = hex[c & 15];
        }
        *used = i + 1;
    }
    return o;
}

void log_vwrite(enum log_level level, const char *fmt, va_list ap)
{
    if (!log_enabled(level))
        return;
    char msg[LOG_LINE_MAX];
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    if (n < 0)
        return;
    size_t mlen = (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1;

    uint64_t now_us = clock_wall_us();
    time_t sec = (time_t)(now_us / 1000000);
    struct tm tm;
    gmtime_r(&sec, &tm);

    char line[LOG_LINE_MAX];
    int h = snprintf(line, sizeof(line), "%04d-%02d-%02d %02d:%02d:%02d.%03dZ [%d] %s: ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (int)(now_us / 1000 % 1000), (int)getpid(), log_level_names[level]);
    size_t room = sizeof(line) - (size_t)h - 4; /* keep space for "...\n" */
    size_t used = 0;
    size_t o = (size_t)h + escape_into(line + h, room, msg, mlen, &used);
    if (used < mlen || (size_t)n >= sizeof(msg)) {
        memcpy(line + o, "...", 3);
        o += 3;
    }
    line[o++] = '\n';
    ssize_t w = write(log_fd, line, o);
    (void)w; /* nowhere to report a failing log */
}

void log_write(enum log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(level, fmt, ap);
    va_end(ap);
}
