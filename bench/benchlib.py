"""What bench/acl and bench/tls share: an optimized respgate build, CPU
time of a process, one redis-benchmark run, and the table of medians."""
import os
import statistics
import subprocess
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests"))
TICK = os.sysconf("SC_CLK_TCK")


def build():
    """Builds respgate optimized into build/bench (as bench/run does); returns the binary."""
    subprocess.run([os.path.join(TOP, "dev", "build"), "bench"], check=True)
    return os.path.join(TOP, "build", "bench", "src", "respgate")


def cpu_seconds(pid):
    """utime + stime of PID, from /proc/PID/stat."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def run(pid, port, args, test, n, pipeline, clients=50):
    """One redis-benchmark run of TEST against PORT (with ARGS: auth, TLS):
    (ops/s, CPU microseconds per request of process PID)."""
    before = cpu_seconds(pid)
    out = subprocess.run(["redis-benchmark", "-p", str(port), *args, "-t", test,
                          "-c", str(clients), "-P", str(pipeline), "-n", str(n), "-r", "100000", "-q"],
                         capture_output=True, text=True, timeout=600)
    line = [ln for ln in out.stdout.replace("\r", "\n").splitlines() if "requests per second" in ln]
    if out.returncode or not line:
        raise SystemExit(f"redis-benchmark failed on port {port}: {out.stdout[-300:]} {out.stderr}")
    return float(line[-1].split(":")[1].split()[0]), (cpu_seconds(pid) - before) * 1e6 / n


def table(results, cases, targets):
    """Prints medians of RESULTS[(case, target)] = [(ops, cpu), ...], each
    target's CPU also as a ratio to the first target's."""
    print("| test | target | ops/s | CPU us/request |")
    print("| --- | --- | ---: | ---: |")
    for case in cases:
        base = None
        for name in targets:
            ops = statistics.median(r[0] for r in results[(case, name)])
            cpu = statistics.median(r[1] for r in results[(case, name)])
            base = base or cpu
            print(f"| {case} | {name} | {ops:,.0f} | {cpu:.2f} ({cpu / base:.2f}x) |")
