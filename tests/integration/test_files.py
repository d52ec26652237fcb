"""CopyFile through the wire: files in chunks (checksum, modes, owners), directories and symlinks, interrupted
transfers, and every way out of /run/kata-containers (.., symlinked parents, absolute symlinks, /proc magic
links, a symlink as the final component) with a check that nothing appeared outside.

The agent runs in a private mount namespace with its own /run (conftest.SandboxAgent); its view of a path is
/proc/<pid>/root/<path>. /tmp is shared with the host, so an escape would show in the "outside" directory."""
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile

import pytest

from ttrpc_client import INVALID_ARGUMENT, RESOURCE_EXHAUSTED, RpcError

SVC = "grpc.AgentService"
BASE = "/run/kata-containers"
MiB = 1 << 20
NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED, FAILED_PRECONDITION = 5, 6, 7, 9
DIR_MODE = 0o750 | (1 << 31)  # what the runtime sends: Go's os.ModeDir | 0750


class Files:
    def __init__(self, agent, pb):
        self.agent, self.pb = agent, pb
        self.c = agent.connect(pb, timeout=60)

    def host(self, path):
        """The agent's path seen from the host."""
        return f"/proc/{self.agent.pid}/root{path}"

    def req(self, path, data=b"", offset=0, size=None, mode=0o100644, uid=0, gid=0, dir_mode=DIR_MODE):
        return self.pb.agent.CopyFileRequest(path=path, file_size=len(data) if size is None else size,
                                             file_mode=mode, dir_mode=dir_mode, uid=uid, gid=gid,
                                             offset=offset, data=data)

    def copy(self, path, data=b"", **kw):
        return self.c.call(SVC, "CopyFile", self.req(path, data, **kw))

    def copy_err(self, path, data=b"", **kw):
        with pytest.raises(RpcError) as ei:
            self.copy(path, data, **kw)
        return ei.value

    def copy_chunked(self, path, data, chunk=MiB, window=8, **kw):
        """The runtime's chunking (same file_size/mode/uid/gid in each), pipelined `window` deep."""
        sids, off = [], 0
        while True:
            piece = data[off:off + chunk]
            sids.append(self.c.send(SVC, "CopyFile", self.req(path, piece, offset=off, size=len(data), **kw)))
            if len(sids) >= window:
                self._ok(sids.pop(0))
            off += len(piece)
            if off >= len(data):
                break
        for sid in sids:
            self._ok(sid)

    def _ok(self, sid):
        rsid, code, msg, _ = self.c.recv()
        assert (rsid, code) == (sid, 0), msg


@pytest.fixture
def f(sandbox_agent, pb):
    return Files(sandbox_agent, pb)


@pytest.fixture
def outside():
    """A directory outside the base, visible to the agent at the same path (/tmp is shared)."""
    d = tempfile.mkdtemp(prefix="ka-outside-", dir="/tmp")
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def listing(root):
    out = []
    for d, dirs, files in os.walk(root):
        out += [os.path.relpath(os.path.join(d, x), root) for x in dirs + files]
    return sorted(out)


def test_small_file_mode_owner_and_parents(f):
    p = f"{BASE}/shared/containers/c1-0123456789abcdef-hosts"
    f.copy(p, b"127.0.0.1 localhost\n", mode=0o100640, uid=1000, gid=2000)
    st = os.stat(f.host(p))
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640
    assert (st.st_uid, st.st_gid) == (1000, 2000)
    with open(f.host(p), "rb") as fh:
        assert fh.read() == b"127.0.0.1 localhost\n"
    for d in (f"{BASE}/shared", f"{BASE}/shared/containers"):  # created with dir_mode
        assert stat.S_IMODE(os.stat(f.host(d)).st_mode) == 0o750
    # replaced atomically by a second copy; -1 keeps the owner of the new file (root, the agent)
    f.copy(p, b"::1 localhost\n", mode=0o644, uid=-1, gid=-1)
    st = os.stat(f.host(p))
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o644, 0, 0)
    # no dir_mode: created parents get 0755 (upstream would chmod them to 0)
    f.copy(f"{BASE}/nomode/x", b"1", dir_mode=0)
    assert stat.S_IMODE(os.stat(f.host(f"{BASE}/nomode")).st_mode) == 0o755
    # an empty file is one request
    f.copy(f"{BASE}/empty", b"")
    assert os.path.getsize(f.host(f"{BASE}/empty")) == 0
    # set-id bits are kept, as upstream (the host decides)
    f.copy(f"{BASE}/suid", b"#!/bin/sh\n", mode=0o104755, uid=0, gid=0)
    assert stat.S_IMODE(os.stat(f.host(f"{BASE}/suid")).st_mode) == 0o4755
    assert listing(f.host(BASE)) == ["empty", "nomode", "nomode/x", "shared", "shared/containers",
                                     "shared/containers/c1-0123456789abcdef-hosts", "suid"]


