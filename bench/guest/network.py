#!/usr/bin/python3
"""bench/guest/network: the network RPCs through the wire, in ms (median / p90 / min of --rounds runs).

  startup      UpdateInterface (2 addresses, rename, MTU) + UpdateRoutes with 64 routes (32 link routes, 32
               gateway routes), what the Kata runtime sends when a sandbox starts; each call and the pair;
  update-10k   UpdateRoutes replacing 10 000 routes (reply = the 10 000 routes listed again);
  list-10k     ListRoutes with 10 000 routes in the main table (reply ~0.4 MB);
  list-ifaces  ListInterfaces;
and as references: Health.Check (the round trip of this Python client) and `ip -j route show` of the same
10 000 routes (fork+exec of iproute2 included).

The agent runs in a network namespace of its own (`ip netns add ka-bench-net-<pid>`, nsenter --net), on a veth
pair made there; private address ranges only; the namespace is deleted at the end (also on failure).
Needs root, iproute2, protoc and python3-protobuf.
Usage: bench/guest/network.py [--rounds 15] [--build DIR (default build-release, configured and built if needed)]"""
import argparse
import importlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
from ttrpc_client import Client, wait_for_socket  # noqa: E402

SVC = "grpc.AgentService"
MAC = "02:00:00:00:be:01"


def sh(*argv, **kw):
    return subprocess.run(argv, check=True, **kw)


def build(build_dir):
    if not os.path.exists(os.path.join(build_dir, "build.ninja")):
        sh("meson", "setup", build_dir, "--buildtype=release", "-Db_ndebug=true", cwd=REPO, stdout=subprocess.DEVNULL)
    sh("ninja", "-C", build_dir, "kata-agent", stdout=subprocess.DEVNULL)


def load_pb(tmp):
    out = os.path.join(tmp, "pb")
    os.mkdir(out)
    protos = ["ttrpc.proto", "types.proto", "oci.proto", "csi.proto", "health.proto", "agent.proto"]
    sh("protoc", "-I", os.path.join(REPO, "proto"), "--python_out", out, *protos)
    sys.path.insert(0, out)
    import types as pytypes
    pb = pytypes.SimpleNamespace()
    for name in ["ttrpc", "types", "oci", "csi", "health", "agent"]:
        setattr(pb, name, importlib.import_module(name + "_pb2"))
    return pb


def stats(ms):
    ms = sorted(ms)
    return statistics.median(ms), ms[min(len(ms) - 1, int(len(ms) * 0.9))], ms[0]


def show(name, ms, extra=""):
    med, p90, mn = stats(ms)
    print(f"{name:<34} median {med:8.2f} ms   p90 {p90:8.2f} ms   min {mn:8.2f} ms  {extra}")


def timed(fn):
    t0 = time.perf_counter()
    r = fn()
    return (time.perf_counter() - t0) * 1000, r


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--build", default=os.path.join(REPO, "build-release"))
    args = ap.parse_args()
    build_dir = os.path.abspath(args.build)
    build(build_dir)
    agent_bin = os.path.join(build_dir, "kata-agent")

    tmp = tempfile.mkdtemp(prefix="ka-bench-net-")
    ns = f"ka-bench-net-{os.getpid()}"
    proc = client = None
    try:
        pb = load_pb(tmp)
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "link", "add", "v0", "address", MAC, "type", "veth", "peer", "name", "v0p")
        sh("ip", "-n", ns, "link", "set", "v0p", "up")
        cmdline = os.path.join(tmp, "cmdline")
        open(cmdline, "w").close()
        sock = os.path.join(tmp, "agent.sock")
        log = open(os.path.join(tmp, "agent.log"), "wb")
        proc = subprocess.Popen(["nsenter", f"--net=/run/netns/{ns}", "--", agent_bin, "--cmdline", cmdline,
                                 "--log-level", "warn", "--server-addr", f"unix://{sock}"],
                                stdout=log, stderr=subprocess.STDOUT)
        wait_for_socket(sock, proc)
        assert os.stat(f"/proc/{proc.pid}/ns/net").st_ino == os.stat(f"/run/netns/{ns}").st_ino, "not in the netns"
        client = Client(pb, sock, timeout=300)
        run(pb, client, ns, args.rounds)
    finally:
        if client:
            client.close()
        if proc and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["rm", "-rf", tmp])


