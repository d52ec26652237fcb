"""Containers through the wire: the Kata runtime's sequence (CreateSandbox -> pause container -> app
container -> I/O -> WaitProcess -> ExecProcess -> SignalProcess -> RemoveContainer -> DestroySandbox), each
OCI setting checked from inside the container, process I/O semantics, and bad requests.

The agent runs in a private mount namespace (conftest.SandboxAgent) on this machine's real cgroups."""
import hashlib
import os
import signal
import time

import pytest

from ttrpc_client import (ALREADY_EXISTS, INTERNAL, INVALID_ARGUMENT, UNAVAILABLE, RpcError)

SVC = "grpc.AgentService"
HOUR_NS = 3600 * 10**9


class Session:
    """A connection to a sandboxed agent with the calls a shim makes."""

    def __init__(self, agent, pb, oci):
        self.agent, self.pb, self.oci = agent, pb, oci
        self.c = agent.connect(pb, timeout=60)

    def call(self, method, req, resp_cls=None, timeout_ns=60 * 10**9):
        return self.c.call(SVC, method, req, resp_cls, timeout_ns=timeout_ns)

    def create_sandbox(self, **kw):
        self.call("CreateSandbox", self.pb.agent.CreateSandboxRequest(**kw))

    def create(self, cid, spec, **kw):
        self.call("CreateContainer", self.oci.create_container_request(cid, spec, **kw))

    def start(self, cid):
        self.call("StartContainer", self.pb.agent.StartContainerRequest(container_id=cid))

    def run(self, cid, spec, **kw):
        self.create(cid, spec, **kw)
        self.start(cid)

    def read_all(self, cid, exec_id="", stream="ReadStdout", limit=1 << 30):
        out = bytearray()
        while len(out) < limit:
            try:
                r = self.call(stream, self.pb.agent.ReadStreamRequest(container_id=cid, exec_id=exec_id, len=32768),
                              self.pb.agent.ReadStreamResponse)
            except RpcError as e:
                assert e.code == INTERNAL and "eof" in e.message, e
                return bytes(out)
            out += r.data
        return bytes(out)

    def wait(self, cid, exec_id=""):
        return self.call("WaitProcess", self.pb.agent.WaitProcessRequest(container_id=cid, exec_id=exec_id),
                         self.pb.agent.WaitProcessResponse).status

    def remove(self, cid, timeout=10):
        self.call("RemoveContainer", self.pb.agent.RemoveContainerRequest(container_id=cid, timeout=timeout))

    def exec(self, cid, exec_id, args, **kw):
        self.call("ExecProcess", self.oci.exec_process_request(cid, exec_id, args, **kw))

    def signal(self, cid, exec_id, sig):
        self.call("SignalProcess", self.pb.agent.SignalProcessRequest(container_id=cid, exec_id=exec_id, signal=sig))

    def sh(self, cid, script, rootfs, **spec_kw):
        """Run sh -c script as a container; return (exit status, stdout, stderr)."""
        self.run(cid, self.oci.spec(rootfs, ["/bin/sh", "-c", script], **spec_kw))
        out = self.read_all(cid)
        err = self.read_all(cid, stream="ReadStderr")
        status = self.wait(cid)
        self.remove(cid)
        return status, out.decode(errors="replace"), err.decode(errors="replace")


@pytest.fixture
def s(sandbox_agent, pb, oci):
    return Session(sandbox_agent, pb, oci)


def test_kata_sequence(s, sandbox_agent, busybox_rootfs, pb):
    """The order the Kata runtime uses, with a pause container and an app container."""
    a = sandbox_agent
    before = a.snapshot()
    sid = a.cid("sandbox")
    s.create_sandbox(hostname="kata-pod", sandbox_id=sid, dns=["nameserver 10.0.0.1", "search example.test"])
    # the guest's /etc/resolv.conf (in the agent's mount namespace) now carries the sandbox's DNS
    with open(f"/proc/{a.pid}/root/etc/resolv.conf") as f:
        assert f.read().split("\n")[:2] == ["nameserver 10.0.0.1", "search example.test"]
    s.run(sid, s.oci.spec(busybox_rootfs, ["/bin/sh", "-c", "sleep 1000"]))
    app = a.cid("app")
    s.run(app, s.oci.spec(busybox_rootfs, ["/bin/sh", "-c", "echo hello; echo oops >&2; hostname; exit 3"],
                          namespaces=("mount", "ipc", "uts")), sandbox_pidns=True)
    assert s.read_all(app) == b"hello\nkata-pod\n"
    assert s.read_all(app, stream="ReadStderr") == b"oops\n"
    assert s.wait(app) == 3
    # exec into the pause container, then kill everything in it
    s.exec(sid, "e1", ["/bin/sh", "-c", "echo from-exec $$; cat /proc/1/cmdline | tr '\\0' ' '"])
    out = s.read_all(sid, "e1").decode()
    assert out.startswith("from-exec ") and "sleep 1000" in out
    assert s.wait(sid, "e1") == 0
    s.signal(sid, "", signal.SIGKILL)
    assert s.wait(sid) == signal.SIGKILL
    s.remove(app)
    s.remove(sid)
    s.call("DestroySandbox", pb.agent.DestroySandboxRequest())
    a.proc.wait(10)  # the agent stops after DestroySandbox, as upstream
    assert a.proc.returncode == 0


