"""GetIPTables / SetIPTables through the wire (spec §3.20).

The agent always runs in a private network namespace (`unshare --net`, which dies with it), so these tests
never read or change this machine's tables; every test checks that before sending anything. Real iptables
(nft backend, Debian's `iptables` package) is used, and in a private mount namespace fake iptables
binaries (a tmpfs over /usr/sbin) test the runner itself: argument and stdin pass-through, the output
bound, a program that never reads its stdin, timeouts, cancellation and a missing binary."""
import os
import subprocess
import time

import pytest

from conftest import AGENT, Agent
from ttrpc_client import DEADLINE_EXCEEDED, INTERNAL, RESOURCE_EXHAUSTED, Client, RpcError, wait_for_socket

SVC = "grpc.AgentService"

# iptables comes from scripts/install-deps.sh: a missing one fails these tests, it does not skip them


class WrappedAgent(Agent):
    """kata-agent started behind a prefix command that execs it (unshare, sh -c '... exec "$@"')."""

    def __init__(self, workdir, prefix, args=()):
        self.workdir = str(workdir)
        self.sock = os.path.join(self.workdir, "agent.sock")
        self.addr = f"unix://{self.sock}"
        self.log_path = os.path.join(self.workdir, "agent.log")
        self.cmdline_path = os.path.join(self.workdir, "cmdline")
        with open(self.cmdline_path, "w") as f:
            f.write("")
        argv = list(prefix) + [AGENT, "--cmdline", self.cmdline_path, "--log-level", "debug",
                               "--server-addr", self.addr] + list(args)
        env = {k: v for k, v in os.environ.items() if not k.startswith("KATA_AGENT_")}
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        try:
            wait_for_socket(self.sock, self.proc)
        except Exception:
            self.log.close()
            raise RuntimeError(f"agent did not start: {self.log_text()[-2000:]}")

    def netns(self):
        return os.readlink(f"/proc/{self.pid}/ns/net")


def assert_private_netns(agent):
    """Never talk to an agent that could touch this machine's tables."""
    assert agent.netns() != os.readlink("/proc/self/ns/net"), "the agent is in the host's network namespace"


@pytest.fixture
def wrapped_agents(tmp_path):
    started = []

    def start(prefix, args=()):
        d = tmp_path / f"agent{len(started)}"
        d.mkdir()
        a = WrappedAgent(d, prefix, args)
        started.append(a)
        assert_private_netns(a)
        return a

    yield start
    for a in started:
        rc = a.stop()
        if rc != 0:
            print(a.log_text()[-4000:])
        assert rc == 0, f"agent exited with status {rc} (sanitizer report or crash?)"


@pytest.fixture
def netns_agent(wrapped_agents):
    return wrapped_agents(["unshare", "--net", "--"])


def fake_bin_agent(wrapped_agents, tmp_path, scripts):
    """An agent in private network and mount namespaces whose /usr/sbin (and so /sbin) is a tmpfs holding
    only `scripts` ({name: shell script body})."""
    fake = tmp_path / "fake-sbin"
    fake.mkdir()
    for name, body in scripts.items():
        p = fake / name
        p.write_text("#!/bin/sh\n" + body)
        p.chmod(0o755)
    ns = ('mount -t tmpfs -o mode=755 fake-sbin /usr/sbin && cp -a "$FAKE"/. /usr/sbin/ && '
          '{ [ -L /sbin ] || mount -t tmpfs -o mode=755 fake-sbin /sbin; } && exec "$@"')
    prefix = ["unshare", "--net", "--mount", "--propagation", "private", "--", "env", f"FAKE={fake}",
              "sh", "-c", ns, "sh"]
    return wrapped_agents(prefix)


def connect(pb, agent, timeout=30):
    return Client(pb, agent.sock, timeout=timeout)


def get(c, pb, ipv6=False, timeout_ns=0):
    return c.call(SVC, "GetIPTables", pb.agent.GetIPTablesRequest(is_ipv6=ipv6), pb.agent.GetIPTablesResponse,
                  timeout_ns=timeout_ns).data


def set_(c, pb, data, ipv6=False, timeout_ns=0):
    return c.call(SVC, "SetIPTables", pb.agent.SetIPTablesRequest(is_ipv6=ipv6, data=data),
                  pb.agent.SetIPTablesResponse, timeout_ns=timeout_ns).data


