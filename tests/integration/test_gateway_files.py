# The gateway files in etc/ do what their comments say: KeepAlived accepts
# keepalived-respgate.conf, and its check script passes against a healthy
# respgate and fails against one that cannot reach its cluster; logrotate
# with logrotate-respgate rotates a running respgate's log, which reopens its
# file on the SIGUSR1 the file sends (through the pid file, as without
# systemd).

import os
import re
import subprocess
import time

import pytest

from conftest import CLUSTER_PASSWORD, wait_until
from harness.respgate import Respgate, free_port, yaml_config

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def etc(name):
    return open(os.path.join(TOP, "etc", name)).read()


def keepalived_check(path):
    """keepalived -t on PATH: (ok, output). keepalived 2.2 ends a clean check
    by SIGTERM to itself, a configuration error with status 5 and the lines
    at fault."""
    p = subprocess.run(["keepalived", "-t", "-f", path], capture_output=True, text=True, timeout=30, cwd="/tmp")
    out = p.stdout + p.stderr
    return p.returncode in (0, -15) and "Line " not in out, out


def test_keepalived_accepts_the_file_and_its_check_follows_healthz(cluster, tmp_path):
    conf = tmp_path / "keepalived.conf"
    text = etc("keepalived-respgate.conf")
    interface = next((i for i in sorted(os.listdir("/sys/class/net"), key=lambda i: i != "eth0") if i != "lo"), None)
    if interface is None:
        pytest.fail("keepalived needs a network interface other than lo to check a vrrp_instance")
    conf.write_text(text.replace("interface eth0", f"interface {interface}"))
    ok, out = keepalived_check(str(conf))
    assert ok, out
    broken = tmp_path / "broken.conf"
    broken.write_text(text.replace("virtual_router_id 63", "virtual_router_id 999"))
    assert not keepalived_check(str(broken))[0]  # the check can fail

    script = re.search(r'script "([^"]+)"', text).group(1)
    healthy, admin = free_port(), free_port()
    text_rg = yaml_config(healthy, cluster.seeds, CLUSTER_PASSWORD, None, f"admin: {{listen: 127.0.0.1:{admin}}}\n")
    with Respgate(tmp_path / "up", text_rg, healthy):
        run = lambda: subprocess.run(["sh", "-c", script.replace("127.0.0.1:9121", f"127.0.0.1:{admin}")],
                                     capture_output=True, timeout=10).returncode
        assert wait_until(lambda: run() == 0, 10)
    lost, admin2 = free_port(), free_port()
    text_lost = yaml_config(lost, [f"127.0.0.1:{free_port()}"], CLUSTER_PASSWORD, None,
                            f"admin: {{listen: 127.0.0.1:{admin2}}}\n")
    with Respgate(tmp_path / "down", text_lost, lost):
        rc = subprocess.run(["sh", "-c", script.replace("127.0.0.1:9121", f"127.0.0.1:{admin2}")],
                            capture_output=True, timeout=10).returncode
        assert rc == 22  # curl -f: the server answered 503


def test_logrotate_rotates_a_running_respgates_log(cluster, tmp_path):
    logdir, piddir = tmp_path / "log", tmp_path / "run"
    logdir.mkdir()
    piddir.mkdir()
    log, pidfile = logdir / "respgate.log", piddir / "respgate.pid"
    port = free_port()
    text = yaml_config(port, cluster.seeds, CLUSTER_PASSWORD, None,
                       f'log: {{level: debug, file: "{log}"}}\npidfile: "{pidfile}"\n')
    rules = etc("logrotate-respgate").replace("/var/log/respgate/respgate.log", str(log))
    rules = rules.replace("/run/respgate/respgate.pid", str(pidfile))
    rules = rules.replace("systemctl kill", "false systemctl kill")  # as on a machine without the service
    conf = tmp_path / "logrotate.conf"
    conf.write_text(rules)
    with Respgate(tmp_path / "rg", text, port) as rg:
        assert wait_until(lambda: pidfile.exists() and log.exists() and log.stat().st_size > 0, 10)
        assert int(pidfile.read_text()) == rg.pid
        p = subprocess.run(["logrotate", "-f", "-s", str(tmp_path / "state"), str(conf)], capture_output=True,
                           text=True, timeout=30)
        assert p.returncode == 0, p.stderr
        rotated = logdir / "respgate.log.1"
        assert rotated.exists()
        assert rg.client().ping()
        # Reopened: what respgate logs from now on goes to the new file.
        assert wait_until(lambda: log.exists() and "connected" in log.read_text(), 10), \
            (log.exists() and log.read_text())
        assert rg.proc.poll() is None
