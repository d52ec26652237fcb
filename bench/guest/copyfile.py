#!/usr/bin/python3
"""bench/guest/copyfile: CopyFile of a 1 GiB file in 1 MiB chunks (the Kata runtime's chunking) through the
wire to tmpfs, in MiB/s, against `cp` of the same file to the same tmpfs as the ceiling, in the same run.

The agent runs in a private mount namespace with a tmpfs on /run (as in a Kata guest, and as the tests run it);
the source file is on /dev/shm. Clients:
  - C, writev: bench/guest/copyfile_client -m writev (the chunk goes from the mmap'd source to the socket, the
    client copies nothing: this measures the agent),
  - C, queue: the same with protobuf-c + ttrpc_client_queue/flush (two copies of each chunk in the client),
  - Python: a raw socket client (hand-encoded prefix, sendmsg of the chunk), to show what a slow client costs.
A reference without RPC (the file through a socket pair into pwrite on the same tmpfs) shows what any
socket-based transfer costs on the machine, between the agent's figure and cp's.
Each pipelines W requests (default 16). A warm-up round (not counted) is checked byte for byte.
Target (issue #4): >= 1 GiB/s.
Usage: bench/guest/copyfile.py [--size-mib 1024] [--chunk 1048576] [--rounds 3] [--window 16] [--build DIR]"""
import argparse
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
NS_SCRIPT = ('mount -t tmpfs -o mode=755,size=80% kata-run /run && mkdir -p /run/kata-containers && exec "$@"')
MiB = 1 << 20


def sh(*argv, **kw):
    return subprocess.run(argv, check=True, **kw)


def build(build_dir):
    if not os.path.exists(os.path.join(build_dir, "build.ninja")):
        sh("meson", "setup", build_dir, "--buildtype=release", "-Db_ndebug=true", cwd=REPO, stdout=subprocess.DEVNULL)
    sh("ninja", "-C", build_dir, "kata-agent", "bench/copyfile_client", stdout=subprocess.DEVNULL)


def wait_sock(path, proc):
    for _ in range(500):
        if proc.poll() is not None:
            raise RuntimeError("agent exited early")
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(path)
            return
        except OSError:
            time.sleep(0.01)
        finally:
            s.close()
    raise TimeoutError(path)


def make_source(path, size):
    with open(path, "wb") as f:
        block = os.urandom(16 * MiB)
        left = size
        while left > 0:  # distinct blocks: a shifted copy of one random block
            n = min(left, len(block))
            f.write(block[:n])
            block = block[1:] + block[:1]
            left -= n


# ---- the Python client: protobuf varints by hand ----

def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def field_bytes_hdr(num, length):
    return varint(num << 3 | 2) + varint(length)


def field_int(num, v):
    return varint(num << 3) + varint(v)


def prefix(stream, path, size, off, length):
    req = field_bytes_hdr(1, len(path)) + path + field_int(2, size) + field_int(3, 0o100644) + field_int(4, 0o750)
    if off:
        req += field_int(7, off)
    req += field_bytes_hdr(8, length)
    plen = len(req) + length
    env = (field_bytes_hdr(1, 17) + b"grpc.AgentService" + field_bytes_hdr(2, 8) + b"CopyFile" +
           field_bytes_hdr(3, plen))
    return struct.pack(">IIBB", len(env) + plen, stream, 1, 0) + env + req


def python_client(sock_path, src, guest_path, chunk, window):
    with open(src, "rb") as f:
        data = f.read()
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock_path)
    buf = b""

    def recv_one():
        nonlocal buf
        while True:
            if len(buf) >= 10:
                length, _sid, _t, _fl = struct.unpack(">IIBB", buf[:10])
                if len(buf) >= 10 + length:
                    body, buf = buf[10:10 + length], buf[10 + length:]
                    if body and body[0] == 0x0A:  # field 1 = status: an error
                        raise RuntimeError(f"CopyFile failed: {body!r}")
                    return
            more = s.recv(65536)
            if not more:
                raise EOFError
            buf += more

    view = memoryview(data)
    path = guest_path.encode()
    t0 = time.perf_counter()
    stream, off, in_flight = 1, 0, 0
    while True:
        n = min(chunk, len(data) - off)
        s.sendmsg([prefix(stream, path, len(data), off, n), view[off:off + n]])
        stream += 2
        in_flight += 1
        if in_flight >= window:
            recv_one()
            in_flight -= 1
        off += n
        if off >= len(data):
            break
    for _ in range(in_flight):
        recv_one()
    secs = time.perf_counter() - t0
    s.close()
    return len(data) / MiB / secs


