"""watchable-bind storages through the wire: a container's copy of a guest directory on the tmpfs over
/run/kata-containers/shared/containers/watchable, kept in sync every 2 s; a source too large to copy becomes a
bind mount; RemoveContainer leaves nothing behind; bad requests get a clear status.

The agent runs in a private mount namespace (conftest.SandboxAgent); the sources are made in it through
/proc/<agent pid>/root."""
import os
import signal
import time

import oci as _oci
from test_containers import SVC, Session
from ttrpc_client import INVALID_ARGUMENT, NOT_FOUND, UNIMPLEMENTED, RpcError

SHARED = "/run/kata-containers/shared/containers"
WATCHABLE = SHARED + "/watchable"


def in_agent(a, path):
    return f"/proc/{a.pid}/root{path}"


def write(a, path, data):
    with open(in_agent(a, path), "w") as f:
        f.write(data)


def wstorage(pb, source, mount_point):
    return pb.agent.Storage(driver="watchable-bind", source=source, fstype="bind", mount_point=mount_point,
                            options=["rbind", "ro"])


def mounts_at(a, path):
    """(fs type, source) of every mount at path in the agent's namespace."""
    out = []
    for line in a.mounts():
        left, _, right = line.partition(" - ")
        if left.split()[4] == path:
            r = right.split()
            out.append((r[0], r[1]))
    return out


def err_of(fn, *args):
    try:
        fn(*args)
    except RpcError as e:
        return e
    raise AssertionError("the call succeeded")


def cat(s, cid, exec_id, path):
    s.exec(cid, exec_id, ["/bin/cat", path])
    out = s.read_all(cid, exec_id)
    s.wait(cid, exec_id)
    return out.decode(errors="replace")


def start_with_config(s, a, rootfs, cid, source, mp):
    mounts = _oci.DEFAULT_MOUNTS + (("/etc/cfg", "bind", mp, ("rbind", "ro")),)
    s.run(cid, s.oci.spec(rootfs, ["/bin/sh", "-c", "sleep 1000"], mounts=mounts),
          storages=[wstorage(s.pb, source, mp)])


def warm_up(s, a, rootfs):
    """A first container and an exec: the agent keeps the first container's pid namespace and its own open
    from then on, which is not a leak of what follows."""
    cid = a.cid("first")
    s.run(cid, s.oci.spec(rootfs, ["/bin/sh", "-c", "sleep 1000"]))
    assert cat(s, cid, "w1", "/etc/hostname") is not None
    stop(s, cid)


def stop(s, cid):
    s.signal(cid, "", signal.SIGKILL)
    s.wait(cid)
    s.remove(cid)


def test_copy_is_kept_in_sync(sandbox_agent, pb, oci, rootfs_copy):
    a = sandbox_agent
    s = Session(a, pb, oci)
    cid = a.cid("w")
    source = f"{SHARED}/{cid}-src/configmap"
    os.makedirs(in_agent(a, source))
    write(a, source + "/key1", "v1")
    os.makedirs(in_agent(a, source + "/sub"))
    write(a, source + "/sub/key2", "nested")
    os.symlink("key1", in_agent(a, source + "/link"))
    warm_up(s, a, rootfs_copy)
    before = a.snapshot()
    mp = f"{WATCHABLE}/{cid}-configmap"
    start_with_config(s, a, rootfs_copy, cid, source, mp)
    assert mounts_at(a, WATCHABLE) == [("tmpfs", "tmpfs")]
    assert mounts_at(a, mp) == []  # a copy, not a mount
    assert cat(s, cid, "e1", "/etc/cfg/key1") == "v1"
    assert cat(s, cid, "e2", "/etc/cfg/sub/key2") == "nested"
    assert cat(s, cid, "e3", "/etc/cfg/link") == "v1"
    assert os.readlink(in_agent(a, mp + "/link")) == "key1"

    # a change to the source shows in the container within one period (2 s)
    t0 = time.time()
    write(a, source + "/key1", "v2 changed")
    write(a, source + "/key3", "new")
    os.unlink(in_agent(a, source + "/sub/key2"))
    n = 0
    while cat(s, cid, f"p{n}", "/etc/cfg/key3") != "new":
        n += 1
        assert time.time() - t0 < 3.5, "the change did not reach the container in time"
        time.sleep(0.1)
    assert cat(s, cid, "e4", "/etc/cfg/key1") == "v2 changed"
    assert not os.path.exists(in_agent(a, mp + "/sub/key2"))

    # a vanished source: the copy stays (a warning is logged) and the watch goes on
    os.rename(in_agent(a, source), in_agent(a, source + ".away"))
    time.sleep(2.5)
    assert cat(s, cid, "e5", "/etc/cfg/key1") == "v2 changed"
    assert "sync from" in a.log_text() and "the previous copy stays" in a.log_text()
    os.rename(in_agent(a, source + ".away"), in_agent(a, source))

    stop(s, cid)
    assert mounts_at(a, WATCHABLE) == [] and mounts_at(a, mp) == []
    assert not os.path.exists(in_agent(a, WATCHABLE))
    a.check_no_leaks(before)
    assert os.path.exists(in_agent(a, source + "/key1"))  # the source is untouched


