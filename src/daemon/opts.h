/*
 * opts: the command line. Parsing only; main.c decides what to do with it.
 */
#ifndef RG_OPTS_H
#define RG_OPTS_H

#include <stddef.h>
#include <stdio.h>

/* Exit codes, from sysexits(3) where one fits. */
#define EXIT_USAGE 64
#define EXIT_CONFIG 78

struct opts {
    const char *conf_path; /* -c, default CONF_DEFAULT_PATH */
    const char *pidfile;   /* --pidfile, overrides the config's; NULL = the config's */
    int test;              /* -t: check the config and exit */
    int version;           /* -V */
    int help;              /* -h */
    int daemonize;         /* -d/--daemonize; the default is the foreground */
    long reload_pid;       /* --reload PID: make respgate PID reload and wait for it; 0 = no */
};

/* Parses ARGV into O. Returns 0, or -1 with a one-line reason in ERR. */
int opts_parse(int argc, char **argv, struct opts *o, char *err, size_t errlen);

void opts_usage(FILE *out);

#endif
