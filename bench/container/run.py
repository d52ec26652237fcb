#!/usr/bin/python3
"""bench/container: container start-up, exec and density of kata-agent against crun and runc, in the same run.

Per iteration, in random order (so all see the same machine noise), after --warmup untimed iterations:
  run   crun run / runc run of a busybox bundle running /bin/true (config.json from `crun spec`: terminal
        false, namespaces --ns, no hostname without uts); the agent: CreateContainer + StartContainer +
        WaitProcess + RemoveContainer of the same spec over ttrpc (a sandbox is created once, as Kata does).
  exec  /bin/true into a running `sleep 1000` container: crun exec / runc exec; agent ExecProcess +
        WaitProcess.
Then the agent's RSS (VmRSS) idle, with --density containers running `sleep 1000` at once, and after removal.
Prints median / p90 / min in ms and the ratios agent/crun and agent/runc.

What the numbers include: crun/runc times include the harness's fork+exec of the tool (~1 ms, see
../shared/reference/anchors-crun-runc.md §1.2); agent times include this Python client's work per call (4 calls
per run, 2 per exec), shown by the Health.Check round trip printed alongside. The agent's spec is built from
the same config.json, minus the `pid` namespace: the Kata runtime strips it and the agent adds a new one
(kata-agent-spec.md §4.11, §3.1 step 5), so both sides create the same namespaces.

On a hybrid cgroup host (v1 controllers + cgroup2 at /sys/fs/cgroup/unified) crun refuses to run ("cgroups in
hybrid mode not supported"); as in anchors-crun-runc.md §1.3/§5 the whole benchmark then re-executes itself in
a private mount namespace where `unified` is replaced by an empty tmpfs (a v1-only view). crun, runc and the
agent all run in that view. Nothing outside the namespace changes: /run gets a private tmpfs there (holding the
agent's /run/kata-containers and /run/sandbox-ns, as in a Kata guest); crun and runc keep their state in a
temporary directory.

Needs root, Debian's crun and runc (add `crun runc hyperfine` to scripts/install-deps.sh PKGS), busybox-static,
protoc and python3-protobuf. If the agent part fails (e.g. its container RPCs are not implemented yet), the
crun/runc figures are still printed, with "agent: <error>". Exit status: 0, 1 if crun or runc failed, 2 if only
the agent did.

Usage: bench/container/run.py [-n 100] [--warmup 5] [--ns mount,pid] [--density 100]
                              [--build DIR (default build-release, configured and built if needed)]
                              [--cgroup-view auto|v1|host]"""
import argparse
import ctypes
import importlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import types

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
import oci  # noqa: E402
from rootfs import build_busybox_rootfs  # noqa: E402
from ttrpc_client import Client, wait_for_socket  # noqa: E402

SVC = "grpc.AgentService"
UNIFIED = "/sys/fs/cgroup/unified"
NS_NAMES = {"mount": "mount", "pid": "pid", "ipc": "ipc", "uts": "uts", "net": "network", "network": "network",
            "cgroup": "cgroup"}


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=100, help="timed iterations per operation (default 100)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--ns", default="mount,pid", help="namespaces: mount,pid[,ipc,uts,net] (default mount,pid)")
    ap.add_argument("--density", type=int, default=100, help="sleeping containers for the RSS figure (0: skip)")
    ap.add_argument("--build", default=None, help="meson build dir with kata-agent (default build-release)")
    ap.add_argument("--cgroup-view", choices=("auto", "v1", "host"), default="auto")
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    return ap.parse_args()


# --- statistics -------------------------------------------------------------------------------------------

def stats(ms):
    if not ms:
        return None
    s = sorted(ms)
    return {"median": statistics.median(s), "p90": s[min(len(s) - 1, int(round(0.9 * (len(s) - 1))))],
            "min": s[0], "n": len(s)}


def fmt(st):
    return f"{st['median']:7.2f} / {st['p90']:7.2f} / {st['min']:6.2f}" if st else f"{'-':>24}"


def timed(fn):
    t = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - t) / 1e6


# --- processes ------------------------------------------------------------------------------------------

def set_subreaper():
    """Orphaned container processes get reparented to us (PID 1 here may not reap promptly)."""
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def reap_orphans(keep):
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is None or info.si_pid in keep:
            return
        os.waitpid(info.si_pid, 0)


