# The grammar-driven fuzzer (tests/fuzz/grammar.py) against a respgate of the
# test build in front of the session's cluster, half a minute on each
# protocol's mix of connections: RESP2 (with connections that never
# authenticate), then RESP3 (with CLIENT TRACKING ON BCAST). respgate must
# not crash or hang, every reply must be RESP, and its sanitizers must stay
# silent (make_respgate checks its log when it stops it). A finding's batch
# is in build/fuzz/live-crashes/; dev/fuzz-live runs the same fuzzer longer.
import os
import sys
import time

import pytest

from conftest import CLIENT_PASSWORD

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fuzz"))
import grammar  # noqa: E402

SECONDS = 30
# On two shared cores an ASan respgate takes several hundred commands a
# second from the fuzzer; a tenth of that means batches stall or die early,
# and the fuzzer no longer reaches what it is meant to.
MIN_COMMANDS = 1500
# Every name the fuzzer may draw (the table's, less grammar.EXCLUDED) is
# about 90% of the table; 80% allows a few unlucky draws, and fails when the
# table is no longer read, or batches end before their commands are sent.
MIN_COVERAGE = 0.8


@pytest.mark.parametrize("mix", ["resp2", "resp3"])
def test_grammar_fuzzer_finds_nothing(make_respgate, mix):
    rg = make_respgate(client_password=CLIENT_PASSWORD, start=False)
    with open(rg.conf_path) as f:
        text = f.read()
    # The fuzzer sends wrong passwords on purpose; slowed, its own AUTHs
    # and the liveness probe's would pass for hangs.
    rg.write_config(text.replace("\nclient:\n", "\nclient:\n  auth_max_failures: 0\n", 1))
    rg.start()
    seed = int(os.environ.get("RESPGATE_FUZZ_SEED", int(time.time() * 1000) % 1000000007))

    stats = grammar.run("127.0.0.1", rg.port, CLIENT_PASSWORD, SECONDS, seed, print, mix=mix, pid=rg.pid,
                        log_path=rg.log_path)

    found = stats["finding"]
    assert found is None, (f"{found['what']}: {found['detail']}; the batch is in {found['path']} "
                           f"(seed {seed}); respgate's log:\n{rg.log()[-3000:]}")
    assert stats["commands"] >= MIN_COMMANDS, grammar.summary(stats)
    assert stats["coverage"] >= MIN_COVERAGE, grammar.summary(stats)
    assert all(stats["connections"].values()), grammar.summary(stats)
    # Mostly past AUTH and the argument checks: all errors would mean the
    # connections' set-up failed, and only the error paths were fuzzed.
    assert stats["errors"] < 0.9 * stats["replies"], grammar.summary(stats)
    if mix == "resp3":
        # The tracking connections got invalidations: their feeds work.
        assert stats["pushes"] > 0, grammar.summary(stats)