def test_large_file_in_chunks(f):
    data = os.urandom(24 * MiB + 12345)
    p = f"{BASE}/shared/containers/big.bin"
    fds = f.agent.fd_count()
    f.copy_chunked(p, data, mode=0o100600, uid=123, gid=456)
    with open(f.host(p), "rb") as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == hashlib.sha256(data).hexdigest()
    st = os.stat(f.host(p))
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o600, 123, 456)
    assert listing(f.host(f"{BASE}/shared/containers")) == ["big.bin"]  # no temp file left
    assert f.agent.fd_count() == fds
    # 4 MiB chunks (the frame limit is 4 MiB for the whole message, so a bit less)
    f.copy_chunked(f"{BASE}/big2", data[:10 * MiB], chunk=4 * MiB - 4096, window=2)
    with open(f.host(f"{BASE}/big2"), "rb") as fh:
        assert fh.read() == data[:10 * MiB]


def test_destination_appears_only_when_complete(f):
    data = os.urandom(3 * MiB)
    p = f"{BASE}/d/file"
    f.copy(p, data[:MiB], size=len(data))
    f.copy(p, data[MiB:2 * MiB], offset=MiB, size=len(data))
    assert not os.path.lexists(f.host(p))
    assert listing(f.host(f"{BASE}/d")) == []  # the partial data lives in an unnamed O_TMPFILE inode
    f.copy(p, data[2 * MiB:], offset=2 * MiB, size=len(data))
    with open(f.host(p), "rb") as fh:
        assert fh.read() == data


def test_interrupted_transfer_leaves_nothing_and_restarts(f, sandbox_agent, pb):
    data = os.urandom(4 * MiB)
    p = f"{BASE}/shared/containers/cut"
    c2 = sandbox_agent.connect(pb)
    for off in (0, MiB):  # half of it, then the client goes away
        c2.call(SVC, "CopyFile", f.req(p, data[off:off + MiB], offset=off, size=len(data)))
    c2.close()
    f.c.health()
    assert not os.path.lexists(f.host(p))
    assert listing(f.host(f"{BASE}/shared/containers")) == []
    # a chunk that does not continue a transfer is refused clearly
    e = f.copy_err(f"{BASE}/never", data[:10], offset=MiB, size=len(data))
    assert e.code == FAILED_PRECONDITION and "offset 0" in e.message
    # a gap is refused (and the inconsistent transfer dropped)
    e = f.copy_err(p, data[3 * MiB:], offset=3 * MiB, size=len(data))
    assert e.code == FAILED_PRECONDITION and "gap" in e.message, e.message
    # a new transfer of the same path starts over at offset 0
    f.copy_chunked(p, data)
    with open(f.host(p), "rb") as fh:
        assert fh.read() == data


