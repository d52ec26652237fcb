"""Self-tests of the container test infrastructure (they pass before the container RPCs exist): the busybox
rootfs builder, the OCI/request builders, the sandbox_agent fixture (private mount namespace, leak
snapshots), and `kata-agent-ctl run` driven against a small fake agent that runs the command with chroot."""
import os
import signal
import socket
import subprocess
import threading

import pytest

from conftest import AGENT, CTL, assert_no_leaks, descendants
from rootfs import applets
from ttrpc_client import HDR, T_REQUEST, T_RESPONSE, UNIMPLEMENTED, RpcError


# --- rootfs -------------------------------------------------------------------------------------------------

def test_busybox_rootfs_has_every_applet_and_users(busybox_rootfs):
    bb = os.path.join(busybox_rootfs, "bin/busybox")
    assert os.access(bb, os.X_OK) and not os.path.islink(bb)
    names = applets()
    assert len(names) > 200 and {"sh", "ls", "cat", "echo", "true", "sleep", "id", "env"} <= set(names)
    for a in names:
        assert os.readlink(os.path.join(busybox_rootfs, "bin", a)) == "busybox", a
    with open(os.path.join(busybox_rootfs, "etc/passwd")) as f:
        users = {line.split(":")[0]: line.strip().split(":") for line in f}
    assert users["root"][2:4] == ["0", "0"]
    assert users["user"][2:6] == ["1000", "1000", "user", "/home/user"]
    assert users["nobody"][2:4] == ["65534", "65534"]
    with open(os.path.join(busybox_rootfs, "etc/group")) as f:
        assert {line.split(":")[0] for line in f} >= {"root", "user", "nogroup"}
    for d in ("proc", "sys", "dev", "tmp", "etc", "home/user", "root", "run"):
        assert os.path.isdir(os.path.join(busybox_rootfs, d)), d
    assert os.stat(os.path.join(busybox_rootfs, "tmp")).st_mode & 0o7777 == 0o1777
    assert os.stat(os.path.join(busybox_rootfs, "home/user")).st_uid == 1000


