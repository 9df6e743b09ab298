/* Unit tests for conf: defaults, syntax, and every class of error with its
 * exact message. */
#include "model/conf.h"
#include "base/log.h"
#include "unit.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEEDS "cluster: {seeds: [10.0.0.1:6379]}\n"

static struct conf *parse(const char *text, struct conf_diag *d)
{
    memset(d, 0, sizeof(*d));
    return conf_parse("t.yml", text, strlen(text), d);
}

/* Parses TEXT, expects it refused with exactly the errors in WANT (NULL-terminated). */
static void expect_errors(const char *text, const char *const *want)
{
    struct conf_diag d;
    struct conf *c = parse(text, &d);
    ck_assert_ptr_null(c);
    size_t n = 0;
    while (want[n])
        n++;
    for (size_t i = 0; i < d.nerrors && i < n; i++)
        ck_assert_str_eq(d.errors[i], want[i]);
    ck_assert_uint_eq(d.nerrors, n);
    conf_diag_free(&d);
}

static void expect_error(const char *text, const char *want)
{
    const char *w[] = {want, NULL};
    expect_errors(text, w);
}

START_TEST(test_defaults)
{
    struct conf_diag d;
    struct conf *c = parse(SEEDS, &d);
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(d.nerrors, 0);
    ck_assert_uint_eq(c->listen.n, 1);
    ck_assert_str_eq(c->listen.v[0].host, "127.0.0.1");
    ck_assert_int_eq(c->listen.v[0].port, 6380);
    ck_assert_uint_eq(c->workers, 0);
    ck_assert_uint_eq(c->seeds.n, 1);
    ck_assert_str_eq(c->seeds.v[0].host, "10.0.0.1");
    ck_assert_ptr_null(c->cluster_password);
    ck_assert_ptr_null(c->client_password);
    ck_assert_uint_eq(c->refresh_interval_ms, 1000);
    ck_assert_uint_eq(c->failover_wait_ms, 0);
    ck_assert_int_eq(c->read_policy, READ_MASTER);
    ck_assert_uint_eq(c->max_clients, 10000);
    ck_assert_uint_eq(c->idle_timeout_ms, 0);
    ck_assert_uint_eq(c->output_buffer_limit, 64ull << 20);
    ck_assert_uint_eq(c->connect_timeout_ms, 1000);
    ck_assert_uint_eq(c->backend_timeout_ms, 2000);
    ck_assert_uint_eq(c->shutdown_timeout_ms, 10000);
    ck_assert_uint_eq(c->max_bulk_len, 512ull << 20);
    ck_assert_uint_eq(c->max_inline_len, 64 << 10);
    ck_assert_uint_eq(c->max_multibulk_len, 1048576);
    ck_assert_uint_eq(c->max_reply_len, 1u << 30);
    ck_assert_int_eq(c->log_level, LOGL_NOTICE);
    ck_assert_ptr_null(c->log_file);
    ck_assert_ptr_null(c->admin);
    ck_assert_ptr_null(c->pidfile);
    conf_unref(c);
}
END_TEST

