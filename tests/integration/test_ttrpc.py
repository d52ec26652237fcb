"""ttrpc server behaviour through the wire: dispatch of every method, status codes for bad input,
concurrency and ordering on one connection, many connections, limits, and robustness under hostile input."""
import os
import socket
import threading
import time

import pytest

from conftest import ctl
from ttrpc_client import (DEADLINE_EXCEEDED, HDR, INVALID_ARGUMENT, MAX_DATA, RESOURCE_EXHAUSTED, T_DATA,
                          T_REQUEST, UNIMPLEMENTED, Client, RpcError)



# Methods whose issue has not landed yet (README "Status"); everything else must be answered by a handler.
NOT_YET = set()


def agent_methods(pb):
    return pb.agent.DESCRIPTOR.services_by_name["AgentService"].methods


def test_health_and_version(client, pb):
    assert client.health().status == pb.health.HealthCheckResponse.SERVING
    v = client.call("grpc.Health", "Version", pb.health.CheckRequest(), pb.health.VersionCheckResponse)
    assert v.agent_version == "3.2.0-alpha0"
    assert v.grpc_version == "0.0.1"


def test_all_37_methods_are_dispatched(sandbox_agent_factory, pb, tmp_path):
    """Every AgentService method answers: a real reply (here mostly a clear error for an empty request), or
    UNIMPLEMENTED '<Method> is not implemented'. In a private mount namespace (CreateSandbox acts for real)
    with an empty fake sysfs (an empty OnlineCPUMem means "online all memory")."""
    sandbox_agent = sandbox_agent_factory(args=["--sysfs-root", str(tmp_path)])
    client = sandbox_agent.connect(pb)
    methods = agent_methods(pb)
    assert len(methods) == 37
    methods = sorted(methods, key=lambda m: m.name == "DestroySandbox")
    unimplemented = []
    for m in methods:
        req = pb.agent.__dict__.get(m.input_type.name)
        assert req is not None, m.input_type.name
        sid = client.send("grpc.AgentService", m.name, req(), timeout_ns=300_000_000)
        rsid, code, msg, _ = client.recv(timeout=5)
        assert rsid == sid
        if m.name == "DestroySandbox":
            continue  # sent last: the agent stops after it
        # GetOOMEvent is a long-poll: with no OOM it ends at its timeout_nano; the others answer at once,
        # either for real or as not implemented yet
        if code == UNIMPLEMENTED:
            assert msg == f"{m.name} is not implemented", (m.name, msg)
            unimplemented.append(m.name)
    assert sorted(unimplemented) == sorted(NOT_YET)


def test_unknown_service_and_method(client, pb):
    with pytest.raises(RpcError) as e:
        client.call("grpc.NoSuchService", "Check")
    assert e.value.code == INVALID_ARGUMENT and "grpc.NoSuchService" in e.value.message
    with pytest.raises(RpcError) as e:
        client.call("grpc.AgentService", "NoSuchMethod")
    assert e.value.code == UNIMPLEMENTED and "NoSuchMethod" in e.value.message
    assert client.health().status == 1


def test_even_stream_id_is_refused_on_that_stream(client, pb):
    client.send_frame(4, T_REQUEST, 0, client.request_bytes("grpc.Health", "Check"))
    sid, code, msg, _ = client.recv(timeout=5)
    assert (sid, code) == (4, INVALID_ARGUMENT) and "odd" in msg
    assert client.health().status == 1


def test_garbage_envelope_and_garbage_payload(client, pb):
    client.send_frame(1, T_REQUEST, 0, b"\xff\xff\xff")
    sid, code, msg, _ = client.recv(timeout=5)
    assert (sid, code) == (1, INVALID_ARGUMENT) and "envelope" in msg
    # a valid envelope whose payload is not a GuestDetailsRequest
    client.send_frame(3, T_REQUEST, 0, client.request_bytes("grpc.AgentService", "GetGuestDetails", b"\x0a\xff"))
    sid, code, msg, _ = client.recv(timeout=5)
    assert (sid, code) == (3, INVALID_ARGUMENT) and "GuestDetailsRequest" in msg
    # zero-length request: an empty envelope names no service
    client.send_frame(5, T_REQUEST, 0, b"")
    sid, code, msg, _ = client.recv(timeout=5)
    assert (sid, code) == (5, INVALID_ARGUMENT)
    client.next_id = 7
    assert client.health().status == 1