def test_output_before_wait_is_not_lost_and_eof_is_an_error(s, sandbox_agent, busybox_rootfs):
    cid = sandbox_agent.cid()
    s.run(cid, s.oci.spec(busybox_rootfs, ["/bin/sh", "-c", "echo quick"]))
    time.sleep(0.3)  # the process is long gone before the host reads
    assert s.read_all(cid) == b"quick\n"
    assert s.wait(cid) == 0
    s.remove(cid)


def test_64mib_stdout_with_checksum(s, sandbox_agent, busybox_rootfs):
    cid = sandbox_agent.cid()
    s.run(cid, s.oci.spec(busybox_rootfs, ["/bin/sh", "-c",
                                           "dd if=/dev/zero bs=1048576 count=64 2>/dev/null | tr '\\0' 'k'"]))
    out = s.read_all(cid)
    assert len(out) == 64 << 20
    assert hashlib.sha256(out).hexdigest() == hashlib.sha256(b"k" * (64 << 20)).hexdigest()
    assert s.wait(cid) == 0
    s.remove(cid)


def test_stdin_roundtrip_and_close(s, sandbox_agent, busybox_rootfs, pb):
    cid = sandbox_agent.cid()
    s.run(cid, s.oci.spec(busybox_rootfs, ["/bin/sh", "-c", "tr a-z A-Z"]))
    data = b"hello stdin\n" * 20000  # more than a pipe holds: WriteStdin long-polls
    # write and read concurrently on one connection
    sid_w = s.c.send(SVC, "WriteStdin", pb.agent.WriteStreamRequest(container_id=cid, exec_id=cid, data=data))
    got, replies = b"", {}
    while len(got) < len(data):
        sid_r = s.c.send(SVC, "ReadStdout", pb.agent.ReadStreamRequest(container_id=cid, exec_id=cid, len=65536))
        while True:
            rsid, code, msg, payload = s.c.recv(timeout=30)
            if rsid == sid_r:
                assert code == 0, msg
                got += pb.agent.ReadStreamResponse.FromString(payload).data
                break
            replies[rsid] = (code, msg, payload)
    if sid_w not in replies:
        rsid, code, msg, payload = s.c.recv(timeout=30)
        replies[rsid] = (code, msg, payload)
    code, msg, payload = replies[sid_w]
    assert code == 0, msg
    assert pb.agent.WriteStreamResponse.FromString(payload).len == len(data)
    assert got == data.upper()
    s.call("CloseStdin", pb.agent.CloseStdinRequest(container_id=cid, exec_id=cid))
    assert s.read_all(cid) == b""
    assert s.wait(cid) == 0
    with pytest.raises(RpcError) as e:
        s.call("WriteStdin", pb.agent.WriteStreamRequest(container_id=cid, exec_id=cid, data=b"x"))
    assert "Cannot get writer" in e.value.message
    s.remove(cid)


def test_tty_session_with_resize(s, sandbox_agent, busybox_rootfs, pb):
    cid = sandbox_agent.cid()
    s.run(cid, s.oci.spec(busybox_rootfs, ["/bin/sh", "-c", "read x; stty size; tty; echo got-$x"], terminal=True))
    s.call("TtyWinResize", pb.agent.TtyWinResizeRequest(container_id=cid, exec_id=cid, row=42, column=117))
    s.call("WriteStdin", pb.agent.WriteStreamRequest(container_id=cid, exec_id=cid, data=b"abc\n"))
    out = s.read_all(cid).decode()
    assert "42 117" in out and "/dev/pts/" in out and "got-abc" in out, out
    assert s.wait(cid) == 0
    s.remove(cid)


def test_no_tty_resize_is_unavailable(s, sandbox_agent, busybox_rootfs, pb):
    cid = sandbox_agent.cid()
    s.run(cid, s.oci.spec(busybox_rootfs, ["/bin/sleep", "100"]))
    with pytest.raises(RpcError) as e:
        s.call("TtyWinResize", pb.agent.TtyWinResizeRequest(container_id=cid, exec_id=cid, row=1, column=1))
    assert e.value.code == UNAVAILABLE and "no tty" in e.value.message
    s.remove(cid)


