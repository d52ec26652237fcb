"""Shared fixtures: the agent under test, the ctl tool and Python protobuf modules generated from proto/.

Environment: KA_BUILD_DIR (meson build dir, default <repo>/build) selects the binaries, so the same tests
run against the normal and the sanitizer build."""
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import types

import pytest

from ttrpc_client import Client, wait_for_socket

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.abspath(os.environ.get("KA_BUILD_DIR", os.path.join(REPO, "build")))
AGENT = os.path.join(BUILD, "kata-agent")
CTL = os.path.join(BUILD, "kata-agent-ctl")


@pytest.fixture(scope="session")
def pb():
    """Python modules for the envelope and the kata protos (protoc --python_out at test time)."""
    out = tempfile.mkdtemp(prefix="ka-pb-")
    protos = ["ttrpc.proto", "types.proto", "oci.proto", "csi.proto", "health.proto", "agent.proto"]
    subprocess.run(["protoc", "-I", os.path.join(REPO, "proto"), "--python_out", out] + protos, check=True)
    sys.path.insert(0, out)
    mods = types.SimpleNamespace()
    for name in ["ttrpc", "types", "oci", "csi", "health", "agent"]:
        setattr(mods, name, importlib.import_module(name + "_pb2"))
    mods.empty = importlib.import_module("google.protobuf.empty_pb2")
    yield mods
    shutil.rmtree(out, ignore_errors=True)  # the modules are loaded; nothing is left in /tmp


