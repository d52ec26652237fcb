"""The agent as PID 1 (the VM's init), here in a new pid, mount and UTS namespace with a fresh /proc and
/run: it does the init mounts it needs, serves, runs containers, reaps orphans that are reparented to it,
survives SIGTERM (init ignores it) and ends with DestroySandbox.

What cannot be tested here: a real early boot (no /proc, /sys, /dev mounted yet, cgroups mounted by the
agent); the VM end-to-end recipe (shared/reference/vm-e2e.md) covers that. On this machine the host's /sys,
/dev and cgroup mounts are already there, so the agent keeps them (it only mounts what is missing)."""
import os
import signal
import subprocess
import time

import pytest

from conftest import AGENT, descendants
from test_containers import Session
from ttrpc_client import Client, wait_for_socket

SCRIPT = ('mount -t tmpfs -o mode=755 init-run /run && exec "$@"')


@pytest.fixture
def init_agent(tmp_path):
    sock = str(tmp_path / "agent.sock")
    cmd = tmp_path / "cmdline"
    cmd.write_text("agent.log=debug")
    log = open(tmp_path / "agent.log", "wb")
    p = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", "--mount", "--uts", "--propagation",
                          "private", "--", "sh", "-c", SCRIPT, "sh", AGENT, "--cmdline", str(cmd),
                          "--server-addr", f"unix://{sock}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_socket(sock, p)
        # the agent is unshare's child (pid 1 inside)
        agent_pid = descendants(p.pid)[0]
        yield p, agent_pid, sock, tmp_path
    finally:
        if p.poll() is None:
            for pid in [p.pid] + descendants(p.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            p.wait()
        log.close()


def test_agent_as_pid1(init_agent, pb, oci, busybox_rootfs):
    p, agent_pid, sock, tmp = init_agent
    with open(f"/proc/{agent_pid}/status") as f:
        nspid = [line.split()[1:] for line in f if line.startswith("NSpid:")][0]
    assert nspid[-1] == "1", nspid
    with open(f"/proc/{agent_pid}/mountinfo") as f:
        mounts = f.read()
    assert " /run " in mounts and " /proc " in mounts
    c = Client(pb, sock)
    assert c.health().status == 1

    class A:  # what Session needs of an agent
        def connect(self, pb_, timeout=30):
            return Client(pb_, sock, timeout=timeout)

        def cid(self, name="c"):
            return f"init-{name}"
    s = Session(A(), pb, oci)
    # a prestart hook leaves an orphan behind: it is reparented to the agent (pid 1) and reaped
    hook = tmp / "orphan.sh"
    hook.write_text("#!/bin/sh\n(sleep 0.3 &)\nexit 0\n")
    hook.chmod(0o755)
    sp = oci.spec(busybox_rootfs, ["/bin/sh", "-c", "echo pid=$$"])
    sp.Hooks.Prestart.add(Path=str(hook))
    s.run("init-c", sp)
    assert s.read_all("init-c") == b"pid=1\n"
    assert s.wait("init-c") == 0
    s.remove("init-c")
    time.sleep(0.8)
    zombies = [q for q in descendants(agent_pid) if open(f"/proc/{q}/stat").read().split(") ")[1][0] == "Z"]
    assert zombies == []
    os.kill(agent_pid, signal.SIGTERM)  # init ignores it
    time.sleep(0.3)
    assert p.poll() is None and c.health().status == 1
    c.call("grpc.AgentService", "DestroySandbox", pb.agent.DestroySandboxRequest())
    p.wait(10)
    assert p.returncode == 0
