/*
 * opts: the command line, see opts.h.
 */
#include "daemon/opts.h"

#include "model/conf.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

static const struct option long_opts[] = {
    {"config", required_argument, NULL, 'c'},
    {"test", no_argument, NULL, 't'},
    {"version", no_argument, NULL, 'V'},
    {"help", no_argument, NULL, 'h'},
    {"daemonize", no_argument, NULL, 'd'},
    {"foreground", no_argument, NULL, 'f'},
    {"pidfile", required_argument, NULL, 'p'},
    {"reload", required_argument, NULL, 'r'},
    {NULL, 0, NULL, 0},
};

int opts_parse(int argc, char **argv, struct opts *o, char *err, size_t errlen)
{
    memset(o, 0, sizeof(*o));
    o->conf_path = CONF_DEFAULT_PATH;
    optind = 0; /* GNU: a full reset, so the parser can run more than once */
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":c:tVhdfp:", long_opts, NULL)) != -1) {
        switch (c) {
        case 'c': o->conf_path = optarg; break;
        case 't': o->test = 1; break;
        case 'V': o->version = 1; break;
        case 'h': o->help = 1; break;
        case 'd': o->daemonize = 1; break;
        case 'f': o->daemonize = 0; break;
        case 'p': o->pidfile = optarg; break;
        case 'r': {
            char *end;
            errno = 0;
            o->reload_pid = strtol(optarg, &end, 10);
            /* Never 0 or negative, nor wrapped to them: kill(2) would signal groups. */
            if (*end || end == optarg || errno == ERANGE || o->reload_pid <= 0 || o->reload_pid > INT_MAX) {
                snprintf(err, errlen, "--reload needs a process id, not %s", optarg);
                return -1;
            }
            break;
        }
        case ':':
            snprintf(err, errlen, "option %s needs an argument", argv[optind - 1]);
            return -1;
        default:
            if (optopt)
                snprintf(err, errlen, "unknown option -%c", optopt);
            else
                snprintf(err, errlen, "unknown option %s", argv[optind - 1]);
            return -1;
        }
    }
    if (optind < argc) {
        snprintf(err, errlen, "unexpected argument %s", argv[optind]);
        return -1;
    }
    return 0;
}

void opts_usage(FILE *out)
{
    fprintf(out,
            "Usage: respgate [-c FILE] [-t] [-d|--foreground] [--pidfile FILE]\n"
            "       respgate --reload PID\n"
            "       respgate -V | -h\n"
            "\n"
            "A RESP proxy that lets single-instance Redis clients use a Redis Cluster.\n"
            "\n"
            "  -c, --config FILE   configuration file (default " CONF_DEFAULT_PATH ")\n"
            "  -t, --test          check the configuration, print the result, exit 0 or 78\n"
            "  -d, --daemonize     run in the background (systemd wants the foreground)\n"
            "  -f, --foreground    stay in the foreground (the default)\n"
            "  -p, --pidfile FILE  write the process id to FILE (overrides the config)\n"
            "      --reload PID    make respgate PID reload its file and wait until it has\n"
            "                      (systemd's ExecReload); exit 0, or 1 if it was refused\n"
            "  -V, --version       print the version and exit\n"
            "  -h, --help          print this help and exit\n");
}