class Agent:
    """A running kata-agent process serving on a unix socket in a temporary directory."""

    def __init__(self, workdir, args=(), env=None, addr=None, cmdline="", wait=True):
        self.workdir = str(workdir)
        self.sock = os.path.join(self.workdir, "agent.sock")
        self.addr = addr or f"unix://{self.sock}"
        self.log_path = os.path.join(self.workdir, "agent.log")
        self.cmdline_path = os.path.join(self.workdir, "cmdline")
        with open(self.cmdline_path, "w") as f:
            f.write(cmdline)
        argv = [AGENT, "--cmdline", self.cmdline_path, "--log-level", "debug"]
        if addr is not False:
            argv += ["--server-addr", self.addr]
        argv += list(args)
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("KATA_AGENT_")}
        full_env.update(env or {})
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=full_env)
        if wait:
            wait_for_socket(self.sock, self.proc)

    @property
    def pid(self):
        return self.proc.pid

    def fd_count(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def rss_kib(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def log_records(self):
        recs = []
        for line in self.log_text().splitlines():
            line = line.strip()
            if line.startswith("{"):
                recs.append(json.loads(line))
        return recs

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=10):
        """SIGTERM, wait; returns the exit status (a sanitizer finding makes it non-zero)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture
def agent_factory(tmp_path):
    started = []

    def start(**kw):
        d = tmp_path / f"agent{len(started)}"
        d.mkdir()
        a = Agent(d, **kw)
        started.append(a)
        return a

    yield start
    for a in started:
        rc = a.stop()
        if rc not in (0, None):
            print(a.log_text()[-4000:])
        assert rc == 0, f"agent exited with status {rc} (sanitizer report or crash?)"


@pytest.fixture
def agent(agent_factory):
    return agent_factory()


@pytest.fixture
def client(agent, pb):
    c = Client(pb, agent.sock)
    yield c
    c.close()


def ctl(*args, addr=None, check=True, timeout=60):
    """Run kata-agent-ctl; returns CompletedProcess (stdout/stderr text)."""
    argv = [CTL] + (["-a", addr] if addr else []) + list(args)
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{argv} failed ({p.returncode}): {p.stderr}")
    return p


# ---------------------------------------------------------------------------------------------------------
# Containers: the busybox rootfs, OCI message builders, and the agent in a private mount namespace.

import collections  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

import oci as _oci  # noqa: E402
from rootfs import build_busybox_rootfs  # noqa: E402

# The agent's private mount namespace gets a fresh tmpfs on /run (source "kata-run") holding /run/kata-containers
# and /run/sandbox-ns (= /var/run/sandbox-ns), as in a Kata guest: nothing it creates or mounts there is visible
# to the host or outlives it, and no directory is needed on the host. (Mount points made on the host instead
# would be racy: removing one detaches the mounts made on it in every other namespace, e.g. those of another
# test session's agents.)
NS_SCRIPT = ('mount -t tmpfs -o mode=755 kata-run /run && mkdir -p /run/kata-containers /run/sandbox-ns '
             '&& exec "$@"')
CGROUP_ROOT = "/sys/fs/cgroup"


def _tree_fingerprint(root):
    fp = {}
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(d, name)
            st = os.lstat(p)
            fp[os.path.relpath(p, root)] = (st.st_mode, st.st_uid, st.st_size, st.st_mtime_ns,
                                             os.readlink(p) if os.path.islink(p) else None)
    return fp


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory):
    """Path of a busybox rootfs built once per session (tests/integration/rootfs.py). Read-only by
    convention: a test that writes into its rootfs uses rootfs_copy. Checked unchanged at session end."""
    path = str(tmp_path_factory.mktemp("busybox") / "rootfs")
    build_busybox_rootfs(path)
    before = _tree_fingerprint(path)
    yield path
    after = _tree_fingerprint(path)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"a test modified the shared busybox rootfs (use rootfs_copy): {changed[:20]}"


@pytest.fixture
def rootfs_copy(busybox_rootfs, tmp_path):
    """A private copy of the busybox rootfs (cp -a) that the test may modify."""
    dest = str(tmp_path / "rootfs")
    subprocess.run(["cp", "-a", busybox_rootfs, dest], check=True)
    return dest


@pytest.fixture
def oci(pb):
    """tests/integration/oci.py with pb bound: oci.spec(rootfs, args, ...), oci.process(args, ...),
    oci.create_container_request(cid, spec, ...), oci.exec_process_request(cid, exec_id, args, ...)."""
    return _oci.Oci(pb)


def _ppid_map():
    children = collections.defaultdict(list)
    for ent in os.listdir("/proc"):
        if not ent.isdigit():
            continue
        try:
            with open(f"/proc/{ent}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        children[int(fields[1])].append(int(ent))
    return children


def descendants(pid):
    """Host pids of every descendant of pid, from /proc."""
    tree, out, todo = _ppid_map(), [], [pid]
    while todo:
        kids = tree.get(todo.pop(), [])
        out += kids
        todo += kids
    return sorted(out)


def _start_time(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        return int(stat[stat.rindex(")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _mount_key(line):
    """(mount point, fs type, source) of a mountinfo line: stable across snapshots (ids are not)."""
    left, _, right = line.partition(" - ")
    f, r = left.split(), right.split()
    return (f[4], r[0] if r else "", r[1] if len(r) > 1 else "")


def assert_no_leaks(before, after):
    """Compare two SandboxAgent.snapshot()s: no more fds, no new mounts in the agent's namespace, no cgroup
    whose path contains the test id, no new descendant processes."""
    problems = []
    if after["fds"] > before["fds"]:
        new = sorted(set(after.get("fd_targets", ())) - set(before.get("fd_targets", ())))
        problems.append(f"fds: {before['fds']} -> {after['fds']} {new}")
    new_mounts = after["mounts"] - before["mounts"]
    if new_mounts:
        problems.append(f"mounts left: {sorted(new_mounts.elements())}")
    new_cgroups = sorted(set(after["cgroups"]) - set(before["cgroups"]))
    if new_cgroups:
        problems.append(f"cgroups left: {new_cgroups}")
    new_children = sorted(set(after["children"]) - set(before["children"]))
    if new_children:
        problems.append(f"processes left: {[(p, _cmdline(p)) for p in new_children]}")
    assert not problems, "leaks: " + "; ".join(problems)


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


class SandboxAgent(Agent):
    """kata-agent in a private mount namespace with a fresh tmpfs on /run (NS_SCRIPT):
    `unshare --mount --propagation private -- sh -c 'mount -t tmpfs ... /run && ... && exec "$@"' sh <agent argv>`.
    Its pid is the agent's (unshare and sh exec). Everything it mounts dies with it; its view of a path is
    /proc/<pid>/root/<path>. `token` is this agent's test id: build container ids with cid() so that leak
    checks find their cgroups."""

    def __init__(self, workdir, args=(), env=None, cmdline="", log_level="debug"):
        self.workdir = str(workdir)
        self.sock = os.path.join(self.workdir, "agent.sock")
        self.addr = f"unix://{self.sock}"
        self.log_path = os.path.join(self.workdir, "agent.log")
        self.cmdline_path = os.path.join(self.workdir, "cmdline")
        self.token = "kt" + uuid.uuid4().hex[:10]
        self.clients = []
        with open(self.cmdline_path, "w") as f:
            f.write(cmdline)
        agent_argv = [AGENT, "--cmdline", self.cmdline_path, "--log-level", log_level,
                      "--server-addr", self.addr] + list(args)
        argv = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", NS_SCRIPT, "sh"] + agent_argv
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("KATA_AGENT_")}
        full_env.update(env or {})
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=full_env)
        try:
            wait_for_socket(self.sock, self.proc)
        except Exception:
            self.log.close()
            raise RuntimeError(f"sandboxed agent did not start: {self.log_text()[-2000:]}")

    def cid(self, name="c"):
        """A container id carrying this agent's test id."""
        return f"{self.token}-{name}"

    def connect(self, pb, timeout=30.0):
        """A raw ttrpc Client on this agent, closed at teardown."""
        c = Client(pb, self.sock, timeout=timeout)
        self.clients.append(c)
        c.health()  # the agent has also handled the hang-up of the start-up probe: snapshots are stable
        return c

    def mounts(self):
        """Lines of /proc/<agent pid>/mountinfo (the agent's private namespace)."""
        with open(f"/proc/{self.pid}/mountinfo") as f:
            return f.read().splitlines()

    def child_pids(self):
        """Every descendant of the agent (container inits, exec'd processes, helpers), host pids."""
        return descendants(self.pid)

    def cgroups(self, pattern=None):
        """Cgroup directories whose path contains pattern (default: this agent's test id)."""
        pattern = pattern or self.token
        found = []
        for d, dirs, _files in os.walk(CGROUP_ROOT):
            found += [os.path.join(d, x) for x in dirs if pattern in os.path.join(d, x)]
        return sorted(found)

    def fd_targets(self):
        out = []
        for fd in os.listdir(f"/proc/{self.pid}/fd"):
            try:
                out.append(f"{fd}->{os.readlink(f'/proc/{self.pid}/fd/{fd}')}")
            except OSError:
                pass
        return sorted(out)

    def snapshot(self):
        return {"fds": self.fd_count(), "fd_targets": self.fd_targets(), "mounts": collections.Counter(map(_mount_key, self.mounts())),
                "cgroups": self.cgroups(), "children": self.child_pids(), "rss_kib": self.rss_kib()}

    def check_no_leaks(self, before, timeout=5.0):
        """assert_no_leaks(before, now), retried for up to timeout seconds (RemoveContainer does not wait for
        the container's processes to die, so their exit and cgroup removal may lag)."""
        deadline = time.time() + timeout
        while True:
            after = self.snapshot()
            try:
                assert_no_leaks(before, after)
                return after
            except AssertionError:
                if time.time() >= deadline:
                    raise
                time.sleep(0.05)

    def stop(self, timeout=10):
        """Close clients, SIGTERM the agent; then kill any descendant it left behind and remove cgroups
        carrying its test id. Returns the agent's exit status."""
        for c in self.clients:
            c.close()
        self.clients = []
        left = [(p, _start_time(p)) for p in self.child_pids()] if self.alive() else []
        rc = super().stop(timeout)
        for pid, start in left:
            if start is not None and _start_time(pid) == start:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        deadline = time.time() + 5
        for cg in sorted(self.cgroups(), key=len, reverse=True):
            while True:
                try:
                    os.rmdir(cg)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.time() >= deadline:
                        break
                    time.sleep(0.02)
        return rc


@pytest.fixture
def sandbox_agent_factory(tmp_path):
    """Start SandboxAgents (kwargs: args, env, cmdline, log_level); each must exit 0 on SIGTERM at teardown."""
    started = []

    def start(**kw):
        d = tmp_path / f"sandbox-agent{len(started)}"
        d.mkdir()
        a = SandboxAgent(d, **kw)
        started.append(a)
        return a

    yield start
    for a in started:
        rc = a.stop()
        if rc != 0:
            print(a.log_text()[-4000:])
        assert rc == 0, f"sandboxed agent exited with status {rc} (sanitizer report or crash?)"


@pytest.fixture
def sandbox_agent(sandbox_agent_factory):
    return sandbox_agent_factory()


@pytest.fixture(name="assert_no_leaks")
def assert_no_leaks_fixture():
    """assert_no_leaks(before, after) for tests that prefer a fixture to an import."""
    return assert_no_leaks