START_TEST(test_full)
{
    struct conf_diag d;
    struct conf *c = parse("listen: [127.0.0.1:6380, '[::1]:6381', unix:/run/respgate/respgate.sock]\n"
                           "workers: 4\n"
                           "cluster:\n"
                           "  seeds: [a.example:6379, 10.0.0.2:7000]\n"
                           "  username: app\n"
                           "  password: \"s3cret\"\n"
                           "  refresh_interval: 500ms\n"
                           "  failover_wait: 20s\n"
                           "  read_policy: prefer-replica\n"
                           "client: {password: pw, max_clients: 5, idle_timeout: 1m, output_buffer_limit: 1gb}\n"
                           "timeouts: {connect: 250ms, backend: 1h, shutdown: 0}\n"
                           "limits: {max_bulk_len: 1k, max_inline_len: 4kb, max_multibulk_len: 100}\n"
                           "log: {level: debug, file: /var/log/respgate.log}\n"
                           "admin: {listen: 127.0.0.1:9121}\n"
                           "pidfile: /run/respgate.pid\n",
                           &d);
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(c->listen.n, 3);
    ck_assert_str_eq(c->listen.v[1].host, "::1");
    ck_assert_int_eq(c->listen.v[1].port, 6381);
    ck_assert(c->listen.v[2].is_unix);
    ck_assert_str_eq(c->listen.v[2].host, "/run/respgate/respgate.sock");
    ck_assert_uint_eq(c->workers, 4);
    ck_assert_uint_eq(c->seeds.n, 2);
    ck_assert_str_eq(c->seeds.v[0].host, "a.example");
    ck_assert_str_eq(c->cluster_username, "app");
    ck_assert_str_eq(c->cluster_password, "s3cret");
    ck_assert_uint_eq(c->refresh_interval_ms, 500);
    ck_assert_uint_eq(c->failover_wait_ms, 20000);
    ck_assert_int_eq(c->read_policy, READ_PREFER_REPLICA);
    ck_assert_str_eq(c->client_password, "pw");
    ck_assert_uint_eq(c->max_clients, 5);
    ck_assert_uint_eq(c->idle_timeout_ms, 60000);
    ck_assert_uint_eq(c->output_buffer_limit, 1ull << 30);
    ck_assert_uint_eq(c->connect_timeout_ms, 250);
    ck_assert_uint_eq(c->backend_timeout_ms, 3600000);
    ck_assert_uint_eq(c->shutdown_timeout_ms, 0);
    ck_assert_uint_eq(c->max_bulk_len, 1000);
    ck_assert_uint_eq(c->max_inline_len, 4096);
    ck_assert_uint_eq(c->max_multibulk_len, 100);
    ck_assert_int_eq(c->log_level, LOGL_DEBUG);
    ck_assert_str_eq(c->log_file, "/var/log/respgate.log");
    ck_assert_int_eq(c->admin->port, 9121);
    ck_assert_str_eq(c->pidfile, "/run/respgate.pid");
    char buf[300];
    ck_assert_str_eq(conf_addr_str(&c->listen.v[1], buf, sizeof(buf)), "[::1]:6381");
    ck_assert_str_eq(conf_addr_str(&c->listen.v[2], buf, sizeof(buf)), "unix:/run/respgate/respgate.sock");
    conf_unref(c);
}
END_TEST

START_TEST(test_scalar_for_list_and_empty_sections)
{
    struct conf_diag d;
    struct conf *c = parse("listen: 0.0.0.0:7000\ncluster:\n  seeds: 10.0.0.9:6379\nclient:\nlog: ~\n", &d);
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(c->listen.n, 1);
    ck_assert_int_eq(c->listen.v[0].port, 7000);
    ck_assert_str_eq(c->seeds.v[0].host, "10.0.0.9");
    conf_unref(c);
}
END_TEST

START_TEST(test_unknown_keys)
{
    expect_error(SEEDS "lisen: 1.2.3.4:5\n", "t.yml:2:1: lisen: unknown key");
    expect_error("cluster:\n  seeds: [10.0.0.1:6379]\n  pasword: x\n", "t.yml:3:3: cluster.pasword: unknown key");
    expect_error(SEEDS "log: {level: info, colour: red}\n", "t.yml:2:20: log.colour: unknown key");
}
END_TEST