def test_directories_and_symlinks(f):
    cm = f"{BASE}/shared/containers/c1-feed-configmap"
    ts = f"{cm}/..2024_01_01_00_00_00.1"
    f.copy(ts, mode=stat.S_IFDIR | 0o755, uid=1000, gid=1000)
    f.copy(f"{ts}/key", b"value\n", mode=0o644)
    f.copy(f"{cm}/..data", os.path.basename(ts).encode(), mode=stat.S_IFLNK | 0o777, size=0)
    f.copy(f"{cm}/key", b"..data/key", mode=stat.S_IFLNK | 0o777, size=0, uid=1000, gid=1000)
    st = os.lstat(f.host(ts))
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o755 and st.st_uid == 1000
    assert os.readlink(f.host(f"{cm}/..data")) == os.path.basename(ts)
    assert os.lstat(f.host(f"{cm}/key")).st_uid == 1000
    with open(f.host(f"{cm}/key"), "rb") as fh:  # followed on the host side, inside the agent's root
        assert fh.read() == b"value\n"
    # the ..data symlink is replaced atomically on update, as kubelet does
    ts2 = f"{cm}/..2024_01_02"
    f.copy(ts2, mode=stat.S_IFDIR | 0o755)
    f.copy(f"{ts2}/key", b"new\n", mode=0o644)
    f.copy(f"{cm}/..data", b"..2024_01_02", mode=stat.S_IFLNK | 0o777, size=0)
    with open(f.host(f"{cm}/key"), "rb") as fh:
        assert fh.read() == b"new\n"
    # an existing directory gets the new mode
    f.copy(ts, mode=stat.S_IFDIR | 0o700)
    assert stat.S_IMODE(os.lstat(f.host(ts)).st_mode) == 0o700
    # bad requests
    assert f.copy_err(f"{cm}/l", b"", mode=stat.S_IFLNK | 0o777).code == INVALID_ARGUMENT
    assert f.copy_err(f"{cm}/l", b"a\0b", mode=stat.S_IFLNK | 0o777).code == INVALID_ARGUMENT
    assert f.copy_err(f"{cm}/fifo", b"", mode=stat.S_IFIFO | 0o644).code == INVALID_ARGUMENT
    assert f.copy_err(f"{cm}/dev", b"", mode=stat.S_IFBLK | 0o644).code == INVALID_ARGUMENT
    assert f.copy_err(f"{cm}/key", b"x", mode=stat.S_IFDIR | 0o755).code == ALREADY_EXISTS  # a symlink
    assert f.copy_err(ts, b"x", mode=0o644).code == FAILED_PRECONDITION  # a file over a directory