def run(pb, c, ns, rounds):
    t = pb.types

    def call(method, req, resp=None):
        return c.call(SVC, method, req, resp)

    def update_iface(name):
        req = pb.agent.UpdateInterfaceRequest(interface=t.Interface(
            hwAddr=MAC, name=name, mtu=1450,
            IPAddresses=[t.IPAddress(address="10.240.0.2", mask="16"),
                         t.IPAddress(address="fd00:240::2", mask="64", family=t.v6)]))
        return call("UpdateInterface", req, t.Interface)

    def update_routes(rs):
        req = pb.agent.UpdateRoutesRequest(routes=pb.agent.Routes(Routes=rs))
        return call("UpdateRoutes", req, pb.agent.Routes).Routes

    def list_routes():
        return call("ListRoutes", pb.agent.ListRoutesRequest(), pb.agent.Routes).Routes

    routes64 = [t.Route(dest=f"10.241.{i}.0/24", device="eth0", scope=253) for i in range(32)]
    routes64 += [t.Route(dest=f"10.242.{i}.0/24", gateway=f"10.241.{i}.1", device="eth0") for i in range(32)]
    routes10k = [t.Route(dest=f"10.{243 + i // 65536}.{i // 256 % 256}.{i % 256}/32", device="eth0")
                 for i in range(9000)]
    routes10k += [t.Route(dest=f"fd00:244:{i:x}::/48", gateway="fd00:240::1", device="eth0", family=t.v6)
                  for i in range(1000)]

    health = [timed(c.health)[0] for _ in range(max(rounds, 50))]
    print(f"kata-agent network RPCs, {rounds} rounds each (agent in netns {ns})")
    show("Health.Check (client round trip)", health)

    ui, ur, pair = [], [], []
    for i in range(rounds):
        a, _ = timed(lambda: update_iface("eth0"))
        b, got = timed(lambda: update_routes(routes64))
        assert sum(1 for r in got if r.dest.startswith(("10.241.", "10.242."))) == 64, len(got)
        ui.append(a)
        ur.append(b)
        pair.append(a + b)
    show("UpdateInterface", ui)
    show("UpdateRoutes (64 routes)", ur)
    show("startup pair", pair)

    up, ls, ipr = [], [], []
    for i in range(rounds):
        update_routes(routes64)  # so that each run really replaces (deletes 64, adds 10 000)
        a, got = timed(lambda: update_routes(routes10k))
        assert len(got) >= 10000, len(got)
        up.append(a)
    for i in range(rounds):
        a, got = timed(list_routes)
        assert len(got) >= 10000
        ls.append(a)
        b, _ = timed(lambda: sh("ip", "-n", ns, "-j", "route", "show", "table", "main", stdout=subprocess.DEVNULL)
                     and sh("ip", "-n", ns, "-j", "-6", "route", "show", "table", "main", stdout=subprocess.DEVNULL))
        ipr.append(b)
    size = pb.agent.Routes(Routes=list_routes()).ByteSize()
    show("UpdateRoutes (10 000 routes)", up)
    show("ListRoutes (10 000 routes)", ls, f"reply {size / 1e6:.2f} MB")
    show("ip -j route show (v4 + v6, ref.)", ipr)
    li = [timed(lambda: call("ListInterfaces", pb.agent.ListInterfacesRequest(), pb.agent.Interfaces))[0]
          for _ in range(rounds)]
    show("ListInterfaces (3 links)", li)


if __name__ == "__main__":
    main()