def ns_save(agent, ipv6=False):
    """The agent's tables as seen by iptables-save run by the test inside the agent's network namespace."""
    tool = "ip6tables-save" if ipv6 else "iptables-save"
    return subprocess.run(["nsenter", f"--net=/proc/{agent.pid}/ns/net", tool], check=True,
                          capture_output=True, text=True).stdout


RULES_V4 = b"""*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:KATA-TEST - [0:0]
-A INPUT -s 10.1.2.3/32 -j DROP
-A INPUT -p tcp -m tcp --dport 8080 -j KATA-TEST
-A KATA-TEST -j ACCEPT
COMMIT
"""

RULES_V6 = b"""*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -s 2001:db8::1/128 -j DROP
COMMIT
"""


def test_set_then_get_ipv4(netns_agent, pb):
    with connect(pb, netns_agent) as c:
        assert b"10.1.2.3" not in get(c, pb)
        assert set_(c, pb, RULES_V4) == b""
        saved = get(c, pb).decode()
        for line in ["-A INPUT -s 10.1.2.3/32 -j DROP", "-A INPUT -p tcp -m tcp --dport 8080 -j KATA-TEST",
                     "-A KATA-TEST -j ACCEPT", ":FORWARD DROP"]:
            assert line in saved, saved
        assert saved.startswith("# Generated by iptables-save")
        # the same tables, seen from outside the agent
        assert "-A INPUT -s 10.1.2.3/32 -j DROP" in ns_save(netns_agent)
        # ... and IPv6 is a different table set
        assert b"10.1.2.3" not in get(c, pb, ipv6=True)
    assert "10.1.2.3" not in subprocess.run(["iptables-save"], capture_output=True, text=True).stdout


def test_set_then_get_ipv6(netns_agent, pb):
    with connect(pb, netns_agent) as c:
        assert set_(c, pb, RULES_V6, ipv6=True) == b""
        saved = get(c, pb, ipv6=True).decode()
        assert "-A INPUT -s 2001:db8::1/128 -j DROP" in saved, saved
        assert saved.startswith("# Generated by ip6tables-save")
        assert "2001:db8::1" in ns_save(netns_agent, ipv6=True)
        assert b"2001:db8" not in get(c, pb)


def test_invalid_rules_report_iptables_stderr(netns_agent, pb):
    with connect(pb, netns_agent) as c:
        set_(c, pb, RULES_V4)
        with pytest.raises(RpcError) as ei:
            set_(c, pb, b"*filter\n-A INPUT -j NO-SUCH-CHAIN\nCOMMIT\n")
        assert ei.value.code == INTERNAL
        msg = ei.value.message
        assert msg.startswith("/usr/sbin/iptables-restore failed (exit status ") or \
            msg.startswith("/sbin/iptables-restore failed (exit status "), msg
        assert "line 2 failed" in msg or "line 3 failed" in msg or "NO-SUCH-CHAIN" in msg, msg
        with pytest.raises(RpcError) as ei:
            set_(c, pb, b"this is not an iptables dump\n", ipv6=True)
        assert ei.value.code == INTERNAL and "ip6tables-restore failed" in ei.value.message
        assert "line 1 failed" in ei.value.message, ei.value.message
        # a failed restore is atomic: the earlier rules are intact, and the agent serves on
        assert "-A INPUT -s 10.1.2.3/32 -j DROP" in get(c, pb).decode()
        assert c.health().status == pb.health.HealthCheckResponse.SERVING


def test_empty_set_changes_nothing(netns_agent, pb):
    with connect(pb, netns_agent) as c:
        set_(c, pb, RULES_V4)
        assert set_(c, pb, b"") == b""
        assert "-A INPUT -s 10.1.2.3/32 -j DROP" in get(c, pb).decode()


def big_ruleset(n):
    lines = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
    lines += [f"-A INPUT -s 10.{i // 256 % 256}.{i % 256}.1/32 -p tcp -m tcp --dport {1 + i % 60000} -j DROP"
              for i in range(n)]
    return ("\n".join(lines + ["COMMIT", ""])).encode()


