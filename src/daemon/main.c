/*
 * respgate: options, start-up order and exit codes. Everything else lives in
 * the modules this calls.
 */
#include "config.h"

#include "model/conf.h"
#include "base/log.h"
#include "base/mem.h"
#include "daemon/opts.h"
#include "daemon/proc.h"
#include "daemon/daemon.h"
#include "model/tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_diag(const struct conf_diag *d)
{
    for (size_t i = 0; i < d->nwarnings; i++)
        fprintf(stderr, "warning: %s\n", d->warnings[i]);
    for (size_t i = 0; i < d->nerrors; i++)
        fprintf(stderr, "%s\n", d->errors[i]);
}

int main(int argc, char **argv)
{
    struct opts o;
    char err[256];
    if (opts_parse(argc, argv, &o, err, sizeof(err)) < 0) {
        fprintf(stderr, "respgate: %s\n", err);
        opts_usage(stderr);
        return EXIT_USAGE;
    }
    if (o.help) {
        opts_usage(stdout);
        return 0;
    }
    if (o.version) {
        printf("respgate %s\n", PACKAGE_VERSION);
        return 0;
    }
    if (o.reload_pid) {
        int rc = proc_reload_wait((int)o.reload_pid, 30000);
        if (rc == 1)
            fprintf(stderr, "respgate: the reload was refused; the running configuration stays (see the log)\n");
        else if (rc < 0)
            fprintf(stderr, "respgate: reload of process %ld: %s\n", o.reload_pid, strerror(-rc));
        return rc == 0 ? 0 : 1;
    }

    struct conf_diag d = {0};
    struct conf *conf = conf_load(o.conf_path, &d);
    print_diag(&d);
    if (conf == NULL) {
        if (o.test)
            fprintf(stderr, "configuration has errors\n");
        conf_diag_free(&d);
        return EXIT_CONFIG;
    }
    if (o.test) {
        char tls_err[512];
        struct tls_ctxs *tls = tls_ctxs_new(conf, tls_err, sizeof(tls_err));
        conf_unref(conf);
        conf_diag_free(&d);
        if (tls == NULL) {
            fprintf(stderr, "%s: %s\nconfiguration has errors\n", o.conf_path, tls_err);
            return EXIT_CONFIG;
        }
        tls_ctxs_unref(tls);
        printf("configuration ok\n");
        return 0;
    }
    log_set_level((enum log_level)conf->log_level);
    int rc = log_open(conf->log_file);
    if (rc < 0) {
        fprintf(stderr, "%s: log.file: cannot open %s: %s\n", o.conf_path, conf->log_file, strerror(-rc));
        conf_diag_free(&d);
        conf_unref(conf);
        return EXIT_CONFIG;
    }
    if (conf->log_file)
        for (size_t i = 0; i < d.nwarnings; i++)
            log_warning("%s", d.warnings[i]);
    conf_diag_free(&d);

    /* Every client is a descriptor; so is every backend connection (per
     * worker per node) and a few more of our own. */
    unsigned long want = (unsigned long)conf->max_clients + 256, got = proc_raise_nofile(want);
    if (got < want)
        log_warning("client.max_clients is %llu but only %lu file descriptors are allowed (raise LimitNOFILE or "
                    "ulimit -n to %lu)",
                    (unsigned long long)conf->max_clients, got, want);

    /* Fork before any thread or event base exists; the parent waits for the
     * child's verdict and exits with it. */
    if (o.daemonize && (rc = proc_daemonize()) < 0) {
        log_error("cannot daemonize: %s", strerror(-rc));
        conf_unref(conf);
        return 1;
    }
    /* A copy: the config it came from is replaced on reload. */
    char *pidfile = o.pidfile ? strdup(o.pidfile) : conf->pidfile ? strdup(conf->pidfile) : NULL;

    struct daemon dm;
    if (daemon_init(&dm, conf, o.conf_path) < 0) {
        daemon_deinit(&dm);
        free(pidfile);
        return 1;
    }
    if (pidfile && (rc = proc_pidfile_write(pidfile)) < 0) {
        log_error("cannot write the pid file %s: %s", pidfile, strerror(-rc));
        daemon_deinit(&dm);
        free(pidfile);
        return 1;
    }
    rc = daemon_run(&dm);
    if (pidfile)
        proc_pidfile_remove(pidfile);
    free(pidfile);
    daemon_deinit(&dm);
    log_close();
    return rc;
}
