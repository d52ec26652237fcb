"""agent.log_vport: log lines go to the host's log reader on a vsock port instead of stdout.

The agent listens with `--log-addr unix://<tmp>/log.sock` (the test-only override of vsock://-1:<port>):
vsock cannot be exercised end to end on this machine (no vsock loopback transport), so what is not covered
here is only the AF_VSOCK socket itself (ka_addr_listen, shared with server_addr and covered by
test_listeners.py) and the hang-up semantics of a vsock peer; the VM end-to-end recipe covers real vsock.
Everything else is real behaviour through the real binary: buffering before a reader connects, live lines,
stdout left quiet, reconnecting, refusing a second reader, a reader that never reads, and the fallback to
stdout when the port cannot be listened on."""
import json
import os
import socket
import time

from ttrpc_client import UNIMPLEMENTED, Client

LOG_VPORT = "agent.log_vport=1025"


class LogReader:
    """The host's end: a connection to the agent's log socket, parsed into JSON records."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.buf = b""
        self.records = []

    def _recv(self, timeout):
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            return None
        if not data:
            raise EOFError("the agent closed the log connection")
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        for line in lines:
            self.records.append(json.loads(line))  # every line is whole JSON: never a broken one
        return data

    def until(self, pred, timeout=10.0):
        """Read until a record matching pred has arrived; returns it."""
        deadline = time.time() + timeout
        seen = 0
        while True:
            for r in self.records[seen:]:
                if pred(r):
                    return r
            seen = len(self.records)
            left = deadline - time.time()
            if left <= 0:
                raise TimeoutError(f"no matching log line within {timeout}s; last: {self.records[-3:]}")
            self._recv(left)

    def drain(self, quiet=0.5):
        """Read until nothing arrives for `quiet` seconds."""
        while self._recv(quiet) is not None:
            pass
        return self.records

    def closed_by_agent(self, timeout=5.0):
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(4096) == b""
        except ConnectionResetError:
            return True

    def close(self):
        self.sock.close()


def start(agent_factory, tmp_path, cmdline=LOG_VPORT, **kw):
    log_sock = str(tmp_path / "log.sock")
    a = agent_factory(cmdline=cmdline, args=["--log-addr", f"unix://{log_sock}"], **kw)
    return a, log_sock


def mark(c, name):
    """A call to a method that does not exist: the agent logs its name at debug ("stream N refused")."""
    sid = c.send("grpc.Health", name)
    rsid, code, _msg, _ = c.recv()
    assert (rsid, code) == (sid, UNIMPLEMENTED)


def has(text):
    return lambda r: text in r.get("msg", "")


def wait_fds(a, n, timeout=5.0):
    deadline = time.time() + timeout
    while a.fd_count() != n and time.time() < deadline:
        time.sleep(0.02)
    assert a.fd_count() == n, (n, sorted(os.listdir(f"/proc/{a.pid}/fd")))


def test_lines_wait_for_the_reader_then_stream_live(agent_factory, pb, tmp_path):
    a, log_sock = start(agent_factory, tmp_path)
    c = Client(pb, a.sock)
    try:
        assert c.health().status == 1  # logged before anyone reads
        mark(c, "BeforeReader")
        fds = a.fd_count()

        r1 = LogReader(log_sock)
        ann = r1.until(lambda r: r["msg"] == "announce")
        assert json.loads(ann["config"])["log_vport"] == 1025
        r1.until(lambda r: r["msg"] == "rpc call" and r.get("method") == "Check")
        r1.until(has("BeforeReader method does not exist"))

        # live: each call's debug line arrives while the reader stays connected
        for i in range(3):
            mark(c, f"Live{i}")
            r1.until(has(f"Live{i} method does not exist"), timeout=5)
        c.health()
        rec = r1.until(lambda r: r["msg"] == "rpc call" and r.get("stream", 0) > 1 and r["method"] == "Check")
        assert rec["level"] == "DEBG" and rec["status"] == "OK" and rec["subsystem"] == "rpc"

        # stdout only says where the lines went
        out = a.log_text()
        assert "log lines go to the log reader" in out and log_sock in out
        for text in ('"announce"', "rpc call", "BeforeReader", "Live0"):
            assert text not in out, (text, out)

        # a second reader while one is connected is closed at once; the first one keeps receiving
        r2 = LogReader(log_sock)
        assert r2.closed_by_agent()
        r2.close()
        mark(c, "AfterSecond")
        r1.until(has("AfterSecond method does not exist"))
        r1.until(has("refused a second log reader"))

        # a reader that goes away: the agent buffers again; the next reader gets the later lines
        r1.close()
        mark(c, "WhileNobodyReads")
        r3 = LogReader(log_sock)
        r3.until(has("WhileNobodyReads method does not exist"))
        assert not any("announce" == r["msg"] for r in r3.records), "delivered lines are not sent twice"
        mark(c, "Reconnected")
        r3.until(has("Reconnected method does not exist"))
        r3.close()

        # every reader connection is gone from the agent; it serves on
        wait_fds(a, fds)
        assert c.health().status == 1
        assert "WhileNobodyReads" not in a.log_text()
    finally:
        c.close()


def test_a_reader_that_never_reads_does_not_block_the_agent(agent_factory, pb, tmp_path):
    a, log_sock = start(agent_factory, tmp_path)
    reader = LogReader(log_sock)
    reader.until(lambda r: r["msg"] == "announce")
    pad = "x" * 400  # ~0.8 KiB lines: 3000 of them are twice the 1 MiB buffer plus the socket's own
    n = 3000
    c = Client(pb, a.sock, timeout=10)
    try:
        t0 = time.time()
        for batch in range(0, n, 100):  # pipelined, 100 calls at a time
            sids = [c.send("grpc.Health", f"Flood{i:05d}{pad}") for i in range(batch, batch + 100)]
            for sid in sids:
                rsid, code, _, _ = c.recv()
                assert (rsid, code) == (sid, UNIMPLEMENTED)
        elapsed = time.time() - t0
        t1 = time.time()
        assert c.health().status == 1
        assert time.time() - t1 < 1.0, "the agent answers at once while its log reader is stuck"
        assert elapsed < 60, elapsed

        # now read: the oldest lines made it into the socket, then the gap is reported, then the newest
        last = reader.until(has(f"Flood{n - 1:05d}"), timeout=20)
        assert last["level"] == "DEBG"
        recs = reader.records
        lost = [i for i, r in enumerate(recs) if r["msg"].startswith("log lines lost")]
        assert len(lost) == 1, [recs[i] for i in lost]
        notice = recs[lost[0]]
        assert notice["level"] == "WARN" and notice["lost"] > 0
        flood = [(i, int(r["msg"].split("Flood")[1][:5])) for i, r in enumerate(recs) if "Flood" in r["msg"]]
        nums = [k for _, k in flood]
        assert nums == sorted(nums) and len(set(nums)) == len(nums), "in order, none twice"
        before = [k for i, k in flood if i < lost[0]]
        after = [k for i, k in flood if i > lost[0]]
        assert before and after and before[0] == 0
        assert after[0] > before[-1] + 1, "the notice sits where lines are missing"
        assert len(nums) < n and len(nums) + notice["lost"] >= n, (len(nums), notice["lost"])

        # drained: lines flow live again
        mark(c, "AfterFlood")
        reader.until(has("AfterFlood method does not exist"), timeout=5)
        assert "Flood" not in a.log_text()
    finally:
        c.close()
        reader.close()


def test_config_file_key(agent_factory, pb, tmp_path):
    """`log_vport` in the config file does the same as agent.log_vport on the kernel command line."""
    cfg = tmp_path / "agent.toml"
    cfg.write_text('log_vport = 1025\n[endpoints]\nallowed = []\n')
    log_sock = str(tmp_path / "log.sock")
    a = agent_factory(args=["--config", str(cfg), "--log-addr", f"unix://{log_sock}"])
    r = LogReader(log_sock)
    try:
        assert json.loads(r.until(lambda x: x["msg"] == "announce")["config"])["log_vport"] == 1025
        with Client(pb, a.sock) as c:
            c.health()
        r.until(lambda x: x["msg"] == "rpc call" and x.get("method") == "Check")
    finally:
        r.close()
    assert '"announce"' not in a.log_text()


def test_cannot_listen_keeps_logging_to_stdout(agent_factory, pb, tmp_path):
    """A port that cannot be listened on (here a socket path in a missing directory; in a guest, no vsock)
    is a warning on stdout; the lines buffered until then and all later ones go to stdout."""
    a = agent_factory(cmdline=LOG_VPORT, args=["--log-addr", f"unix://{tmp_path}/missing/log.sock"])
    with Client(pb, a.sock) as c:
        assert c.health().status == 1
        mark(c, "OnStdout")
    deadline = time.time() + 5
    while "OnStdout" not in a.log_text() and time.time() < deadline:
        time.sleep(0.02)
    recs = a.log_records()
    msgs = [r["msg"] for r in recs]
    warn = [r for r in recs if "cannot listen" in r["msg"]]
    assert warn and warn[0]["level"] == "WARN" and "missing/log.sock" in warn[0]["msg"], msgs
    assert msgs.index("announce") < msgs.index(warn[0]["msg"]), "buffered lines first, in order"
    assert any("OnStdout" in m for m in msgs)
    assert not (tmp_path / "missing").exists()


def test_log_addr_without_log_vport_changes_nothing(agent_factory, pb, tmp_path):
    a, log_sock = start(agent_factory, tmp_path, cmdline="agent.log_vport=0")
    assert not os.path.exists(log_sock)
    assert "announce" in [r["msg"] for r in a.log_records()]


def test_buffered_lines_reach_stdout_at_exit_when_no_reader_came(agent_factory, pb, tmp_path):
    """Nothing is lost silently: what no reader took is written to stdout when the agent exits (so a
    startup error is visible on the console even with log_vport set); the socket file is removed."""
    a, log_sock = start(agent_factory, tmp_path)
    with Client(pb, a.sock) as c:
        mark(c, "NeverRead")
    assert "NeverRead" not in a.log_text()
    assert a.stop() == 0
    msgs = [r["msg"] for r in a.log_records()]
    assert "announce" in msgs and any("NeverRead" in m for m in msgs)
    assert not os.path.exists(log_sock)