def test_large_source_is_bind_mounted(sandbox_agent, pb, oci, rootfs_copy):
    a = sandbox_agent
    s = Session(a, pb, oci)
    cid = a.cid("big")
    source = f"{SHARED}/{cid}-src/secret"
    os.makedirs(in_agent(a, source))
    for i in range(20):
        write(a, f"{source}/k{i}", str(i))
    warm_up(s, a, rootfs_copy)
    before = a.snapshot()
    mp = f"{WATCHABLE}/{cid}-secret"
    start_with_config(s, a, rootfs_copy, cid, source, mp)
    assert len(mounts_at(a, mp)) == 1  # a bind mount of the source
    assert cat(s, cid, "e1", "/etc/cfg/k19") == "19"
    write(a, source + "/k5", "changed")
    assert cat(s, cid, "e2", "/etc/cfg/k5") == "changed"  # at once: it is the source itself

    # a second container sharing the storage takes a reference: the first removal keeps it mounted
    cid2 = a.cid("big2")
    start_with_config(s, a, rootfs_copy, cid2, source, mp)
    stop(s, cid)
    assert len(mounts_at(a, mp)) == 1
    assert cat(s, cid2, "e3", "/etc/cfg/k0") == "0"
    stop(s, cid2)
    assert mounts_at(a, mp) == [] and mounts_at(a, WATCHABLE) == []
    a.check_no_leaks(before)
    assert len(os.listdir(in_agent(a, source))) == 20


def test_grows_too_large_while_watched(sandbox_agent, pb, oci, busybox_rootfs):
    a = sandbox_agent
    s = Session(a, pb, oci)
    cid = a.cid("grow")
    source = f"{SHARED}/{cid}-src/cm"
    os.makedirs(in_agent(a, source))
    write(a, source + "/k", "v")
    warm_up(s, a, busybox_rootfs)
    before = a.snapshot()
    mp = f"{WATCHABLE}/{cid}-cm"
    s.run(cid, s.oci.spec(busybox_rootfs, ["/bin/sh", "-c", "sleep 1000"]), storages=[wstorage(pb, source, mp)])
    assert mounts_at(a, mp) == []
    for i in range(20):
        write(a, f"{source}/n{i}", "x")
    deadline = time.time() + 3.5
    while not mounts_at(a, mp):
        assert time.time() < deadline, "the storage did not become a bind mount"
        time.sleep(0.1)
    assert sorted(os.listdir(in_agent(a, mp))) == sorted(os.listdir(in_agent(a, source)))
    stop(s, cid)
    a.check_no_leaks(before)


def test_bad_requests(sandbox_agent, pb, oci, busybox_rootfs):
    a = sandbox_agent
    s = Session(a, pb, oci)
    os.makedirs(in_agent(a, SHARED + "/src"))
    write(a, SHARED + "/src/k", "v")
    warm_up(s, a, busybox_rootfs)
    before = a.snapshot()
    spec = oci.spec(busybox_rootfs, ["/bin/true"])
    cases = [
        (wstorage(pb, SHARED + "/missing", WATCHABLE + "/m"), NOT_FOUND, "watchable mount source not found"),
        (wstorage(pb, SHARED + "/src", "/tmp/elsewhere"), INVALID_ARGUMENT,
         "mount point /tmp/elsewhere is outside /run/kata-containers"),
        (wstorage(pb, SHARED + "/src", "/run/kata-containers/shared/x"), INVALID_ARGUMENT,
         "is not below /run/kata-containers/shared/containers/watchable"),
        (wstorage(pb, SHARED + "/src", WATCHABLE + "/../../../../../etc/x"), INVALID_ARGUMENT, ""),
        (wstorage(pb, "relative", WATCHABLE + "/m"), INVALID_ARGUMENT, "not an absolute path"),
    ]
    for i, (st, code, text) in enumerate(cases):
        cid = a.cid(f"bad{i}")
        e = err_of(s.call, "CreateContainer", oci.create_container_request(cid, spec, storages=[st]))
        assert e.code == code and text in e.message, (st.source, st.mount_point, e.code, e.message)
    # a sandbox storage: upstream takes watchable-bind storages for containers only
    e = err_of(s.call, "CreateSandbox", pb.agent.CreateSandboxRequest(
        hostname="h", sandbox_id=a.cid("sb"), storages=[wstorage(pb, SHARED + "/src", WATCHABLE + "/s")]))
    assert e.code == UNIMPLEMENTED and "only supported for a container's storages" in e.message, e
    a.check_no_leaks(before)
    assert not os.path.exists(in_agent(a, WATCHABLE))
    assert not os.path.exists("/tmp/elsewhere")


def test_destroy_sandbox_releases_watched_storages(sandbox_agent, pb, oci, busybox_rootfs):
    a = sandbox_agent
    s = Session(a, pb, oci)
    sid = a.cid("sandbox")
    s.create_sandbox(hostname="h", sandbox_id=sid)
    source = f"{SHARED}/{sid}-src/cm"
    os.makedirs(in_agent(a, source))
    write(a, source + "/k", "v")
    s.run(sid, s.oci.spec(busybox_rootfs, ["/bin/sh", "-c", "sleep 1000"]),
          storages=[wstorage(pb, source, f"{WATCHABLE}/{sid}-cm")])
    assert mounts_at(a, WATCHABLE) == [("tmpfs", "tmpfs")]
    s.call("DestroySandbox", pb.agent.DestroySandboxRequest())
    a.proc.wait(10)
    assert a.proc.returncode == 0


def test_storage_handlers_list(sandbox_agent, pb):
    c = sandbox_agent.connect(pb)
    d = c.call(SVC, "GetGuestDetails", pb.agent.GuestDetailsRequest(), pb.agent.GuestDetailsResponse)
    assert "watchable-bind" in d.agent_details.storage_handlers
