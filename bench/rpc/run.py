#!/usr/bin/python3
"""bench/rpc: Health.Check round trips against kata-agent and, in the same run, a Go ttrpc server (Debian's
containerd/ttrpc 1.1.1) serving the same Health service. Prints median/p99 latency and throughput of both
with the ratios, kata-agent's stripped binary size, and its RSS across 100k requests.

Targets (issue #2): median latency <= 1/3 of Go's, throughput >= 3x Go's, RSS <= 2 MiB and flat.
Usage: bench/rpc/run.py [--rounds 5] [--seq 20000] [--conc 200000]"""
import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.join(REPO, "build-release")


def sh(*argv, **kw):
    return subprocess.run(argv, check=True, **kw)


def build():
    if not os.path.exists(os.path.join(BUILD, "build.ninja")):
        sh("meson", "setup", BUILD, "--buildtype=release", "-Db_ndebug=true", cwd=REPO, stdout=subprocess.DEVNULL)
    sh("ninja", "-C", BUILD, stdout=subprocess.DEVNULL)
    sh("bash", os.path.join(REPO, "tests/interop/build.sh"), os.path.join(BUILD, "interop"),
       stdout=subprocess.DEVNULL)


def wait_sock(path, proc):
    import socket
    for _ in range(500):
        if proc.poll() is not None:
            raise RuntimeError("server exited early")
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(path)
            return
        except OSError:
            time.sleep(0.01)
        finally:
            s.close()
    raise TimeoutError(path)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])


def bench(sock, label, seq, conc, conns=8, in_flight=16):
    out = subprocess.run([os.path.join(BUILD, "bench/bench_rpc"), "-s", sock, "-n", str(seq), "-N", str(conc),
                          "-c", str(conns), "-p", str(in_flight), "--label", label],
                         check=True, capture_output=True, text=True).stdout
    rows = {}
    for line in out.splitlines():
        kv = dict(item.split("=", 1) for item in line.split())
        rows[kv["mode"]] = {k: float(kv[k]) for k in ("median_us", "mean_us", "p99_us", "throughput_rps")}
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seq", type=int, default=20000)
    ap.add_argument("--conc", type=int, default=200000)
    args = ap.parse_args()
    build()
    tmp = tempfile.mkdtemp(prefix="bench-rpc-")
    agent_sock, go_sock = os.path.join(tmp, "agent.sock"), os.path.join(tmp, "go.sock")
    open(os.path.join(tmp, "cmdline"), "w").close()
    agent = subprocess.Popen([os.path.join(BUILD, "kata-agent"), "--cmdline", os.path.join(tmp, "cmdline"),
                              "--log-level", "warn", "--server-addr", "unix://" + agent_sock],
                             stdout=subprocess.DEVNULL)
    gosrv = subprocess.Popen([os.path.join(BUILD, "interop/health-server"), "-sock", go_sock],
                             stdout=subprocess.DEVNULL)
    try:
        wait_sock(agent_sock, agent)
        wait_sock(go_sock, gosrv)
        results = {"kata-agent": [], "go-ttrpc": []}
        floors = []
        for _ in range(args.rounds):  # interleaved, so both see the same machine noise
            results["kata-agent"].append(bench(agent_sock, "kata-agent", args.seq, args.conc))
            results["go-ttrpc"].append(bench(go_sock, "go-ttrpc", args.seq, args.conc))
            out = subprocess.run([os.path.join(BUILD, "bench/bench_rpc"), "--floor", "-n", str(args.seq)],
                                 check=True, capture_output=True, text=True).stdout
            floors.append(float(dict(i.split("=", 1) for i in out.split())["median_us"]))

        def med(name, mode, key):
            return statistics.median(r[mode][key] for r in results[name])

        modes = list(results["kata-agent"][0].keys())
        print(f"Health.Check over a unix socket, median of {args.rounds} interleaved rounds "
              f"({args.seq} sequential calls; {args.conc} calls as 8 connections x 16 in flight)")
        print(f"{'mode':<12}{'server':<12}{'median us':>11}{'mean us':>10}{'p99 us':>10}{'calls/s':>12}")
        for mode in modes:
            for name in results:
                print(f"{mode:<12}{name:<12}{med(name, mode, 'median_us'):>11.1f}{med(name, mode, 'mean_us'):>10.1f}"
                      f"{med(name, mode, 'p99_us'):>10.1f}{med(name, mode, 'throughput_rps'):>12.0f}")
        for mode in modes:
            lat = med("kata-agent", mode, "median_us") / med("go-ttrpc", mode, "median_us")
            mean = med("kata-agent", mode, "mean_us") / med("go-ttrpc", mode, "mean_us")
            thr = med("kata-agent", mode, "throughput_rps") / med("go-ttrpc", mode, "throughput_rps")
            print(f"ratio {mode}: median latency kata/go = {lat:.2f} (mean {mean:.2f}; target <= 0.33), "
                  f"throughput kata/go = {thr:.2f}x (target >= 3)")
        print("  (8x16 keeps 128 calls in flight, so a call's latency there is mostly queueing: mean = 128 / "
              "throughput; the\n   latency target is judged on sequential calls, the throughput target on 8x16)")

        floor = statistics.median(floors)
        k, g = med("kata-agent", "sequential", "median_us"), med("go-ttrpc", "sequential", "median_us")
        print(f"echo floor (blocking read/write pair, no server work): median {floor:.1f} us; time above it per "
              f"sequential call: kata-agent {k - floor:.1f} us, go-ttrpc {g - floor:.1f} us "
              f"(ratio {(k - floor) / max(g - floor, 0.01):.2f})")

        # RSS across 100k requests (after a warm-up), sampled every 25k
        bench(agent_sock, "warmup", 1000, 1000, conns=1, in_flight=1)
        samples = [rss_kib(agent.pid)]
        for _ in range(4):
            bench(agent_sock, "rss", 12500, 12500)
            samples.append(rss_kib(agent.pid))
        print("kata-agent RSS (KiB) at 0/25k/50k/75k/100k requests: " + " ".join(map(str, samples)) +
              f"  (max {max(samples) / 1024:.2f} MiB, target <= 2 MiB and flat)")
        with open(f"/proc/{agent.pid}/smaps_rollup") as f:
            roll = {line.split(":")[0]: int(line.split()[1]) for line in f if line.split()[-1] == "kB"}
        print(f"  of which: anonymous {roll.get('Anonymous', 0)} KiB, file-backed (the binary's pages; it is "
              f"linked statically) {roll.get('Rss', 0) - roll.get('Anonymous', 0)} KiB; PSS {roll.get('Pss', 0)} KiB")
        stripped = os.path.join(tmp, "kata-agent.stripped")
        sh("strip", "-o", stripped, os.path.join(BUILD, "kata-agent"))
        print(f"kata-agent stripped binary: {os.path.getsize(stripped)} bytes")
    finally:
        for p in (agent, gosrv):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    sys.exit(main())