def test_escapes_are_refused_and_nothing_appears_outside(f, outside):
    a = f.agent
    victim = os.path.join(outside, "victim")
    with open(victim, "w") as fh:
        fh.write("original")
    os.chmod(victim, 0o644)
    rel_up = "../" * 8
    links = {
        "abs": outside,                                     # absolute symlink out
        "rel": f"{rel_up}{outside.lstrip('/')}",           # relative symlink climbing out
        "proc": f"/proc/self/root{outside}",               # absolute through /proc
        "procrel": f"{rel_up}proc/self/root{outside}",     # relative to /proc, then the magic link
        "dangling": f"{outside}/made-by-agent",            # dangling: must not be created
        "sub": "inner/../../..",                           # climbs through a real dir
    }
    os.makedirs(f.host(f"{BASE}/inner"))
    for name, target in links.items():
        os.symlink(target, f.host(f"{BASE}/{name}"))
    os.symlink(victim, f.host(f"{BASE}/victim"))
    # procfs mounted inside the base (magic links below it): only in the agent's namespace
    os.makedirs(f.host(f"{BASE}/procfs"))
    subprocess.run(["nsenter", "-t", str(a.pid), "-m", "mount", "-t", "proc", "proc", f"{BASE}/procfs"],
                   check=True)
    try:
        cases = [
            (f"{BASE}/../../{outside.lstrip('/')}/x", PERMISSION_DENIED),
            (f"{BASE}/inner/../../..{outside}/x", PERMISSION_DENIED),
            (f"{BASE}/abs/x", PERMISSION_DENIED),
            (f"{BASE}/abs/newdir/x", PERMISSION_DENIED),
            (f"{BASE}/rel/x", PERMISSION_DENIED),
            (f"{BASE}/proc/x", PERMISSION_DENIED),
            (f"{BASE}/procrel/x", PERMISSION_DENIED),
            (f"{BASE}/dangling/x", PERMISSION_DENIED),
            (f"{BASE}/sub{outside}/x", PERMISSION_DENIED),
            (f"{BASE}/procfs/self/root{outside}/x", PERMISSION_DENIED),
            (f"{BASE}/procfs/self/cwd/x", PERMISSION_DENIED),
            (f"{BASE}/procfs/1/root{outside}/x", PERMISSION_DENIED),
            (f"{BASE}/procfs/thread-self/root{outside}/x", PERMISSION_DENIED),
            (f"/proc/self/root{outside}/x", INVALID_ARGUMENT),
            (f"/proc/{a.pid}/root{BASE}/x", INVALID_ARGUMENT),
            (f"{outside}/x", INVALID_ARGUMENT),
            (f"{BASE}X/x", INVALID_ARGUMENT),
            ("run/kata-containers/x", INVALID_ARGUMENT),
            (BASE, INVALID_ARGUMENT),
            (f"{BASE}/..", INVALID_ARGUMENT),
            ("", INVALID_ARGUMENT),
        ]
        for mode in (0o100644, stat.S_IFDIR | 0o777, stat.S_IFLNK | 0o777):
            for path, code in cases:
                data = b"/etc" if stat.S_ISLNK(mode) else b"pwned"
                e = f.copy_err(path, data, mode=mode)
                assert e.code == code, (path, mode, e.code, e.message)
            # chunks of a big transfer too (offset 0 then more)
            e = f.copy_err(f"{BASE}/abs/big", b"x" * MiB, size=2 * MiB, mode=mode)
            assert e.code in (PERMISSION_DENIED, INVALID_ARGUMENT)
        # the final component is a symlink: it is replaced, its target untouched
        f.copy(f"{BASE}/victim", b"replaced", mode=0o100666)
        assert os.path.isfile(f.host(f"{BASE}/victim")) and not os.path.islink(f.host(f"{BASE}/victim"))
        # a directory request on a symlink to outside does not chmod/chown the target
        os.symlink(outside, f.host(f"{BASE}/dirlink"))
        assert f.copy_err(f"{BASE}/dirlink", mode=stat.S_IFDIR | 0o777, uid=1234).code == ALREADY_EXISTS
        # a symlink to outside may be created (it is only a name), but nothing is written through it
        f.copy(f"{BASE}/made-link", outside.encode(), mode=stat.S_IFLNK | 0o777, size=0)
        assert f.copy_err(f"{BASE}/made-link/x", b"pwned").code == PERMISSION_DENIED
        assert f.c.health().status == 1  # still serving
    finally:
        subprocess.run(["nsenter", "-t", str(a.pid), "-m", "umount", f"{BASE}/procfs"], check=False)
    # nothing appeared or changed outside, and the agent's cwd got nothing either
    assert listing(outside) == ["victim"]
    st = os.stat(outside)
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o755, 0)
    with open(victim) as fh:
        assert fh.read() == "original"
    st = os.stat(victim)
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o644, 0)
    assert not os.path.exists(os.path.join(os.getcwd(), "x"))


def test_bounds_and_hostile_chunks(f):
    p = f"{BASE}/h"
    assert f.copy_err(p, b"abc", size=2).code == INVALID_ARGUMENT  # beyond file_size
    assert f.copy_err(p, b"", size=-1).code == INVALID_ARGUMENT
    assert f.copy_err(p, b"a", offset=-1, size=10).code == INVALID_ARGUMENT
    assert f.copy_err(p, b"a", size=(1 << 40) + 1).code == INVALID_ARGUMENT
    assert f.copy_err(p, b"a", offset=(1 << 63) - 1, size=(1 << 63) - 1).code == INVALID_ARGUMENT
    # more than the (tmpfs) file system holds is refused before any data is written
    e = f.copy_err(p, b"a", size=1 << 40)
    assert e.code == RESOURCE_EXHAUSTED and "no room" in e.message
    # file_size changing during a transfer
    f.copy(p, b"a" * 10, size=20)
    assert f.copy_err(p, b"a" * 10, offset=10, size=30).code == INVALID_ARGUMENT
    # a request over the 4 MiB frame is refused by the server, and the connection goes on
    sid = f.c.send(SVC, "CopyFile", f.req(p, b"z" * (4 * MiB), size=8 * MiB))
    rsid, code, msg, _ = f.c.recv()
    assert (rsid, code) == (sid, RESOURCE_EXHAUSTED), msg
    assert not os.path.lexists(f.host(p))
    assert f.c.health().status == 1