START_TEST(test_wrong_types)
{
    expect_error(SEEDS "timeouts: {connect: 5}\n",
                 "t.yml:2:21: timeouts.connect: expected a duration like 500ms or 2s, got \"5\"");
    expect_error(SEEDS "timeouts: {connect: fast}\n",
                 "t.yml:2:21: timeouts.connect: expected a duration like 500ms or 2s, got \"fast\"");
    expect_error(SEEDS "client: {output_buffer_limit: lots}\n",
                 "t.yml:2:31: client.output_buffer_limit: expected a size like 64kb or 512mb, got \"lots\"");
    expect_error(SEEDS "client: {max_clients: -1}\n",
                 "t.yml:2:23: client.max_clients: expected a number, got \"-1\"");
    expect_error(SEEDS "workers: many\n", "t.yml:2:10: workers: expected a number or auto, got \"many\"");
    expect_error(SEEDS "cluster: {failover_wait: soon}\n",
                 "t.yml:2:1: cluster: duplicate key (first set on line 1)");
    expect_error("cluster: {seeds: [10.0.0.1:6379], failover_wait: soon}\n",
                 "t.yml:1:50: cluster.failover_wait: expected a duration like 500ms or 2s, or auto, got \"soon\"");
    expect_error(SEEDS "log: {level: loud}\n",
                 "t.yml:2:14: log.level: expected one of error, warning, notice, info, debug, got \"loud\"");
    expect_error(SEEDS "log: {file: [a, b]}\n", "t.yml:2:13: log.file: expected a string, got a list");
    expect_error(SEEDS "log: verbose\n", "t.yml:2:6: log: expected a mapping of keys, got a value");
    expect_error(SEEDS "pidfile: {a: b}\n", "t.yml:2:10: pidfile: expected a string, got a mapping");
    const char *top[] = {"t.yml:1:1: expected a mapping of keys at the top level, got a list",
                         "t.yml: cluster.seeds: required key is missing", NULL};
    expect_errors("- a\n- b\n", top);
}
END_TEST

#define LISTEN_EXPECTED(col)                                                                                  \
    "t.yml:2:" #col ": listen: expected an IP address and port like 127.0.0.1:6380, or unix:/path, each optionally " \
    "followed by \" proxy-protocol\" and (TCP only) \" tls\", or a list of them, "

START_TEST(test_proxy_protocol_listeners)
{
    struct conf_diag d;
    struct conf *c = parse(SEEDS "listen: [127.0.0.1:6380, \"127.0.0.1:6381 proxy-protocol\", "
                                 "\"[::1]:6382 proxy-protocol\"]\n",
                           &d);
    ck_assert_ptr_nonnull(c);
    conf_diag_free(&d);
    ck_assert_uint_eq(c->listen.n, 3);
    ck_assert_int_eq(c->listen.v[0].proxy_protocol, 0);
    ck_assert_int_eq(c->listen.v[1].proxy_protocol, 1);
    ck_assert_int_eq(c->listen.v[1].port, 6381);
    ck_assert_int_eq(c->listen.v[2].proxy_protocol, 1);
    ck_assert_str_eq(c->listen.v[2].host, "::1");
    char buf[300];
    ck_assert_str_eq(conf_addr_str(&c->listen.v[1], buf, sizeof(buf)), "127.0.0.1:6381 proxy-protocol");
    conf_unref(c);
    expect_error(SEEDS "listen: \"127.0.0.1:6381 proxy\"\n", LISTEN_EXPECTED(9) "got \"127.0.0.1:6381 proxy\"");
    expect_error("cluster: {seeds: [\"127.0.0.1:7000 proxy-protocol\"]}\n",
                 "t.yml:1:19: cluster.seeds: expected an address like 10.0.0.1:6379, or a list of them, "
                 "got \"127.0.0.1:7000 proxy-protocol\"");
}
END_TEST

