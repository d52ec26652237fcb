"""Interop test: the reference Go ttrpc client (containerd/ttrpc + generated kata stubs) against the C agent.

Builds tests/interop (offline, Debian Go packages) into $KA_BUILD_DIR/interop, starts the agent on a
unix socket and runs the kata-interop checks (see tests/interop/go/kata-interop/main.go).

Environment:
  KA_BUILD_DIR  meson build dir (default /work/main/build)
  KA_AGENT      agent binary (default $KA_BUILD_DIR/kata-agent)
"""

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD_DIR = Path(os.environ.get("KA_BUILD_DIR", "/work/main/build"))
INTEROP_DIR = BUILD_DIR / "interop"
AGENT = Path(os.environ.get("KA_AGENT", str(BUILD_DIR / "kata-agent")))

START_TIMEOUT = 10.0  # seconds for the agent socket to accept
STOP_TIMEOUT = 5.0  # seconds between SIGTERM and SIGKILL
RUN_TIMEOUT = 120.0  # seconds for the whole kata-interop run


def _tail(path, n=60):
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    return "\n".join(lines[-n:])


def _accepts(sock_path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(0.5)
        s.connect(str(sock_path))
        return True
    except OSError:
        return False
    finally:
        s.close()


def build_interop():
    """Builds kata-interop (and the mock/bench servers) with tests/interop/build.sh; Go is required.

    Called from the test itself (not a fixture) so that a missing toolchain is a test FAILURE."""
    if shutil.which("go") is None:
        pytest.fail("Go toolchain not found: install golang-go and the packages listed in "
                    "tests/interop/build.sh (the interop test must run in CI, it is not optional)")
    r = subprocess.run(["bash", str(ROOT / "tests/interop/build.sh"), str(INTEROP_DIR)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    print(r.stdout)
    if r.returncode != 0:
        pytest.fail(f"tests/interop/build.sh failed (exit {r.returncode}):\n{r.stdout}")
    return INTEROP_DIR


@pytest.fixture
def spawn(tmp_path):
    """Yields spawn(argv, sock, name): starts a server process with output to tmp_path/<name>.log,
    waits until `sock` accepts, returns the log path. At teardown stops only the processes it
    started (SIGTERM, then SIGKILL after STOP_TIMEOUT)."""
    procs = []

    def start(argv, sock, name):
        log = tmp_path / f"{name}.log"
        with open(log, "wb") as logf:
            proc = subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=logf,
                                    stderr=subprocess.STDOUT, cwd=tmp_path)
        procs.append(proc)
        deadline = time.monotonic() + START_TIMEOUT
        while not _accepts(sock):
            if proc.poll() is not None:
                pytest.fail(f"{name} exited with {proc.returncode} before listening; log tail:\n{_tail(log)}")
            if time.monotonic() > deadline:
                pytest.fail(f"{name} socket {sock} not accepting after {START_TIMEOUT}s; log tail:\n{_tail(log)}")
            time.sleep(0.05)
        return log

    try:
        yield start
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def run_interop(bins, sock, log):
    """Runs kata-interop against sock; returns (exit code, output). Fails on timeout."""
    try:
        r = subprocess.run([str(bins / "kata-interop"), "-sock", str(sock)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        pytest.fail(f"kata-interop timed out after {RUN_TIMEOUT}s; output:\n{out}\n"
                    f"server log tail:\n{_tail(log)}")
    print(r.stdout)
    return r.returncode, r.stdout


def test_go_ttrpc_client_interop(spawn, tmp_path):
    """The reference Go ttrpc client talks to the agent over one connection: Health Check/Version,
    GetGuestDetails, an unimplemented call (ResizeVolume), unknown method (Unimplemented) and unknown
    service (InvalidArgument), out-of-order replies while a GetOOMEvent long-poll is pending until its
    1.5 s deadline, and 200 sequential calls. Every check must PASS."""
    bins = build_interop()
    if not AGENT.is_file() or not os.access(AGENT, os.X_OK):
        pytest.fail(f"agent binary {AGENT} not found (build it with ninja -C {BUILD_DIR}, or set KA_AGENT)")
    sock = tmp_path / "agent.sock"
    cmdline = tmp_path / "cmdline"  # not the host's /proc/cmdline
    cmdline.write_text("")
    log = spawn([AGENT, "--cmdline", str(cmdline), "--server-addr", f"unix://{sock}", "--log-level", "debug"], sock, "agent")
    rc, out = run_interop(bins, sock, log)
    assert rc == 0, f"kata-interop exit {rc}:\n{out}\nagent log tail ({log}):\n{_tail(log)}"


def test_interop_checks_against_mock(spawn, tmp_path):
    """Self-test of the checks: kata-interop passes against the Go mock agent (which mimics the
    ttrpc-rust server), and its concurrency check fails against the mock in -serial mode (one request
    at a time per connection, like a naive agent would)."""
    bins = build_interop()
    sock = tmp_path / "mock.sock"
    log = spawn([bins / "mock-agent", "-sock", sock], sock, "mock")
    rc, out = run_interop(bins, sock, log)
    assert rc == 0, f"kata-interop against mock-agent, exit {rc}:\n{out}"

    sock = tmp_path / "mock-serial.sock"
    log = spawn([bins / "mock-agent", "-serial", "-sock", sock], sock, "mock-serial")
    rc, out = run_interop(bins, sock, log)
    assert rc == 1, f"kata-interop against mock-agent -serial should fail, exit {rc}:\n{out}"
    assert "FAIL concurrency.out_of_order:" in out, out
    assert "7 passed, 1 failed" in out, out