def raw_socket(src, dest, chunk):
    """No RPC at all: the file through a unix socket pair into pwrite() on the same tmpfs (what any
    socket-based transfer costs on this machine)."""
    a, b = socket.socketpair()
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        a.close()
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        buf = bytearray(chunk)
        view, off = memoryview(buf), 0
        while True:
            n = b.recv_into(buf)
            if n == 0:
                break
            os.pwrite(fd, view[:n], off)
            off += n
        os._exit(0)
    b.close()
    with open(src, "rb") as f:
        a.sendfile(f)
    a.close()
    os.waitpid(pid, 0)
    secs = time.perf_counter() - t0
    size = os.path.getsize(dest)
    os.unlink(dest)
    return size / MiB / secs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--chunk", type=int, default=MiB)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--build", default=os.environ.get("KA_BUILD_DIR", os.path.join(REPO, "build-release")))
    args = ap.parse_args()
    build_dir = os.path.abspath(args.build)
    build(build_dir)
    size = args.size_mib * MiB
    tmp = tempfile.mkdtemp(prefix="bench-copyfile-")
    src = tempfile.mktemp(prefix="ka-bench-copyfile-", dir="/dev/shm")
    agent = None
    try:
        make_source(src, size)
        sock = os.path.join(tmp, "agent.sock")
        open(os.path.join(tmp, "cmdline"), "w").close()
        agent = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", NS_SCRIPT, "sh",
                                  os.path.join(build_dir, "kata-agent"), "--cmdline", os.path.join(tmp, "cmdline"),
                                  "--log-level", "warn", "--server-addr", "unix://" + sock],
                                 stdout=subprocess.DEVNULL)
        wait_sock(sock, agent)
        root = f"/proc/{agent.pid}/root"
        guest = "/run/kata-containers/shared/containers/bench-1gib"
        client = os.path.join(build_dir, "bench", "copyfile_client")
        results = {}

        def run_c(mode, check=False):
            out = sh(client, "-s", sock, "-f", src, "-p", guest, "-c", str(args.chunk), "-w", str(args.window),
                     "-m", mode, capture_output=True, text=True).stdout
            kv = dict(x.split("=", 1) for x in out.split())
            if check:
                sh("cmp", src, root + guest)
            os.unlink(root + guest)
            return float(kv["mib_s"])

        def run_cp():
            dest = root + "/run/kata-containers/cp-dest"
            t0 = time.perf_counter()
            sh("cp", src, dest)
            secs = time.perf_counter() - t0
            os.unlink(dest)
            return size / MiB / secs

        def run_py():
            v = python_client(sock, src, guest, args.chunk, args.window)
            os.unlink(root + guest)
            return v

        runs = [("C client, writev (zero-copy client)", lambda first: run_c("writev")),
                ("C client, ttrpc_client_queue/flush", lambda first: run_c("queue")),
                ("Python raw client", lambda first: run_py()),
                ("socket + pwrite, no RPC", lambda first: raw_socket(src, root + "/run/kata-containers/raw",
                                                                     args.chunk)),
                ("cp (ceiling)", lambda first: run_cp())]
        # warm-up, not counted: the first GiB written to a fresh tmpfs (and a fresh heap) pays for memory the
        # VM has never touched, whoever writes it
        run_c("writev", check=True)
        run_cp()
        for _ in range(args.rounds):
            for label, fn in runs:
                results.setdefault(label, []).append(fn(False))
        rss = 0
        with open(f"/proc/{agent.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    rss = int(line.split()[1])
        cp = statistics.median(results["cp (ceiling)"])
        print(f"CopyFile of {args.size_mib} MiB in {args.chunk} B chunks, {args.window} in flight, to tmpfs "
              f"({args.rounds} rounds, median; build {os.path.relpath(build_dir, REPO)})")
        for label, vals in results.items():
            med = statistics.median(vals)
            print(f"  {label:40s} {med:8.0f} MiB/s  ({med / 1024:.2f} GiB/s, {med / cp:.2f} x cp)  "
                  f"[{', '.join(f'{v:.0f}' for v in vals)}]")
        print(f"  agent peak RSS: {rss / 1024:.1f} MiB")
    finally:
        if agent is not None:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(20)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
        if os.path.exists(src):
            os.unlink(src)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