START_TEST(test_tls_keys)
{
    struct conf_diag d;
    struct conf *c = parse(SEEDS "listen: [127.0.0.1:6380, \"127.0.0.1:6381 tls\"]\n"
                                 "tls: {cert_file: /c.pem, key_file: /k.pem, ca_file: /ca.pem, auth_clients: optional,"
                                 " min_version: TLSv1.3, ciphersuites: TLS_AES_128_GCM_SHA256}\n",
                           &d);
    ck_assert_ptr_nonnull(c);
    conf_diag_free(&d);
    ck_assert_int_eq(c->listen.v[0].tls, 0);
    ck_assert_int_eq(c->listen.v[1].tls, 1);
    ck_assert_int_eq(c->tls_auth_clients, TLS_AUTH_OPTIONAL);
    ck_assert_int_eq(c->tls_min_version, TLS_V1_3);
    ck_assert_str_eq(c->tls_ciphersuites, "TLS_AES_128_GCM_SHA256");
    ck_assert_ptr_null(c->tls_ciphers);
    ck_assert_int_eq(c->cluster_tls, 0);
    ck_assert_int_eq(c->cluster_tls_verify_name, 1);
    char buf[300];
    ck_assert_str_eq(conf_addr_str(&c->listen.v[1], buf, sizeof(buf)), "127.0.0.1:6381 tls");
    conf_unref(c);
    expect_error(SEEDS "listen: \"127.0.0.1:6381 tls\"\n",
                 "t.yml: listen: an address marked tls needs tls.cert_file and tls.key_file");
    expect_error(SEEDS "listen: \"127.0.0.1:6381 tls tls\"\n", LISTEN_EXPECTED(9) "got \"127.0.0.1:6381 tls tls\"");
    expect_error(SEEDS "listen: \"unix:/tmp/s tls\"\n", LISTEN_EXPECTED(9) "got \"unix:/tmp/s tls\"");
    expect_error(SEEDS "listen: \"127.0.0.1:6381 tls \"\n", LISTEN_EXPECTED(9) "got \"127.0.0.1:6381 tls \"");
    expect_error(SEEDS "listen: \"127.0.0.1:6381 proxy-protocol tls\"\ntls: {cert_file: /c, key_file: /k}\n",
                 "t.yml: listen: 127.0.0.1:6381 proxy-protocol tls: a PROXY header before TLS is not supported; let "
                 "the proxy end TLS, or drop one of the two");
    expect_error(SEEDS "tls: {auth_clients: yes}\n",
                 "t.yml: tls.auth_clients: verifying client certificates needs tls.ca_file");
    expect_error("cluster: {seeds: [10.0.0.1:6379], tls: yes, tls_cert_file: /c.pem}\n",
                 "t.yml: cluster.tls_cert_file and cluster.tls_key_file go together");
    expect_error(SEEDS "tls: {min_version: TLSv1.1}\n",
                 "t.yml:2:20: tls.min_version: expected one of TLSv1.2, TLSv1.3, got \"TLSv1.1\"");
}
END_TEST

START_TEST(test_bad_addresses)
{
    expect_error(SEEDS "listen: 127.0.0.1\n",
                 LISTEN_EXPECTED(9)
                 "got \"127.0.0.1\"");
    expect_error(SEEDS "listen: [127.0.0.1:70000]\n",
                 LISTEN_EXPECTED(10)
                 "got \"127.0.0.1:70000\"");
    expect_error(SEEDS "listen: [unix:relative.sock]\n",
                 LISTEN_EXPECTED(10)
                 "got \"unix:relative.sock\"");
    expect_error("cluster: {seeds: [unix:/tmp/x.sock]}\n",
                 "t.yml:1:19: cluster.seeds: expected an address like 10.0.0.1:6379, or a list of them, "
                 "got \"unix:/tmp/x.sock\"");
    expect_error("cluster: {seeds: []}\n", "t.yml:1:18: cluster.seeds: expected at least one address");
    expect_error(SEEDS "listen: localhost:6380\n",
                 LISTEN_EXPECTED(9) "got \"localhost:6380\"");
    expect_error(SEEDS "admin: {listen: localhost:9121}\n",
                 "t.yml:2:17: admin.listen: expected an IP address and port like 127.0.0.1:9121, or \"\", "
                 "got \"localhost:9121\"");
    expect_error(SEEDS "listen: ::1:6379\n",
                 LISTEN_EXPECTED(9)
                 "got \"::1:6379\"");
    /* A list is bounded: the 65th address is refused where it stands. */
    char many[2048] = SEEDS "listen: [";
    for (int i = 0; i < 65; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "%s127.0.0.1:%d", i ? "," : "", 10000 + i);
    strcat(many, "]\n");
    char want[64];
    snprintf(want, sizeof(want), "t.yml:2:%d: listen: at most 64 addresses", 10 + 64 * 16);
    expect_error(many, want);
}
END_TEST

