"""The debug console (agent.debug_console): a shell per connection on agent.debug_console_vport, relayed
through a pty by the event loop, and the console mode (no vport) with one shell on the console device.

vsock cannot be dialed on this machine, so the listening address is a unix socket given with the test-only
--debug-console-addr (the vsock address is the same listener code: ka_addr_listen, as the ttrpc server's);
the console device is a pty the test owns (--console), never the machine's /dev/console."""
import os
import pty
import re
import select
import socket
import time

import pytest

from conftest import descendants
from ttrpc_client import Client


def read_until(sock, needle, timeout=10):
    buf, deadline = b"", time.time() + timeout
    while needle not in buf:
        left = deadline - time.time()
        assert left > 0, f"{needle!r} not seen in {buf[-400:]!r}"
        r, _, _ = select.select([sock], [], [], left)
        if r:
            chunk = sock.recv(4096) if isinstance(sock, socket.socket) else os.read(sock, 4096)
            if not chunk:
                break
            buf += chunk
    assert needle in buf, buf[-400:]
    return buf


def wait_gone(agent, pids, timeout=10):
    deadline = time.time() + timeout
    while set(pids) & set(descendants(agent.pid)):
        assert time.time() < deadline, f"shells {pids} still alive"
        time.sleep(0.05)


@pytest.fixture
def dc_agent(agent_factory, tmp_path):
    addr = tmp_path / "dc.sock"
    a = agent_factory(cmdline="agent.debug_console agent.debug_console_vport=1026",
                      args=["--debug-console-addr", f"unix://{addr}"])
    a.dc_path = str(addr)
    return a


def connect(a):
    s = socket.socket(socket.AF_UNIX)
    s.connect(a.dc_path)
    return s


def test_shell_per_connection(dc_agent, pb):
    a = dc_agent
    c = Client(pb, a.sock)
    c.health()  # the start-up probe's hang-up has been handled: the fd count is stable while c stays open
    before = a.fd_count()
    one, two = connect(a), connect(a)
    try:
        one.sendall(b"echo one-$((20+22)); tty; echo done-$((1+1))\n")
        out = read_until(one, b"done-2\r\n")
        assert b"one-42\r\n/dev/pts/" in out, out  # a shell with a terminal of its own
        two.sendall(b"echo two-$$\n")
        read_until(two, b"two-")
        shells = descendants(a.pid)
        assert len(shells) >= 2, shells  # one shell per connection, children of the agent
        # exit ends the session: the agent closes the connection and reaps the shell
        one.sendall(b"exit\n")
        one.settimeout(10)
        while one.recv(4096):
            pass
    finally:
        one.close()
        two.close()  # a client hanging up: the shell gets SIGHUP
    wait_gone(a, shells)
    deadline = time.time() + 5
    while a.fd_count() != before and time.time() < deadline:
        time.sleep(0.05)
    assert a.fd_count() == before, (before, a.fd_count(), os.listdir(f"/proc/{a.pid}/fd"))
    c.close()
    assert "debug console listening on unix://" in a.log_text()


def test_large_output_is_relayed_whole(dc_agent):
    s = connect(dc_agent)
    try:
        s.sendall(b"stty -echo; seq 1 20000; echo END-$((40+2))\n")
        out = read_until(s, b"END-42\r\n", timeout=20)
        out = re.sub(rb"\x1b\[[?0-9;]*[a-zA-Z]", b"", out)  # bash's bracketed-paste switches
        lines = [l for l in out.replace(b"\r", b"").split(b"\n") if l.isdigit()]
        assert lines == [str(i).encode() for i in range(1, 20001)]
    finally:
        s.close()


def test_no_console_without_the_option(agent_factory, tmp_path):
    addr = tmp_path / "dc.sock"
    a = agent_factory(cmdline="agent.debug_console_vport=1026", args=["--debug-console-addr", f"unix://{addr}"])
    a.alive()
    assert not addr.exists()
    assert descendants(a.pid) == []


def test_console_mode_runs_a_shell_and_restarts_it(agent_factory):
    """agent.debug_console without a vport: an interactive shell on the console device, started again when
    it exits."""
    master, slave = pty.openpty()
    name = os.ttyname(slave)
    try:
        a = agent_factory(cmdline="agent.debug_console", args=["--console", name])
        os.write(master, b"echo first-$((6*7))\n")
        read_until(master, b"first-42")
        os.write(master, b"exit\n")
        time.sleep(0.5)
        deadline = time.time() + 10
        while "starting another" not in a.log_text():
            assert time.time() < deadline
            time.sleep(0.05)
        time.sleep(1.5)  # respawned after 1 s
        os.write(master, b"echo second-$((7*6))\n")
        read_until(master, b"second-42")
    finally:
        os.close(slave)
        os.close(master)