def sh(argv):
    """Run a runtime command; its stderr goes to a file, not a pipe: a container started by `create` inherits
    the runtime's stdio and would hold a pipe open forever."""
    with tempfile.TemporaryFile() as err:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        if p.returncode != 0:
            err.seek(0)
            raise subprocess.CalledProcessError(p.returncode, argv, stderr=err.read())


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# --- crun / runc --------------------------------------------------------------------------------------------

class OciRuntime:
    def __init__(self, name, state_dir, bundle, sleeper_bundle):
        self.name, self.bundle, self.sleeper_bundle = name, bundle, sleeper_bundle
        self.root = os.path.join(state_dir, name)
        self.sleeper = None
        self.version = subprocess.run([name, "--version"], capture_output=True, text=True).stdout.split("\n")[0]

    def cmd(self, *args):
        return [self.name, "--root", self.root] + list(args)

    def run(self, cid):
        sh(self.cmd("run", "--bundle", self.bundle, cid))

    def start_sleeper(self, cid):
        sh(self.cmd("create", "--bundle", self.sleeper_bundle, cid))
        sh(self.cmd("start", cid))
        self.sleeper = cid

    def exec(self):
        sh(self.cmd("exec", self.sleeper, "/bin/true"))

    def cleanup(self):
        if self.sleeper:
            subprocess.run(self.cmd("delete", "-f", self.sleeper), capture_output=True)