START_TEST(test_out_of_range)
{
    expect_error(SEEDS "workers: 0\n", "t.yml:2:10: workers: 0 is out of range (1 to 256, or auto)");
    expect_error(SEEDS "workers: 1000\n", "t.yml:2:10: workers: 1000 is out of range (1 to 256, or auto)");
    expect_error(SEEDS "cluster: {refresh_interval: 10ms}\n",
                 "t.yml:2:1: cluster: duplicate key (first set on line 1)");
    expect_error("cluster: {seeds: [10.0.0.1:6379], refresh_interval: 10ms}\n",
                 "t.yml:1:53: cluster.refresh_interval: 10ms is out of range (100ms to 1h)");
    expect_error(SEEDS "client: {output_buffer_limit: 1kb}\n",
                 "t.yml:2:31: client.output_buffer_limit: 1kb is out of range (64kb to 64gb)");
    expect_error(SEEDS "limits: {max_multibulk_len: 99999999999}\n",
                 "t.yml:2:29: limits.max_multibulk_len: 99999999999 is out of range (1 to 2147483647)");
    expect_error(SEEDS "client: {max_clients: 99999999999999999999999}\n",
                 "t.yml:2:23: client.max_clients: expected a number, got \"99999999999999999999999\"");
}
END_TEST

START_TEST(test_yaml_corners)
{
    /* null means "not set" */
    struct conf_diag d;
    struct conf *c = parse(SEEDS "log: {file: ~}\npidfile: null\nclient: {password: \"null\"}\n", &d);
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_null(c->log_file);
    ck_assert_ptr_null(c->pidfile);
    ck_assert_str_eq(c->client_password, "null"); /* quoted: a string */
    conf_unref(c);
    expect_error(SEEDS "cluster.password: x\n", "t.yml:2:1: cluster.password: unknown key");
    expect_error(SEEDS "---\nworkers: 2\n", "t.yml:3:1: only one YAML document is allowed");
}
END_TEST

START_TEST(test_keys_together)
{
    expect_error("cluster:\n  seeds: [10.0.0.1:6379]\n  username: app\n",
                 "t.yml:3:3: cluster.username: needs cluster.password (without it no AUTH is sent)");
    expect_error(SEEDS "migration: {mode: read-through, source: 10.0.0.5:6379}\n",
                 "t.yml: migration.mode: a migration needs migration.source and migration.state_file (where the "
                 "keys written during it are remembered)");
    expect_error(SEEDS "migration: {mode: copy, state_file: /x}\n",
                 "t.yml: migration.mode: a migration needs migration.source and migration.state_file (where the "
                 "keys written during it are remembered)");
    expect_error(SEEDS "migration: {username: u}\n", "t.yml: migration.username: needs migration.password");
    expect_error(SEEDS "migration: {mode: paused}\n",
                 "t.yml:2:19: migration.mode: expected one of off, read-through, copy, got \"paused\"");
}
END_TEST

START_TEST(test_duplicates)
{
    expect_error(SEEDS "workers: 2\nworkers: 3\n", "t.yml:3:1: workers: duplicate key (first set on line 2)");
    expect_error("cluster:\n  seeds: [10.0.0.1:6379]\n  seeds: [10.0.0.2:6379]\n",
                 "t.yml:3:3: cluster.seeds: duplicate key (first set on line 2)");
}
END_TEST

START_TEST(test_missing_and_syntax)
{
    expect_error("workers: 2\n", "t.yml: cluster.seeds: required key is missing");
    expect_error("", "t.yml: cluster.seeds: required key is missing");
    expect_error(SEEDS "listen: [127.0.0.1:1\n",
                 "t.yml:3:1: syntax error: did not find expected ',' or ']' while parsing a flow sequence");
    expect_error(SEEDS "log: \"\\0\"\n", "t.yml:2:6: log: expected a mapping of keys, got a value");
    expect_error(SEEDS "log: {file: \"a\\0b\"}\n", "t.yml:2:13: log.file: contains a NUL byte");
}
END_TEST

