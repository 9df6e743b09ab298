# Fixtures for the integration tests: one real Redis Cluster (3 masters + 3
# replicas, passwords, loopback) per test session, and a respgate in front of
# it per test. Everything is stopped by PID, also when a test fails.

import os
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from harness.cluster import REDIS_SERVER, REDIS_VERSION, Cluster  # noqa: E402
from harness.respgate import BINARY, Respgate, free_port, live_logs, yaml_config  # noqa: E402
from harness.single import Single  # noqa: E402

CLUSTER_PASSWORD = "cluster-pw"
CLIENT_PASSWORD = "client-pw"


def pytest_sessionstart(session):
    if not os.access(BINARY, os.X_OK):
        raise pytest.UsageError(f"no respgate binary at {BINARY}: build it or set RESPGATE_BIN")


NEEDS_REDIS7 = "needs Redis 7.0"


def needs_redis7(why):
    """Marks a test of a Redis 7.0 feature: skipped, saying so, on 6.2."""
    return pytest.mark.skipif(REDIS_VERSION < (7, 0), reason=f"{NEEDS_REDIS7} ({why})")


def pytest_report_header(config):
    return f"redis-server: {REDIS_SERVER} ({'.'.join(map(str, REDIS_VERSION))})"


def pytest_runtest_logreport(report):
    # In this suite a skipped test is a failed one: nothing here may quietly
    # not run. The one exception is a Redis 7.0 feature on a 6.2 cluster.
    if report.skipped and NEEDS_REDIS7 not in str(report.longrepr):
        report.outcome = "failed"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # A failure shows what the respgates running then logged: which map
    # they applied and from which node, what they gave up on. A failure
    # that does not come back (CI) leaves nothing else to read.
    report = (yield).get_result()
    if report.failed and call.when == "call":
        for port, tail in live_logs():
            report.sections.append((f"respgate on port {port}: the last lines of its log", tail))


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """One plain redis-server of the suite's version per test module: the
    reference a module's replies through respgate are compared with."""
    with Single(str(tmp_path_factory.mktemp("single"))) as s:
        yield s


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    with Cluster(tmp_path_factory.mktemp("cluster"), password=CLUSTER_PASSWORD) as c:
        yield c


@pytest.fixture
def make_respgate(tmp_path, cluster):
    """make_respgate(client_password=None, extra="", args=(), env=None, start=True, binary=None) -> Respgate"""
    started = []

    def make(client_password=None, extra="", args=(), env=None, start=True, binary=None):
        port = free_port()
        text = yaml_config(port, cluster.seeds, CLUSTER_PASSWORD, client_password, extra)
        rg = Respgate(tmp_path / f"rg{len(started)}", text, port, args=args, env=env, binary=binary)
        started.append(rg)
        return rg.start() if start else rg

    yield make
    for rg in started:
        rg.stop()
    # Stopped cleanly, the test build's sanitizers have had their say.
    reports = [r for r in (rg.sanitizer_report() for rg in started) if r]
    assert not reports, "respgate's sanitizers reported:\n" + "\n".join(reports)


@pytest.fixture
def respgate(make_respgate):
    return make_respgate()


def wait_until(check, timeout):
    """Polls CHECK every 50 ms until it is true (True) or TIMEOUT seconds
    have passed (False); it is asked at least once."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
