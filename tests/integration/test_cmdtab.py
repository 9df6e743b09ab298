# The committed command table and the command list in the docs are current:
# dev/gen-cmdtab, run against a throwaway redis-server it starts (and
# stops by PID), regenerates src/model/cmdtab.c and doc/commands.md byte for byte.

import os
import subprocess

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_cmdtab_is_current():
    proc = subprocess.run(
        ["/usr/bin/python3", os.path.join(TOP, "dev", "gen-cmdtab"), "--check",
         os.path.join(TOP, "src", "model", "cmdtab.c"), "--check-doc", os.path.join(TOP, "doc", "commands.md")],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