START_TEST(test_all_errors_reported)
{
    const char *want[] = {
        "t.yml:1:1: bogus: unknown key",
        "t.yml:2:10: workers: 0 is out of range (1 to 256, or auto)",
        "t.yml:3:14: log.level: expected one of error, warning, notice, info, debug, got \"x\"",
        "t.yml: cluster.seeds: required key is missing",
        NULL,
    };
    expect_errors("bogus: 1\nworkers: 0\nlog: {level: x}\n", want);
}
END_TEST

START_TEST(test_secrets_never_echoed)
{
    struct conf_diag d;
    struct conf *c = parse(SEEDS "client: {password: [hunter2]}\n", &d);
    ck_assert_ptr_null(c);
    ck_assert_uint_eq(d.nerrors, 1);
    ck_assert_str_eq(d.errors[0], "t.yml:2:20: client.password: expected a string, got a list");
    conf_diag_free(&d);
}
END_TEST

START_TEST(test_units)
{
    uint64_t v;
    ck_assert_int_eq(conf_parse_duration_ms("0", &v), 0);
    ck_assert_uint_eq(v, 0);
    ck_assert_int_eq(conf_parse_duration_ms("2s", &v), 0);
    ck_assert_uint_eq(v, 2000);
    ck_assert_int_eq(conf_parse_duration_ms("2S", &v), 0);
    ck_assert_int_eq(conf_parse_duration_ms("3m", &v), 0);
    ck_assert_uint_eq(v, 180000);
    ck_assert_int_eq(conf_parse_duration_ms("1h", &v), 0);
    ck_assert_uint_eq(v, 3600000);
    ck_assert_int_eq(conf_parse_duration_ms("15", &v), -1);
    ck_assert_int_eq(conf_parse_duration_ms("1.5s", &v), -1);
    ck_assert_int_eq(conf_parse_duration_ms("-1s", &v), -1);
    ck_assert_int_eq(conf_parse_duration_ms("s", &v), -1);
    ck_assert_int_eq(conf_parse_duration_ms("99999999999999999999h", &v), -1);
    ck_assert_int_eq(conf_parse_size("100", &v), 0);
    ck_assert_uint_eq(v, 100);
    ck_assert_int_eq(conf_parse_size("64kb", &v), 0);
    ck_assert_uint_eq(v, 65536);
    ck_assert_int_eq(conf_parse_size("1k", &v), 0);
    ck_assert_uint_eq(v, 1000);
    ck_assert_int_eq(conf_parse_size("512MB", &v), 0);
    ck_assert_uint_eq(v, 512ull << 20);
    ck_assert_int_eq(conf_parse_size("2g", &v), 0);
    ck_assert_uint_eq(v, 2000000000ull);
    ck_assert_int_eq(conf_parse_size("17179869184gb", &v), -1);
    ck_assert_int_eq(conf_parse_size("1tb", &v), -1);
}
END_TEST

START_TEST(test_keep_fixed_on_reload)
{
    struct conf_diag d;
    struct conf *old = parse("listen: 127.0.0.1:6380\nworkers: 2\n" SEEDS "client: {password: a}\n", &d);
    ck_assert_ptr_nonnull(old);
    struct conf *nc = parse("listen: 127.0.0.1:7777\nworkers: 3\ncluster: {seeds: [10.0.0.1:6379]}\n"
                            "client: {password: b, max_clients: 7}\npidfile: /x.pid\n",
                            &d);
    ck_assert_ptr_nonnull(nc);
    conf_keep_fixed(nc, old, &d);
    ck_assert_uint_eq(d.nerrors, 0);
    ck_assert_uint_eq(d.nwarnings, 2);
    ck_assert_str_eq(d.warnings[0], "workers: changed, but takes effect only after a restart; keeping the running value");
    ck_assert_str_eq(d.warnings[1], "pidfile: changed, but takes effect only after a restart; keeping the running value");
    ck_assert_uint_eq(nc->workers, 2);            /* kept */
    ck_assert_int_eq(nc->listen.v[0].port, 7777); /* reloaded */
    ck_assert_ptr_null(nc->pidfile);              /* kept */
    ck_assert_str_eq(nc->client_password, "b");   /* reloaded */
    ck_assert_uint_eq(nc->max_clients, 7);
    conf_diag_free(&d);
    conf_unref(old);
    conf_unref(nc);
}
END_TEST

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    ck_assert_int_eq(chmod(path, mode), 0);
}