def test_busybox_rootfs_works_under_chroot(busybox_rootfs):
    out = subprocess.run(["chroot", busybox_rootfs, "/bin/sh", "-c", "echo hi; id -un; ls /bin | wc -l"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[:2] == ["hi", "root"] and int(out[2]) > 200
    out = subprocess.run(["chroot", "--userspec=1000:1000", busybox_rootfs, "/bin/id", "-un"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "user"


def test_rootfs_copy_is_private(rootfs_copy, busybox_rootfs):
    assert rootfs_copy != busybox_rootfs
    assert os.readlink(os.path.join(rootfs_copy, "bin/sh")) == "busybox"
    with open(os.path.join(rootfs_copy, "etc/motd"), "w") as f:
        f.write("mine\n")
    assert not os.path.exists(os.path.join(busybox_rootfs, "etc/motd"))


# --- OCI builders ---------------------------------------------------------------------------------------------

def test_spec_defaults(oci, pb, busybox_rootfs):
    s = oci.spec(busybox_rootfs, ["/bin/sh", "-c", "true"], hostname="h1", uid=1000, gid=1000)
    assert s.Root.Path == busybox_rootfs and s.Hostname == "h1"
    assert list(s.Process.Args) == ["/bin/sh", "-c", "true"] and s.Process.Cwd == "/"
    assert s.Process.Env[0].startswith("PATH=/usr/local/sbin:") and not s.Process.Terminal
    assert (s.Process.User.UID, s.Process.User.GID) == (1000, 1000)
    assert list(s.Process.Capabilities.Bounding) == ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    assert list(s.Process.Capabilities.Effective) == list(s.Process.Capabilities.Permitted)
    assert s.Process.NoNewPrivileges and s.Process.Rlimits[0].Type == "RLIMIT_NOFILE"
    assert [m.destination for m in s.Mounts] == ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys"]
    assert [n.Type for n in s.Linux.Namespaces] == ["mount", "pid", "ipc", "uts"]
    assert "/proc/kcore" in s.Linux.MaskedPaths and "/proc/sys" in s.Linux.ReadonlyPaths
    assert not s.Linux.HasField("Resources") and s.Linux.CgroupsPath == ""


def test_create_container_request_round_trips(oci, pb, busybox_rootfs):
    res = pb.oci.LinuxResources(Memory=pb.oci.LinuxMemory(Limit=64 << 20))
    s = oci.spec(busybox_rootfs, ["/bin/true"], namespaces=("mount", ("ipc", "/proc/1/ns/ipc")), resources=res,
                 cgroups_path="/kt/c1", annotations={"a": "b"}, terminal=True)
    req = oci.create_container_request("c1", s, sandbox_pidns=True)
    back = pb.agent.CreateContainerRequest.FromString(req.SerializeToString())
    assert back == req
    assert (back.container_id, back.exec_id, back.sandbox_pidns) == ("c1", "c1", True)
    assert back.OCI.Linux.Namespaces[1].Path == "/proc/1/ns/ipc"
    assert back.OCI.Linux.Resources.Memory.Limit == 64 << 20
    assert back.OCI.Process.Terminal and back.OCI.Annotations["a"] == "b"
    ex = oci.exec_process_request("c1", "e1", ["/bin/true"], uid=65534, gid=65534)
    back = pb.agent.ExecProcessRequest.FromString(ex.SerializeToString())
    assert back.exec_id == "e1" and back.process.User.UID == 65534
    assert not back.process.HasField("Capabilities")  # the runtime sends none for exec


# --- sandbox_agent ------------------------------------------------------------------------------------------

def test_sandbox_agent_runs_in_a_private_mount_namespace(sandbox_agent, pb):
    pid = sandbox_agent.pid
    assert os.path.realpath(f"/proc/{pid}/exe") == os.path.realpath(AGENT)
    assert os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    mine = [line for line in sandbox_agent.mounts() if line.split()[4] == "/run"]
    assert mine and mine[-1].partition(" - ")[2].split()[:2] == ["tmpfs", "kata-run"]
    with open("/proc/self/mountinfo") as f:
        assert " kata-run " not in f.read()  # the host does not see it
    # the agent's /run (seen through /proc/<pid>/root) holds only what the fixture made
    assert sorted(os.listdir(f"/proc/{pid}/root/run")) == ["kata-containers", "sandbox-ns"]
    c = sandbox_agent.connect(pb)
    assert c.health().status == pb.health.HealthCheckResponse.SERVING


def test_sandbox_agent_snapshots_and_leak_check(sandbox_agent, pb):
    before = sandbox_agent.snapshot()
    assert before["children"] == [] and before["cgroups"] == [] and before["rss_kib"] > 0
    c = sandbox_agent.connect(pb)
    for _ in range(20):
        c.health()
    c.close()
    sandbox_agent.check_no_leaks(before)
    # the checker does see leaks
    leaky = dict(before, fds=before["fds"] + 1, children=[1], cgroups=["/sys/fs/cgroup/x/" + sandbox_agent.token])
    leaky["mounts"] = before["mounts"].copy()
    leaky["mounts"][("/run/kata-containers/x/rootfs", "bind", "x")] += 1
    with pytest.raises(AssertionError) as e:
        assert_no_leaks(before, leaky)
    msg = str(e.value)
    assert "fds" in msg and "mounts left" in msg and "cgroups left" in msg and "processes left" in msg


def test_descendants_and_cgroup_scan(sandbox_agent):
    assert sandbox_agent.child_pids() == []  # the agent alone spawns nothing
    sh = subprocess.Popen(["sh", "-c", "sleep 30 & wait"])
    try:
        for _ in range(200):
            kids = descendants(os.getpid())
            if len(kids) >= 2:
                break
            threading.Event().wait(0.01)
        assert sh.pid in kids and len(kids) >= 2  # sh and its sleep
    finally:
        for pid in reversed(descendants(sh.pid)):
            os.kill(pid, signal.SIGKILL)
        sh.kill()
        sh.wait()
    cg = f"/sys/fs/cgroup/pids/{sandbox_agent.token}-probe"
    os.mkdir(cg)
    try:
        assert sandbox_agent.cgroups() == [cg]
    finally:
        os.rmdir(cg)
    assert sandbox_agent.cgroups() == []


def test_ctl_run_reports_a_blocked_method(sandbox_agent_factory, busybox_rootfs, tmp_path):
    """Stable whatever the agent implements: the allowlist blocks CreateSandbox."""
    cfg = tmp_path / "agent.toml"
    cfg.write_text('[endpoints]\nallowed = ["GuestDetailsRequest"]\n')
    a = sandbox_agent_factory(args=["--config", str(cfg)])
    p = subprocess.run([CTL, "-a", a.addr, "run", "--id", a.cid(), busybox_rootfs, "--", "true"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1
    assert p.stderr == "kata-agent-ctl: CreateSandbox: UNIMPLEMENTED: CreateSandboxRequest is blocked\n"


# --- kata-agent-ctl run against a fake agent ------------------------------------------------------------------

class FakeAgent:
    """A ttrpc server implementing the container RPCs by running the command with chroot on the host (no
    namespaces, mounts or cgroups): enough to check what `kata-agent-ctl run` sends and how it pumps stdio."""

    def __init__(self, pb, path, fail=None):
        self.pb, self.fail, self.calls, self.reqs = pb, fail or {}, [], {}
        self.lock = threading.Lock()
        self.procs = {}
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        wlock = threading.Lock()
        f = conn.makefile("rb")
        while True:
            hdr = f.read(HDR.size)
            if len(hdr) < HDR.size:
                return
            n, sid, mtype, _ = HDR.unpack(hdr)
            data = f.read(n)
            if mtype == T_REQUEST:
                threading.Thread(target=self.handle, args=(conn, wlock, sid, data), daemon=True).start()

    def handle(self, conn, wlock, sid, data):
        pb = self.pb
        req = pb.ttrpc.Request.FromString(data)
        m = req.method
        in_cls = getattr(pb.agent, pb.agent.DESCRIPTOR.services_by_name["AgentService"].methods_by_name[m]
                         .input_type.name)
        r = in_cls.FromString(req.payload)
        with self.lock:
            self.calls.append(m)
            self.reqs.setdefault(m, []).append(r)
        try:
            if m in self.fail:
                raise RpcError(UNIMPLEMENTED, self.fail[m])
            out = getattr(self, m, lambda r: pb.empty.Empty())(r)
            resp = pb.ttrpc.Response(payload=out.SerializeToString())
        except RpcError as e:
            resp = pb.ttrpc.Response(status=pb.ttrpc.Status(code=e.code, message=e.message))
        payload = resp.SerializeToString()
        with wlock:
            conn.sendall(HDR.pack(len(payload), sid, T_RESPONSE, 0) + payload)

    def StartContainer(self, r):
        spec = self.reqs["CreateContainer"][-1].OCI
        root, cwd = spec.Root.Path, spec.Process.Cwd
        env = dict(e.split("=", 1) for e in spec.Process.Env)
        self.procs[r.container_id] = subprocess.Popen(
            list(spec.Process.Args), env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, preexec_fn=lambda: (os.chroot(root), os.chdir(cwd)))
        return self.pb.empty.Empty()

    def _read(self, r, stream):
        data = os.read(getattr(self.procs[r.container_id], stream).fileno(), r.len)
        if not data:
            raise RpcError(13, "read meet eof")
        return self.pb.agent.ReadStreamResponse(data=data)

    def ReadStdout(self, r):
        return self._read(r, "stdout")

    def ReadStderr(self, r):
        return self._read(r, "stderr")

    def WriteStdin(self, r):
        os.write(self.procs[r.container_id].stdin.fileno(), r.data)
        return self.pb.agent.WriteStreamResponse(len=len(r.data))

    def CloseStdin(self, r):
        self.procs[r.container_id].stdin.close()
        return self.pb.empty.Empty()

    def SignalProcess(self, r):
        self.procs[r.container_id].send_signal(r.signal)
        return self.pb.empty.Empty()

    def WaitProcess(self, r):
        rc = self.procs[r.container_id].wait()
        return self.pb.agent.WaitProcessResponse(status=-rc if rc < 0 else rc)

    def close(self):
        self.srv.close()
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.fixture
def fake_agent(pb, tmp_path):
    made = []

    def make(**kw):
        path = str(tmp_path / f"fake{len(made)}.sock")
        made.append(FakeAgent(pb, path, **kw))
        return made[-1], "unix://" + path

    yield make
    for f in made:
        f.close()


def ctl_run(addr, *args, input=None, timeout=30):
    return subprocess.run([CTL, "-a", addr, "run"] + list(args), input=input, capture_output=True,
                          timeout=timeout)


def test_ctl_run_sequence_output_and_exit_status(fake_agent, busybox_rootfs):
    fake, addr = fake_agent()
    p = ctl_run(addr, "--id", "c-1", "--hostname", "h1", "-e", "A=1", "--cwd", "/tmp", "--user", "0:0",
                busybox_rootfs, "--", "sh", "-c", 'echo "out $A $(pwd)"; echo err >&2; exit 3', input=b"")
    assert (p.returncode, p.stdout, p.stderr) == (3, b"out 1 /tmp\n", b"err\n")
    calls = fake.calls
    assert calls[:3] == ["CreateSandbox", "CreateContainer", "StartContainer"]
    assert calls[-3:] == ["WaitProcess", "RemoveContainer", "DestroySandbox"]
    assert {"ReadStdout", "ReadStderr", "CloseStdin"} <= set(calls[3:-3])
    sb = fake.reqs["CreateSandbox"][0]
    assert (sb.hostname, sb.sandbox_id) == ("h1", "c-1")
    cc = fake.reqs["CreateContainer"][0]
    assert (cc.container_id, cc.exec_id) == ("c-1", "c-1")
    s = cc.OCI
    assert s.Root.Path == busybox_rootfs and s.Hostname == "h1" and not s.Process.Terminal
    assert list(s.Process.Args) == ["sh", "-c", 'echo "out $A $(pwd)"; echo err >&2; exit 3']
    assert s.Process.Env[0] == "A=1" and any(e.startswith("PATH=") for e in s.Process.Env)
    assert [n.Type for n in s.Linux.Namespaces] == ["mount", "pid", "ipc", "uts"]
    assert [m.destination for m in s.Mounts] == ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys"]
    assert list(s.Process.Capabilities.Bounding) == ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    assert all(r.len == 32768 for r in fake.reqs["ReadStdout"])
    assert fake.reqs["RemoveContainer"][0].timeout == 10
    assert fake.reqs["WaitProcess"][0].exec_id == "c-1"


def test_ctl_run_forwards_stdin_in_chunks(fake_agent, busybox_rootfs):
    fake, addr = fake_agent()
    data = bytes(range(256)) * 1000  # 256 KB: several WriteStdin calls
    p = ctl_run(addr, busybox_rootfs, "--", "cat", input=data)
    assert p.returncode == 0 and p.stdout == data, p.stderr
    assert len(fake.reqs["WriteStdin"]) >= 8 and fake.calls.count("CloseStdin") == 1
    p = ctl_run(addr, "--no-sandbox", busybox_rootfs, "--", "true", input=b"")
    assert p.returncode == 0 and fake.calls.count("CreateSandbox") == 1 and fake.calls.count("DestroySandbox") == 1


def test_ctl_run_forwards_signals(fake_agent, busybox_rootfs):
    fake, addr = fake_agent()
    p = subprocess.Popen([CTL, "-a", addr, "run", busybox_rootfs, "--", "sleep", "100"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for _ in range(500):
        if "ReadStdout" in fake.calls:
            break
        threading.Event().wait(0.01)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=20)
    assert p.returncode == signal.SIGTERM, err  # the agent reports the signal number
    assert fake.reqs["SignalProcess"][0].signal == signal.SIGTERM


def test_ctl_run_error_cleans_up(fake_agent, busybox_rootfs):
    fake, addr = fake_agent(fail={"CreateContainer": "CreateContainer is not implemented"})
    p = ctl_run(addr, "--id", "c-2", busybox_rootfs, "--", "true")
    assert p.returncode == 1
    assert p.stderr == b"kata-agent-ctl: CreateContainer: UNIMPLEMENTED: CreateContainer is not implemented\n"
    assert fake.calls == ["CreateSandbox", "CreateContainer", "DestroySandbox"]


def test_ctl_run_usage_errors(busybox_rootfs):
    for args in ([], [busybox_rootfs], [busybox_rootfs, "--"], ["--user", "x", busybox_rootfs, "--", "true"],
                 ["-e", "novalue", busybox_rootfs, "--", "true"], ["./no/such/rootfs", "--", "true"]):
        p = ctl_run("unix:///nonexistent", *args)
        assert p.returncode == 2, (args, p.stderr)