def test_large_ruleset_through_pipes_while_serving(netns_agent, pb):
    """~1.4 MiB in, ~1.3 MiB out: far beyond a pipe's 64 KiB, fed and drained by the loop while other
    calls are answered at once."""
    rules = big_ruleset(20000)
    assert len(rules) > 1 << 20
    with connect(pb, netns_agent, timeout=60) as c, connect(pb, netns_agent) as other:
        sid = c.send(SVC, "SetIPTables", pb.agent.SetIPTablesRequest(data=rules))
        t0 = time.monotonic()
        other.health()
        assert time.monotonic() - t0 < 1.0
        rsid, code, msg, _ = c.recv(timeout=60)
        assert (rsid, code) == (sid, 0), msg
        out = get(c, pb).decode()
        assert out.count("\n-A INPUT ") == 20000
        assert len(out) > 1 << 20


def test_huge_garbage_input_gets_a_clear_error(netns_agent, pb):
    """3.5 MiB that iptables-restore rejects at line 1: it exits without reading the rest (EPIPE)."""
    with connect(pb, netns_agent, timeout=60) as c:
        with pytest.raises(RpcError) as ei:
            set_(c, pb, b"garbage " * (448 << 10))
        assert ei.value.code == INTERNAL and "iptables-restore failed" in ei.value.message
        assert len(ei.value.message) < 1200
        assert c.health().status == pb.health.HealthCheckResponse.SERVING


def test_concurrent_gets_and_sets(netns_agent, pb):
    """Many calls in flight on one connection, each with its own child; all answered."""
    with connect(pb, netns_agent, timeout=60) as c:
        sids = {}
        for i in range(10):
            sids[c.send(SVC, "GetIPTables", pb.agent.GetIPTablesRequest(is_ipv6=bool(i % 2)))] = "get"
            sids[c.send(SVC, "SetIPTables", pb.agent.SetIPTablesRequest(data=RULES_V4))] = "set"
        for _ in sids:
            sid, code, msg, _ = c.recv(timeout=60)
            assert code == 0, (sids[sid], msg)
    assert not [p for p in netns_agent_children(netns_agent)]


def netns_agent_children(agent):
    from conftest import descendants
    return descendants(agent.pid)


# ---------------------------------------------------------------------------------------------------------
# The runner, with fake binaries


def test_restore_args_stdin_and_binaries(wrapped_agents, tmp_path, pb):
    """restore gets `--wait 5` and the exact bytes on stdin; each of the four names is the binary run
    (upstream runs ip6tables-save to restore IPv6 and looks for iptables-store: fixed)."""
    echo = 'echo "$0 $*"; cat\n'
    a = fake_bin_agent(wrapped_agents, tmp_path, {n: echo for n in
                       ["iptables-save", "iptables-restore", "ip6tables-save", "ip6tables-restore"]})
    data = bytes(range(256)) * 1000 + b"\n"
    with connect(pb, a) as c:
        assert set_(c, pb, data) == b"/usr/sbin/iptables-restore --wait 5\n" + data
        assert set_(c, pb, data, ipv6=True) == b"/usr/sbin/ip6tables-restore --wait 5\n" + data
        assert get(c, pb) == b"/usr/sbin/iptables-save \n"
        assert get(c, pb, ipv6=True) == b"/usr/sbin/ip6tables-save \n"


def test_output_over_the_bound_is_refused(wrapped_agents, tmp_path, pb):
    a = fake_bin_agent(wrapped_agents, tmp_path, {
        "iptables-save": "head -c 5000000 /dev/zero | tr '\\0' x\n",
        "ip6tables-save": "head -c 4000000 /dev/zero | tr '\\0' y\n",
    })
    with connect(pb, a) as c:
        with pytest.raises(RpcError) as ei:
            get(c, pb)
        assert ei.value.code == RESOURCE_EXHAUSTED and "output exceeds" in ei.value.message
        out = get(c, pb, ipv6=True)  # just under the bound: a reply that fits a frame
        assert out == b"y" * 4000000
        assert c.health().status == pb.health.HealthCheckResponse.SERVING