def test_data_and_unknown_frame_types(client, pb):
    client.send_frame(1, T_DATA, 1, b"abc")
    sid, code, msg, _ = client.recv(timeout=5)
    assert (sid, code) == (1, INVALID_ARGUMENT)
    client.send_frame(3, 9, 0, b"whatever")  # unknown types are ignored
    client.next_id = 5
    assert client.health().status == 1


def test_oversized_frame_gets_status_and_connection_survives(client, pb):
    big = 5 << 20
    client.sock.sendall(HDR.pack(big, 1, T_REQUEST, 0) + b"\0" * big)
    sid, code, msg, _ = client.recv(timeout=10)
    assert (sid, code) == (1, RESOURCE_EXHAUSTED) and "exceeds" in msg
    client.next_id = 3
    assert client.health().status == 1


def test_frame_of_exactly_4mib_is_accepted(client, pb):
    req = pb.health.CheckRequest(service="")
    envelope = client.request_bytes("grpc.Health", "Check", b"")
    pad = MAX_DATA - len(envelope) - 10
    req.service = "x" * pad
    data = client.request_bytes("grpc.Health", "Check", req.SerializeToString())
    # adjust to land exactly on the limit
    req.service = "x" * (pad - (len(data) - MAX_DATA))
    data = client.request_bytes("grpc.Health", "Check", req.SerializeToString())
    assert len(data) == MAX_DATA
    client.send_frame(1, T_REQUEST, 0, data)
    sid, code, _, payload = client.recv(timeout=10)
    assert (sid, code) == (1, 0)
    assert pb.health.HealthCheckResponse.FromString(payload).status == 1


def test_replies_come_in_completion_order(client, pb):
    """A pending long-poll does not hold up later calls on the same connection."""
    t0 = time.time()
    slow = client.send("grpc.AgentService", "GetOOMEvent", pb.agent.GetOOMEventRequest(), timeout_ns=500_000_000)
    fast = [client.send("grpc.Health", "Check", pb.health.CheckRequest()) for _ in range(10)]
    got = [client.recv(timeout=5) for _ in range(11)]
    order = [g[0] for g in got]
    assert order == fast + [slow]
    assert got[-1][1] == DEADLINE_EXCEEDED and got[-1][2] == "timeout"
    assert 0.45 <= time.time() - t0 < 3


def test_pipelined_burst(client, pb):
    n = 2000
    frame = client.request_bytes("grpc.Health", "Check", pb.health.CheckRequest().SerializeToString())
    blob = b"".join(HDR.pack(len(frame), 2 * i + 1, T_REQUEST, 0) + frame for i in range(n))
    threading.Thread(target=client.sock.sendall, args=(blob,), daemon=True).start()
    seen = set()
    for _ in range(n):
        sid, code, _, _ = client.recv(timeout=10)
        assert code == 0
        seen.add(sid)
    assert seen == {2 * i + 1 for i in range(n)}


def test_truncated_frame_then_close(agent, pb):
    s = socket.socket(socket.AF_UNIX)
    s.connect(agent.sock)
    s.sendall(HDR.pack(100, 1, T_REQUEST, 0) + b"\x0a\x02")
    s.close()
    s = socket.socket(socket.AF_UNIX)
    s.connect(agent.sock)
    s.sendall(b"\x00\x00\x00")  # truncated header
    s.shutdown(socket.SHUT_WR)
    s.settimeout(5)
    assert s.recv(10) == b""  # the agent closes its side
    s.close()
    with Client(pb, agent.sock) as c:
        assert c.health().status == 1


def test_disconnect_cancels_pending_long_polls(agent, pb):
    with Client(pb, agent.sock) as c:
        c.health()
    time.sleep(0.1)
    base = agent.fd_count()
    for _ in range(20):
        c = Client(pb, agent.sock)
        for _ in range(5):
            c.send("grpc.AgentService", "GetOOMEvent", pb.agent.GetOOMEventRequest())
        c.close()
    with Client(pb, agent.sock) as c:
        assert c.health().status == 1
    assert wait_fds(agent, base) == base
    cancelled = [r for r in agent.log_records() if r.get("status") == "CANCELLED"]
    assert len(cancelled) == 100