def make_bundles(tmp, ns):
    rootfs = build_busybox_rootfs(os.path.join(tmp, "rootfs"))
    bundles = {}
    for name, args in (("true", ["/bin/true"]), ("sleep", ["/bin/sleep", "1000"])):
        b = os.path.join(tmp, f"bundle-{name}")
        os.mkdir(b)
        subprocess.run(["crun", "spec"], cwd=b, check=True)
        with open(os.path.join(b, "config.json")) as f:
            cfg = json.load(f)
        cfg["root"]["path"] = rootfs  # shared by both bundles (runc wants a real directory, not a symlink)
        cfg["process"]["terminal"] = False
        cfg["process"]["args"] = args
        cfg["linux"]["namespaces"] = [{"type": t} for t in ns]
        if "uts" not in ns:
            cfg.pop("hostname", None)
        with open(os.path.join(b, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        bundles[name] = (b, cfg)
    return rootfs, bundles


# --- the agent ----------------------------------------------------------------------------------------------

def load_pb(tmp):
    out = os.path.join(tmp, "pb")
    os.mkdir(out)
    protos = ["ttrpc.proto", "types.proto", "oci.proto", "csi.proto", "health.proto", "agent.proto"]
    subprocess.run(["protoc", "-I", os.path.join(REPO, "proto"), "--python_out", out] + protos, check=True)
    sys.path.insert(0, out)
    pb = types.SimpleNamespace()
    for name in ["ttrpc", "types", "oci", "csi", "health", "agent"]:
        setattr(pb, name, importlib.import_module(name + "_pb2"))
    return pb


def agent_spec(pb, rootfs, cfg):
    """The bundle's config.json as a pb.oci.Spec (pid namespace left to the agent, as the Kata runtime does)."""
    p, lx = cfg["process"], cfg["linux"]
    s = oci.spec(pb, rootfs, p["args"], env=p["env"], cwd=p["cwd"], terminal=False,
                 namespaces=[n["type"] for n in lx["namespaces"] if n["type"] != "pid"],
                 mounts=[(m["destination"], m["type"], m["source"], m.get("options", [])) for m in cfg["mounts"]],
                 masked_paths=lx.get("maskedPaths", ()), readonly_paths=lx.get("readonlyPaths", ()),
                 rlimits=[(r["type"], r["hard"], r["soft"]) for r in p.get("rlimits", ())],
                 no_new_privileges=p.get("noNewPrivileges", False), hostname=cfg.get("hostname"),
                 readonly_root=cfg["root"].get("readonly", False))
    caps = p.get("capabilities", {})
    s.Process.Capabilities.CopyFrom(pb.oci.LinuxCapabilities(
        Bounding=caps.get("bounding", []), Effective=caps.get("effective", []),
        Inheritable=caps.get("inheritable", []), Permitted=caps.get("permitted", []),
        Ambient=caps.get("ambient", [])))
    return s


class AgentRuntime:
    name = "agent"

    def __init__(self, build, tmp, pb, rootfs, bundles):
        self.pb, self.tmp = pb, tmp
        self.specs = {k: agent_spec(pb, rootfs, cfg) for k, (_b, cfg) in bundles.items()}
        sock = os.path.join(tmp, "agent.sock")
        cmdline = os.path.join(tmp, "cmdline")
        open(cmdline, "w").close()
        self.log_path = os.path.join(tmp, "agent.log")
        self.log = open(self.log_path, "wb")
        argv = [os.path.join(build, "kata-agent"), "--cmdline", cmdline, "--log-level", "warn",
                "--server-addr", "unix://" + sock]
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        self.version = f"kata-agent ({build})"
        self.c, self.sleeper, self.n_exec, self.live = None, None, 0, set()
        try:
            wait_for_socket(sock, self.proc)
            self.c = Client(pb, sock, timeout=120)
            self.call("CreateSandbox", pb.agent.CreateSandboxRequest(sandbox_id="bench"))
        except BaseException:
            self.cleanup()
            raise

    def call(self, method, req, resp_cls=None):
        return self.c.call(SVC, method, req, resp_cls, timeout_ns=60 * 10**9)

    def create_start(self, cid, spec):
        self.call("CreateContainer", oci.create_container_request(self.pb, cid, spec))
        self.live.add(cid)
        self.call("StartContainer", self.pb.agent.StartContainerRequest(container_id=cid))

    def remove(self, cid):
        self.live.discard(cid)
        self.call("RemoveContainer", self.pb.agent.RemoveContainerRequest(container_id=cid, timeout=10))

    def run(self, cid):
        self.create_start(cid, self.specs["true"])
        self.call("WaitProcess", self.pb.agent.WaitProcessRequest(container_id=cid, exec_id=cid),
                  self.pb.agent.WaitProcessResponse)
        self.remove(cid)

    def start_sleeper(self, cid):
        self.create_start(cid, self.specs["sleep"])
        self.sleeper = cid

    def exec(self):
        self.n_exec += 1
        eid = f"exec-{self.n_exec}"
        self.call("ExecProcess", oci.exec_process_request(self.pb, self.sleeper, eid, ["/bin/true"]))
        self.call("WaitProcess", self.pb.agent.WaitProcessRequest(container_id=self.sleeper, exec_id=eid),
                  self.pb.agent.WaitProcessResponse)

    def health_ms(self, n=200):
        req = self.pb.health.CheckRequest()
        return [timed(lambda: self.c.call("grpc.Health", "Check", req)) for _ in range(n)]

    def density(self, n):
        idle = rss_kib(self.proc.pid)
        cids = [f"dens-{i}" for i in range(n)]
        t = timed(lambda: [self.create_start(c, self.specs["sleep"]) for c in cids])
        time.sleep(0.5)
        full = rss_kib(self.proc.pid)
        for c in cids:
            self.remove(c)
        time.sleep(0.5)
        return idle, full, rss_kib(self.proc.pid), t

    def cleanup(self):
        try:
            if not self.c:
                return
            for cid in list(self.live):
                try:
                    self.remove(cid)
                except Exception:
                    pass
            try:
                self.call("DestroySandbox", self.pb.agent.DestroySandboxRequest())
            except Exception:
                pass
            self.c.close()
        finally:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.log.close()


def build_agent(build):
    if build:
        return os.path.abspath(build)
    build = os.path.join(REPO, "build-release")
    if not os.path.exists(os.path.join(build, "build.ninja")):
        subprocess.run(["meson", "setup", build, "--buildtype=release", "-Db_ndebug=true"], cwd=REPO, check=True,
                       stdout=subprocess.DEVNULL)
    subprocess.run(["ninja", "-C", build, "kata-agent"], check=True, stdout=subprocess.DEVNULL)
    return build


# --- the benchmark --------------------------------------------------------------------------------------------

def describe(e):
    msg = getattr(e, "stderr", None)
    if isinstance(msg, bytes) and msg.strip():
        return f"{e}: {msg.decode(errors='replace').strip()[-500:]}"
    return f"{type(e).__name__}: {e}"


def bench(args, view):
    tmp = tempfile.mkdtemp(prefix="bench-container-")
    set_subreaper()
    ns = [NS_NAMES[n.strip()] for n in args.ns.split(",") if n.strip()]
    rootfs, bundles = make_bundles(tmp, ns)
    runtimes = [OciRuntime(n, tmp, bundles["true"][0], bundles["sleep"][0]) for n in ("crun", "runc")]
    errors = {}
    agent = None
    try:
        agent = AgentRuntime(build_agent(args.build), tmp, load_pb(tmp), rootfs, bundles)
        runtimes.append(agent)
    except Exception as e:
        errors["agent"] = describe(e)
    keep = {agent.proc.pid} if agent else set()
    times = {(rt.name, op): [] for rt in runtimes for op in ("run", "exec")}

    def measure(op, rt, i, record):
        if rt.name in errors:
            return
        try:
            ms = timed(lambda: rt.run(f"b{os.getpid()}-{rt.name}-{i}") if op == "run" else rt.exec())
            if record:
                times[(rt.name, op)].append(ms)
        except Exception as e:
            errors[rt.name] = f"{op}: {describe(e)}"
        reap_orphans(keep)

    try:
        for op in ("run", "exec"):
            if op == "exec":
                for rt in runtimes:
                    if rt.name not in errors:
                        try:
                            rt.start_sleeper(f"sleeper-{os.getpid()}-{rt.name}")
                        except Exception as e:
                            errors[rt.name] = f"exec: starting the sleeper: {describe(e)}"
            for i in range(args.warmup + args.n):
                order = runtimes[:]
                random.shuffle(order)
                for rt in order:
                    measure(op, rt, i, i >= args.warmup)
        health = stats(agent.health_ms()) if agent and "agent" not in errors else None
        dens = None
        if agent and "agent" not in errors and args.density:
            try:
                dens = agent.density(args.density)
            except Exception as e:
                errors["agent"] = f"density: {describe(e)}"
    finally:
        for rt in runtimes:
            rt.cleanup()
        reap_orphans(set())

    print(f"bench/container: {args.n} timed iterations after {args.warmup} warm-ups, interleaved in random order; "
          f"namespaces {','.join(ns)}; cgroup view: {view}")
    for rt in runtimes:
        print(f"  {rt.name}: {rt.version}")
    print(f"{'op':<6}{'runtime':<8}{'median / p90 / min ms':>26}{'agent/rt median':>17}{'agent/rt p90':>14}")
    for op in ("run", "exec"):
        a = stats(times.get(("agent", op)))
        if "agent" in errors:
            a = None
        for name in ("crun", "runc", "agent"):
            st = stats(times.get((name, op))) if name not in errors else None
            ratio = ""
            if a and st and name != "agent":
                ratio = f"{a['median'] / st['median']:17.2f}{a['p90'] / st['p90']:14.2f}"
            print(f"{op:<6}{name:<8}{fmt(st):>26}{ratio}")
    if health:
        print(f"agent Health.Check round trip through this Python client: {fmt(health)} ms "
              f"(client overhead per call; run = 4 calls, exec = 2)")
    if dens:
        idle, full, after, t = dens
        print(f"agent VmRSS: idle {idle} KiB, with {args.density} `sleep 1000` containers {full} KiB "
              f"(+{(full - idle) / args.density:.1f} KiB each; created in {t:.0f} ms), after removal {after} KiB")
    for name, err in errors.items():
        print(f"{name}: {err}")
    if agent and "agent" in errors:
        print(f"agent log (last lines of {agent.log_path}):")
        with open(agent.log_path, "rb") as f:
            print(f.read().decode(errors="replace")[-1500:])
    shutil.rmtree(tmp, ignore_errors=True)
    return 1 if errors.keys() & {"crun", "runc"} else 2 if errors else 0


def inner(args):
    """Inside the private mount namespace: set up the cgroup view and the agent's tmpfs, then run."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up (finally) on SIGTERM too
    view = "host"
    if args.cgroup_view == "v1" or (args.cgroup_view == "auto" and os.path.ismount(UNIFIED)):
        subprocess.run(["umount", UNIFIED], check=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "cgroup-unified-hidden", UNIFIED], check=True)
        view = "v1 only (private mount namespace, /sys/fs/cgroup/unified hidden)"
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "kata-run", "/run"], check=True)
    os.makedirs("/run/kata-containers")
    os.makedirs("/run/sandbox-ns")
    return bench(args, view)


def main():
    args = parse_args()
    if args.inner:
        return inner(args)
    missing = [t for t in ("crun", "runc") if not shutil.which(t)]
    if missing:
        print(f"bench/container: {' and '.join(missing)} not installed. Add `crun runc hyperfine` to PKGS in "
              "scripts/install-deps.sh (or apt-get install crun runc hyperfine) and run again.", file=sys.stderr)
        return 1
    if os.geteuid() != 0:
        print("bench/container: must run as root", file=sys.stderr)
        return 1
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable  # Debian's protobuf
    child = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--", python,
                              os.path.abspath(__file__), "--inner"] + sys.argv[1:])
    signal.signal(signal.SIGTERM, lambda *_: child.terminate())
    try:
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:  # the terminal sent SIGINT to both: let the inner clean up
                continue
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


if __name__ == "__main__":
    sys.exit(main())