START_TEST(test_load_file_and_permissions)
{
    char dir[] = "/tmp/rg-conf-XXXXXX", path[64];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/respgate.yml", dir);
    struct conf_diag d = {0};

    write_file(path, SEEDS "cluster2: 1\n", 0600);
    ck_assert_ptr_null(conf_load(path, &d));
    ck_assert_uint_eq(d.nerrors, 1);
    char want[256];
    snprintf(want, sizeof(want), "%s:2:1: cluster2: unknown key", path);
    ck_assert_str_eq(d.errors[0], want);
    conf_diag_free(&d);

    write_file(path, "cluster: {seeds: [10.0.0.1:6379], password: pw}\n", 0644);
    struct conf *c = conf_load(path, &d);
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(d.nwarnings, 1);
    snprintf(want, sizeof(want), "%s: holds a password but is readable by other users (chmod o-r %s)", path, path);
    ck_assert_str_eq(d.warnings[0], want);
    conf_diag_free(&d);
    conf_unref(c);

    ck_assert_int_eq(chmod(path, 0640), 0);
    c = conf_load(path, &d);
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(d.nwarnings, 0);
    conf_diag_free(&d);
    conf_unref(c);

    unlink(path);
    ck_assert_ptr_null(conf_load(path, &d));
    snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", path);
    ck_assert_str_eq(d.errors[0], want);
    conf_diag_free(&d);
    rmdir(dir);
}
END_TEST

START_TEST(test_sample_config_is_valid)
{
    struct conf_diag d = {0};
    /* The test harness exports srcdir (automake's parallel harness). */
    const char *srcdir = getenv("srcdir");
    char path[4096];
    snprintf(path, sizeof path, "%s/etc/respgate.yml", srcdir ? srcdir : ".");
    struct conf *c = conf_load(path, &d);
    for (size_t i = 0; i < d.nerrors; i++)
        fprintf(stderr, "%s\n", d.errors[i]);
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(d.nerrors, 0);
    ck_assert_uint_eq(c->seeds.n, 3);
    conf_diag_free(&d);
    conf_unref(c);
}
END_TEST

static Suite *conf_suite(void)
{
    Suite *s = suite_create("conf");
    TCase *tc = tcase_create("conf");
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_full);
    tcase_add_test(tc, test_scalar_for_list_and_empty_sections);
    tcase_add_test(tc, test_unknown_keys);
    tcase_add_test(tc, test_wrong_types);
    tcase_add_test(tc, test_bad_addresses);
    tcase_add_test(tc, test_proxy_protocol_listeners);
    tcase_add_test(tc, test_tls_keys);
    tcase_add_test(tc, test_out_of_range);
    tcase_add_test(tc, test_yaml_corners);
    tcase_add_test(tc, test_keys_together);
    tcase_add_test(tc, test_duplicates);
    tcase_add_test(tc, test_missing_and_syntax);
    tcase_add_test(tc, test_all_errors_reported);
    tcase_add_test(tc, test_secrets_never_echoed);
    tcase_add_test(tc, test_units);
    tcase_add_test(tc, test_keep_fixed_on_reload);
    tcase_add_test(tc, test_load_file_and_permissions);
    tcase_add_test(tc, test_sample_config_is_valid);
    suite_add_tcase(s, tc);
    return s;
}

UNIT_MAIN(conf_suite)