def test_many_connections_at_once(agent, pb):
    clients = [Client(pb, agent.sock) for _ in range(200)]
    try:
        for c in clients:
            c.send("grpc.Health", "Check", pb.health.CheckRequest())
        for c in clients:
            assert c.recv(timeout=10)[1] == 0
    finally:
        for c in clients:
            c.close()


def test_1000_connects_leave_fds_unchanged(agent, pb):
    with Client(pb, agent.sock) as c:
        c.health()
    time.sleep(0.1)
    base = agent.fd_count()
    for i in range(1000):
        s = socket.socket(socket.AF_UNIX)
        s.connect(agent.sock)
        if i % 3 == 0:
            s.sendall(HDR.pack(50, 1, T_REQUEST, 0))  # and hang up mid-frame
        s.close()
    with Client(pb, agent.sock) as c:
        assert c.health().status == 1
    assert wait_fds(agent, base) == base


def wait_fds(agent, want, timeout=10.0):
    """The agent's fd count once it has handled every hang-up (connections are closed asynchronously, and
    the sanitizer build is slow): returns as soon as it equals want, else the last count."""
    deadline = time.time() + timeout
    n = agent.fd_count()
    while n != want and time.time() < deadline:
        time.sleep(0.05)
        n = agent.fd_count()
    return n


def test_timeout_does_not_fire_for_quick_calls(client, pb):
    for _ in range(50):
        r = client.call("grpc.Health", "Check", pb.health.CheckRequest(), pb.health.HealthCheckResponse,
                        timeout_ns=1_000_000)
        assert r.status == 1


def test_metadata_is_tolerated(client, pb):
    sid = client.send("grpc.Health", "Check", pb.health.CheckRequest(),
                      metadata={"traceparent": "00-abc-def-01", "x": "y"})
    assert client.recv(timeout=5)[:2] == (sid, 0)


def test_each_rpc_is_logged_at_debug(client, agent, pb):
    client.health()
    time.sleep(0.1)
    recs = [r for r in agent.log_records() if r.get("method") == "Check"]
    assert recs, agent.log_text()
    r = recs[-1]
    for key in ("msg", "level", "ts", "name", "source", "pid", "subsystem", "stream", "duration_us", "status"):
        assert key in r, key
    assert r["level"] == "DEBG" and r["subsystem"] == "rpc" and r["status"] == "OK"
    assert r["name"] == "kata-agent" and r["pid"] == agent.pid


def test_client_reconnect_keeps_serving(agent, pb):
    for _ in range(5):
        with Client(pb, agent.sock) as c:
            assert c.health().status == 1
            c.send("grpc.AgentService", "GetOOMEvent", pb.agent.GetOOMEventRequest())
    assert agent.alive()


def test_ctl_health_version_and_guest_details(agent):
    out = ctl("health", addr=agent.addr).stdout
    assert '"status": "SERVING"' in out
    out = ctl("version", addr=agent.addr).stdout
    assert '"agentVersion": "3.2.0-alpha0"' in out and '"grpcVersion": "0.0.1"' in out
    out = ctl("guest-details", addr=agent.addr).stdout
    assert '"version": "3.2.0-alpha0"' in out


def test_ctl_reports_error_status(agent):
    p = ctl("call", "AddSwap", '{}', addr=agent.addr, check=False)
    assert p.returncode == 1
    assert "INVALID_ARGUMENT (code 3): a PCI path has 1 to 16 slots, not 0" in p.stderr
    p = ctl("call", "StartContainer", '{"containerId": "c1"}', addr=agent.addr, check=False)
    assert p.returncode == 1 and "INTERNAL (code 13): Invalid container id c1" in p.stderr
    p = ctl("call", "grpc.AgentService.GetOOMEvent", "{}", "-t", "0.2", addr=agent.addr, check=False)
    # options after the command are arguments; a bad argument count is a usage error
    assert p.returncode == 2
    p = ctl("-t", "0.2", "call", "GetOOMEvent", "{}", addr=agent.addr, check=False)
    assert p.returncode == 1 and "DEADLINE_EXCEEDED" in p.stderr
    p = ctl("call", "GetGuestDetails", '{"noSuchField": 1}', addr=agent.addr, check=False)
    assert p.returncode == 2 and "noSuchField" in p.stderr