def test_stderr_and_signals_in_the_message(wrapped_agents, tmp_path, pb):
    a = fake_bin_agent(wrapped_agents, tmp_path, {
        "iptables-restore": "cat >/dev/null; echo 'first line' >&2; printf 'bad \\001\\377 bytes\\n' >&2; exit 4\n",
        "ip6tables-restore": "cat >/dev/null; kill -9 $$\n",
        "iptables-save": "head -c 100000 /dev/zero | tr '\\0' e >&2; exit 1\n",
    })
    with connect(pb, a) as c:
        with pytest.raises(RpcError) as ei:
            set_(c, pb, b"x\n")
        assert ei.value.message == "/usr/sbin/iptables-restore failed (exit status 4): first line; bad ?? bytes"
        with pytest.raises(RpcError) as ei:
            set_(c, pb, b"x\n", ipv6=True)
        assert ei.value.message == "/usr/sbin/ip6tables-restore failed (killed by signal 9)"
        with pytest.raises(RpcError) as ei:
            get(c, pb)
        msg = ei.value.message
        assert msg.startswith("/usr/sbin/iptables-save failed (exit status 1): ...eeee") and len(msg) < 1024


def test_program_that_never_reads_stdin(wrapped_agents, tmp_path, pb):
    """Upstream's 5 s bound on feeding stdin: the child is killed and the call fails clearly."""
    a = fake_bin_agent(wrapped_agents, tmp_path, {"iptables-restore": "exec sleep 60\n"})
    with connect(pb, a) as c, connect(pb, a) as other:
        t0 = time.monotonic()
        sid = c.send(SVC, "SetIPTables", pb.agent.SetIPTablesRequest(data=b"z" * (1 << 20)))
        other.health()
        _, code, msg, _ = c.recv(timeout=30)
        assert code == INTERNAL and msg.startswith("timeout waiting for stdin writer to complete"), msg
        assert 4.5 < time.monotonic() - t0 < 10
    deadline = time.time() + 5
    while netns_agent_children(a) and time.time() < deadline:
        time.sleep(0.05)
    assert not netns_agent_children(a), "the stuck iptables-restore was not killed"


def test_cancelled_call_kills_the_child(wrapped_agents, tmp_path, pb):
    a = fake_bin_agent(wrapped_agents, tmp_path, {"iptables-save": "exec sleep 60\n"})
    with connect(pb, a) as c:
        with pytest.raises(RpcError) as ei:
            get(c, pb, timeout_ns=300_000_000)
        assert ei.value.code == DEADLINE_EXCEEDED
        # a client that disconnects with a call pending
        c2 = connect(pb, a)
        c2.send(SVC, "GetIPTables", pb.agent.GetIPTablesRequest())
        time.sleep(0.2)
        c2.close()
        deadline = time.time() + 5
        while netns_agent_children(a) and time.time() < deadline:
            time.sleep(0.05)
        assert not netns_agent_children(a), "iptables-save children left running"
        assert c.health().status == pb.health.HealthCheckResponse.SERVING


def test_missing_binaries(wrapped_agents, tmp_path, pb):
    a = fake_bin_agent(wrapped_agents, tmp_path, {})
    with connect(pb, a) as c:
        for ipv6, name in [(False, "iptables"), (True, "ip6tables")]:
            with pytest.raises(RpcError) as ei:
                get(c, pb, ipv6=ipv6)
            assert (ei.value.code, ei.value.message) == (INTERNAL, f"{name}-save not found in /usr/sbin or /sbin")
            with pytest.raises(RpcError) as ei:
                set_(c, pb, b"*filter\nCOMMIT\n", ipv6=ipv6)
            assert ei.value.message == f"{name}-restore not found in /usr/sbin or /sbin"


def test_agent_shutdown_with_calls_pending(wrapped_agents, tmp_path, pb):
    """SIGTERM while a child runs: the call is dropped, the child killed, the agent exits 0 (fixture)."""
    a = fake_bin_agent(wrapped_agents, tmp_path, {"iptables-save": "exec sleep 60\n"})
    c = connect(pb, a)
    c.send(SVC, "GetIPTables", pb.agent.GetIPTablesRequest())
    time.sleep(0.2)
    kids = netns_agent_children(a)
    assert kids
    assert a.stop() == 0
    c.close()
    time.sleep(0.2)
    for pid in kids:
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
