/*
 * log: one line per event, to stderr or a file, filtered by level.
 *
 * Owns the process-wide log file descriptor and level. Safe to call from any
 * thread: each line goes out in a single write(2) on an O_APPEND descriptor,
 * and a reopen swaps the file in with dup2(), so no line is lost or torn.
 * Callers never pass secrets: passwords are not logged anywhere, by rule.
 */
#ifndef RG_LOG_H
#define RG_LOG_H

#include <stdarg.h>

enum log_level {
    LOGL_ERROR = 0,
    LOGL_WARNING,
    LOGL_NOTICE,
    LOGL_INFO,
    LOGL_DEBUG,
};

/* The level names, indexed by level, NULL-terminated. */
extern const char *const log_level_names[];

/* Longest line written, newline included; longer messages are cut with "...". */
#define LOG_LINE_MAX 1024

/* Parses "error", "warning", "notice", "info" or "debug". Returns the level,
 * or -1 for any other word. */
int log_level_parse(const char *name);
const char *log_level_name(enum log_level level);

/* Sends the log to PATH (appending, created 0640), or to stderr for NULL or "".
 * Returns 0, or -errno with the previous destination kept. */
int log_open(const char *path);
/* Reopens the current file under its name (after logrotate moved it). Returns
 * 0, or -errno with the old descriptor kept. A no-op for stderr. */
int log_reopen(void);
/* Back to stderr, closing any file. */
void log_close(void);

void log_set_level(enum log_level level);
int log_enabled(enum log_level level);

void log_write(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void log_vwrite(enum log_level level, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

#define log_error(...)   log_write(LOGL_ERROR, __VA_ARGS__)
#define log_warning(...) log_write(LOGL_WARNING, __VA_ARGS__)
#define log_notice(...)  do { if (log_enabled(LOGL_NOTICE)) log_write(LOGL_NOTICE, __VA_ARGS__); } while (0)
#define log_info(...)    do { if (log_enabled(LOGL_INFO)) log_write(LOGL_INFO, __VA_ARGS__); } while (0)
#define log_debug(...)   do { if (log_enabled(LOGL_DEBUG)) log_write(LOGL_DEBUG, __VA_ARGS__); } while (0)

#endif