def test_signal_and_wait_semantics(s, sandbox_agent, busybox_rootfs, pb):
    cid = sandbox_agent.cid()
    s.run(cid, s.oci.spec(busybox_rootfs, ["/bin/sleep", "1000"]))
    # several waits pending at once, all answered with the signal number
    sids = [s.c.send(SVC, "WaitProcess", pb.agent.WaitProcessRequest(container_id=cid, exec_id=""))
            for _ in range(3)]
    # sleep as pid 1 does not handle SIGTERM: upstream sends SIGKILL
    sids.append(s.c.send(SVC, "SignalProcess", pb.agent.SignalProcessRequest(container_id=cid, exec_id=cid,
                                                                             signal=signal.SIGTERM)))
    got = {}
    while len(got) < 4:
        rsid, code, msg, payload = s.c.recv(timeout=10)
        got[rsid] = (code, payload)
    assert got[sids[-1]][0] == 0
    for sid in sids[:-1]:
        assert got[sid][0] == 0
        assert pb.agent.WaitProcessResponse.FromString(got[sid][1]).status == signal.SIGKILL
    s.remove(cid)


def test_exec_user_env_cwd_and_exit_code(s, sandbox_agent, busybox_rootfs):
    cid = sandbox_agent.cid()
    s.run(cid, s.oci.spec(busybox_rootfs, ["/bin/sleep", "1000"]))
    s.exec(cid, "x1", ["/bin/sh", "-c", "id -u; id -g; id -G; pwd; echo $FOO; exit 7"], uid=1000, gid=1000,
           additional_gids=(10, 20), cwd="/tmp", env=("FOO= bar ", s.oci.PATH))
    assert s.read_all(cid, "x1").decode().split("\n") == ["1000", "1000", "1000 10 20", "/tmp", "bar", ""]
    assert s.wait(cid, "x1") == 7
    with pytest.raises(RpcError) as e:  # a waited exec'd process is gone, as upstream
        s.wait(cid, "x1")
    assert "Invalid exec id" in e.value.message
    s.remove(cid)


def test_bad_requests_keep_the_agent_serving(s, sandbox_agent, busybox_rootfs, pb, tmp_path):
    cid = sandbox_agent.cid()
    cases = [
        ("unknown container", "StartContainer", pb.agent.StartContainerRequest(container_id="nope"), INTERNAL,
         "Invalid container id"),
        ("bad id", "CreateContainer",
         s.oci.create_container_request("../x", s.oci.spec(busybox_rootfs, ["/bin/true"])), INVALID_ARGUMENT,
         "invalid container id"),
        ("missing OCI", "CreateContainer", pb.agent.CreateContainerRequest(container_id=cid), INVALID_ARGUMENT,
         "no OCI"),
        ("missing rootfs", "CreateContainer",
         s.oci.create_container_request(cid, s.oci.spec(str(tmp_path / "nope"), ["/bin/true"])), INVALID_ARGUMENT,
         "does not exist"),
        ("missing binary", "CreateContainer",
         s.oci.create_container_request(cid, s.oci.spec(busybox_rootfs, ["/no/such/binary"])), INTERNAL,
         "/no/such/binary"),
        ("invalid seccomp", "CreateContainer",
         s.oci.create_container_request(cid, s.oci.spec(busybox_rootfs, ["/bin/true"], seccomp=pb.oci.LinuxSeccomp(
             DefaultAction="SCMP_ACT_ALLOW", Syscalls=[pb.oci.LinuxSyscall(Names=["mkdir"], Action="SCMP_ACT_NOPE")]))),
         INVALID_ARGUMENT, "SCMP_ACT_NOPE"),
        ("unknown capability", "CreateContainer",
         s.oci.create_container_request(cid, s.oci.spec(busybox_rootfs, ["/bin/true"], caps=("CAP_NOPE",))),
         INVALID_ARGUMENT, "CAP_NOPE"),
    ]
    before = sandbox_agent.snapshot()
    for name, method, req, code, text in cases:
        with pytest.raises(RpcError) as e:
            s.call(method, req)
        assert e.value.code == code, (name, e.value)
        assert text.lower() in e.value.message.lower(), (name, e.value.message)
    sandbox_agent.check_no_leaks(before)
    # the id is free again after the failed creates, and a duplicate is refused
    s.run(cid, s.oci.spec(busybox_rootfs, ["/bin/sleep", "100"]))
    with pytest.raises(RpcError) as e:
        s.create(cid, s.oci.spec(busybox_rootfs, ["/bin/true"]))
    assert e.value.code == ALREADY_EXISTS
    assert s.c.health().status == 1
    s.remove(cid)
