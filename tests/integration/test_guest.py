"""Guest control through the wire (spec §3.24–3.28): GetGuestDetails, OnlineCPUMem, MemHotplugByProbe,
ReseedRandomDev, SetGuestDateTime.

sysfs is a FAKE tree built under the test's temporary directory and handed to the agent with
--sysfs-root: nothing here onlines a real CPU or memory block. ReseedRandomDev runs on the real
/dev/random (it only adds entropy). SetGuestDateTime never changes this machine's clock: the validation
errors are checked through the wire, and the valid path is checked up to settimeofday(2) in an agent
started without CAP_SYS_TIME (the call then fails with EPERM); actually setting the clock is exercised
only in a VM. The cpuset widening runs with real containers in a private mount namespace."""
import os
import stat
import subprocess
import threading
import time

import pytest

from test_containers import Session
from ttrpc_client import DEADLINE_EXCEEDED, INTERNAL, INVALID_ARGUMENT, Client, RpcError

SVC = "grpc.AgentService"
CAP_SYS_TIME = 25


class FakeSysfs:
    """devices/system/{cpu,memory} as the kernel lays them out, with plain files."""

    def __init__(self, root, cpus=(None, "1", "0", "0"), mems=("1", "0", "0"), online="0-3",
                 block_size="8000000\n", probe=True):
        self.root = str(root)
        self.cpu = os.path.join(self.root, "devices/system/cpu")
        self.mem = os.path.join(self.root, "devices/system/memory")
        os.makedirs(self.cpu)
        os.makedirs(self.mem)
        for i, v in enumerate(cpus):
            self.add_cpu(i, v)
        for i, v in enumerate(mems):
            os.makedirs(os.path.join(self.mem, f"memory{i}"))
            self.write(f"devices/system/memory/memory{i}/online", v + "\n")
        self.write("devices/system/cpu/online", online + "\n")
        # entries the onlining must ignore
        os.makedirs(os.path.join(self.cpu, "cpufreq"))
        os.makedirs(os.path.join(self.cpu, "cpu1x"))
        self.write("devices/system/cpu/cpu1x/online", "0\n")
        self.write("devices/system/memory/auto_online_blocks", "offline\n")
        if block_size is not None:
            self.write("devices/system/memory/block_size_bytes", block_size)
        if probe:
            self.write("devices/system/memory/probe", "")

    def add_cpu(self, i, online):
        os.makedirs(os.path.join(self.cpu, f"cpu{i}"), exist_ok=True)
        if online is not None:  # cpu0 usually has no online file
            self.write(f"devices/system/cpu/cpu{i}/online", online + "\n")

    def write(self, rel, text):
        with open(os.path.join(self.root, rel), "w") as f:
            f.write(text)

    def read(self, rel):
        with open(os.path.join(self.root, rel)) as f:
            return f.read()

    def cpu_online(self, i):
        return self.read(f"devices/system/cpu/cpu{i}/online").strip()

    def mem_online(self, i):
        return self.read(f"devices/system/memory/memory{i}/online").strip()


@pytest.fixture
def fake_sysfs(tmp_path):
    return FakeSysfs(tmp_path / "sysfs")


@pytest.fixture
def gagent(agent_factory, fake_sysfs):
    return agent_factory(args=["--sysfs-root", fake_sysfs.root])


@pytest.fixture
def gc(gagent, pb):
    c = Client(pb, gagent.sock, timeout=30)
    yield c
    c.close()


def online(c, pb, nb_cpus=0, cpu_only=False, wait=False, timeout_ns=0):
    return c.call(SVC, "OnlineCPUMem", pb.agent.OnlineCPUMemRequest(wait=wait, nb_cpus=nb_cpus, cpu_only=cpu_only),
                  pb.empty.Empty, timeout_ns=timeout_ns)


def details(c, pb, **kw):
    return c.call(SVC, "GetGuestDetails", pb.agent.GuestDetailsRequest(**kw), pb.agent.GuestDetailsResponse)


# ---------------------------------------------------------------------------------------------------------
# GetGuestDetails


def test_guest_details(gc, pb):
    d = details(gc, pb, mem_block_size=True, mem_hotplug_probe=True)
    assert d.mem_block_size_bytes == 0x8000000
    assert d.support_mem_hotplug_probe
    ad = d.agent_details
    assert ad.version == "3.2.0-alpha0"
    assert list(ad.storage_handlers) == ["blk", "9p", "virtio-fs", "ephemeral", "overlayfs", "mmioblk", "local",
                                         "scsi", "nvdimm", "watchable-bind", "bind"]
    assert list(ad.device_handlers) == []
    assert ad.supports_seccomp
    assert not ad.init_daemon
    d = details(gc, pb)
    assert d.mem_block_size_bytes == 0 and not d.support_mem_hotplug_probe


def test_guest_details_without_probe_or_block_size(agent_factory, tmp_path, pb):
    fs = FakeSysfs(tmp_path / "s", block_size=None, probe=False)
    a = agent_factory(args=["--sysfs-root", fs.root])
    with Client(pb, a.sock) as c:
        d = details(c, pb, mem_block_size=True, mem_hotplug_probe=True)
        assert d.mem_block_size_bytes == 0 and not d.support_mem_hotplug_probe
        fs.write("devices/system/memory/block_size_bytes", "zz\n")
        with pytest.raises(RpcError) as ei:
            details(c, pb, mem_block_size=True)
        assert ei.value.code == INTERNAL and "Invalid block size" in ei.value.message


# ---------------------------------------------------------------------------------------------------------
# OnlineCPUMem


def test_online_cpus_only(gc, pb, fake_sysfs):
    online(gc, pb, nb_cpus=2, cpu_only=True)
    assert [fake_sysfs.cpu_online(i) for i in (1, 2, 3)] == ["1", "1", "1"]
    assert [fake_sysfs.mem_online(i) for i in (0, 1, 2)] == ["1", "0", "0"]
    assert fake_sysfs.read("devices/system/cpu/cpu1x/online") == "0\n"  # not a cpuN entry


def test_online_some_cpus_and_memory(gc, pb, fake_sysfs):
    """nb_cpus counts CPUs to online: only the first offline one (lowest number) here; `wait` is ignored
    (the reply always comes when everything is done, as upstream)."""
    online(gc, pb, nb_cpus=1, cpu_only=False, wait=True)
    assert [fake_sysfs.cpu_online(i) for i in (1, 2, 3)] == ["1", "1", "0"]
    assert [fake_sysfs.mem_online(i) for i in (0, 1, 2)] == ["1", "1", "1"]


def test_online_memory_only(gc, pb, fake_sysfs):
    online(gc, pb)
    assert [fake_sysfs.mem_online(i) for i in (0, 1, 2)] == ["1", "1", "1"]
    assert [fake_sysfs.cpu_online(i) for i in (2, 3)] == ["0", "0"]
    online(gc, pb, cpu_only=True)  # nothing to do at all
    assert [fake_sysfs.cpu_online(i) for i in (2, 3)] == ["0", "0"]


def test_online_many_memory_blocks(agent_factory, tmp_path, pb):
    """Hundreds of blocks are onlined a batch per loop pass; other calls are served in between."""
    fs = FakeSysfs(tmp_path / "s", mems=["0"] * 3000)
    a = agent_factory(args=["--sysfs-root", fs.root])
    with Client(pb, a.sock, timeout=60) as c:
        online(c, pb)
        assert all(fs.mem_online(i) == "1" for i in range(3000))


def test_cpus_that_never_appear_fail_after_100_retries(gc, gagent, pb, fake_sysfs):
    """3 CPUs wanted, 2 offline: 100 rounds 50 ms apart on a loop timer, then upstream's error. The loop
    keeps serving meanwhile."""
    t0 = time.monotonic()
    sid = gc.send(SVC, "OnlineCPUMem", pb.agent.OnlineCPUMemRequest(nb_cpus=3, cpu_only=True))
    with Client(pb, gagent.sock) as other:
        for _ in range(10):
            t = time.monotonic()
            other.health()
            assert time.monotonic() - t < 0.5
            time.sleep(0.1)
    rsid, code, msg, _ = gc.recv(timeout=30)
    elapsed = time.monotonic() - t0
    assert (rsid, code) == (sid, INTERNAL)
    assert msg.startswith("failed to online 3 CPU(s) after 100 retries"), msg
    assert 4.0 < elapsed < 10, elapsed
    assert [fake_sysfs.cpu_online(i) for i in (2, 3)] == ["1", "1"]


def test_cpu_that_appears_late_is_onlined(gc, pb, fake_sysfs):
    """A hot-plugged CPU whose sysfs entry shows up after the request (as with a slow VMM)."""
    def plug():
        time.sleep(0.5)
        fake_sysfs.add_cpu(7, "0")

    th = threading.Thread(target=plug)
    t0 = time.monotonic()
    th.start()
    online(gc, pb, nb_cpus=3, cpu_only=True)
    th.join()
    assert 0.4 < time.monotonic() - t0 < 4
    assert [fake_sysfs.cpu_online(i) for i in (2, 3, 7)] == ["1", "1", "1"]


def test_online_cancelled_by_timeout_and_disconnect(gc, gagent, pb):
    with pytest.raises(RpcError) as ei:
        online(gc, pb, nb_cpus=50, cpu_only=True, timeout_ns=300_000_000)
    assert ei.value.code == DEADLINE_EXCEEDED
    c2 = Client(pb, gagent.sock)
    c2.send(SVC, "OnlineCPUMem", pb.agent.OnlineCPUMemRequest(nb_cpus=50))
    time.sleep(0.2)
    c2.close()
    assert gc.health().status == pb.health.HealthCheckResponse.SERVING


def test_online_without_sysfs_dirs(agent_factory, tmp_path, pb):
    empty = tmp_path / "empty"
    empty.mkdir()
    a = agent_factory(args=["--sysfs-root", str(empty)])
    with Client(pb, a.sock) as c:
        with pytest.raises(RpcError) as ei:
            online(c, pb, nb_cpus=1)
        assert ei.value.code == INTERNAL
        assert ei.value.message == f"read dir {empty}/devices/system/cpu: No such file or directory"
        with pytest.raises(RpcError) as ei:
            online(c, pb)
        assert ei.value.message == f"read dir {empty}/devices/system/memory: No such file or directory"


def test_unwritable_online_files_are_skipped(gc, pb, fake_sysfs):
    """As upstream: a CPU whose online file cannot be written is not counted; the next one is used."""
    os.remove(os.path.join(fake_sysfs.cpu, "cpu2/online"))
    os.makedirs(os.path.join(fake_sysfs.cpu, "cpu2/online"))  # a directory: the write fails
    online(gc, pb, nb_cpus=1, cpu_only=True)
    assert fake_sysfs.cpu_online(3) == "1"


# ---------------------------------------------------------------------------------------------------------
# MemHotplugByProbe


def probe(c, pb, addrs, timeout_ns=0):
    return c.call(SVC, "MemHotplugByProbe", pb.agent.MemHotplugByProbeRequest(memHotplugProbeAddr=addrs),
                  pb.empty.Empty, timeout_ns=timeout_ns)


def test_probe_writes_each_address_in_upstream_format(gc, pb, fake_sysfs):
    """One write per address, "0x" + upper-case hex. The probe file is a FIFO here, held open by the test,
    so every write is seen in order."""
    path = os.path.join(fake_sysfs.mem, "probe")
    os.remove(path)
    os.mkfifo(path)
    rfd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        addrs = [0x1A0000000, 0, 0xFFFFFFFFFFFFFFFF] + [0x100000000 + i * 0x8000000 for i in range(40)]
        probe(gc, pb, addrs)
        got = b""
        while True:
            try:
                chunk = os.read(rfd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            got += chunk
        assert got.decode() == "".join("0x%X" % a for a in addrs)
        assert got.startswith(b"0x1A00000000x00xFFFFFFFFFFFFFFFF0x100000000")
    finally:
        os.close(rfd)


def test_probe_errors(gc, pb, fake_sysfs):
    probe(gc, pb, [])  # nothing to do
    os.remove(os.path.join(fake_sysfs.mem, "probe"))
    with pytest.raises(RpcError) as ei:
        probe(gc, pb, [0x40000000])
    assert ei.value.code == INTERNAL
    assert ei.value.message.startswith("memory hot-add by probe of 0x40000000 (address 1 of 1): ")
    assert "No such file or directory" in ei.value.message
    with pytest.raises(RpcError) as ei:
        probe(gc, pb, list(range(65537)))
    assert ei.value.code == INVALID_ARGUMENT and "too many memory probe addresses" in ei.value.message
    assert gc.health().status == pb.health.HealthCheckResponse.SERVING


# ---------------------------------------------------------------------------------------------------------
# ReseedRandomDev (the real /dev/random: it only adds entropy)


def reseed(c, pb, data):
    return c.call(SVC, "ReseedRandomDev", pb.agent.ReseedRandomDevRequest(data=data), pb.empty.Empty)


def test_reseed_random_dev(client, pb):
    reseed(client, pb, os.urandom(64))
    reseed(client, pb, os.urandom(1 << 20))
    for data, text in [(b"", "missing entropy data"), (b"x" * ((1 << 20) + 1), "exceeds")]:
        with pytest.raises(RpcError) as ei:
            reseed(client, pb, data)
        assert ei.value.code == INVALID_ARGUMENT and text in ei.value.message


# ---------------------------------------------------------------------------------------------------------
# SetGuestDateTime: never changes this machine's clock


def set_time(c, pb, sec, usec):
    return c.call(SVC, "SetGuestDateTime", pb.agent.SetGuestDateTimeRequest(Sec=sec, Usec=usec), pb.empty.Empty)


@pytest.mark.parametrize("sec,usec,text", [
    (0, 0, "missing time"),
    (1700000000, -1, "invalid usec -1"),
    (1700000000, 1000000, "invalid usec 1000000"),
    (-1, 0, "invalid sec -1"),
    (8276644036, 0, "invalid sec 8276644036"),
    (2**63 - 1, 999999, "invalid sec"),
])
def test_set_guest_date_time_validation(client, pb, sec, usec, text):
    before = time.time()
    with pytest.raises(RpcError) as ei:
        set_time(client, pb, sec, usec)
    assert ei.value.code == INVALID_ARGUMENT and text in ei.value.message, ei.value.message
    assert abs(time.time() - before) < 5


def cap_eff(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    raise AssertionError("no CapEff")


def test_set_guest_date_time_reaches_settimeofday(tmp_path, pb):
    """A valid time gets to settimeofday(2): in an agent without CAP_SYS_TIME it fails with EPERM, so the
    clock cannot change. (Setting the clock for real is exercised in a VM only.)"""
    from test_iptables import WrappedAgent
    a = WrappedAgent(tmp_path, ["setpriv", "--inh-caps=-sys_time", "--bounding-set=-sys_time", "--"])
    try:
        caps = cap_eff(a.pid)
        assert not caps & (1 << CAP_SYS_TIME), "the agent could change the clock: not sending anything"
        assert caps & (1 << 21)  # still CAP_SYS_ADMIN: only the clock is out of reach
        with Client(pb, a.sock) as c:
            before = time.time()
            with pytest.raises(RpcError) as ei:
                set_time(c, pb, 1000000000, 5)
            assert ei.value.code == INTERNAL
            assert ei.value.message == "settimeofday(1000000000.000005): Operation not permitted"
            assert abs(time.time() - before) < 5
    finally:
        assert a.stop() == 0


# ---------------------------------------------------------------------------------------------------------
# Widening container cpusets after CPUs came online (real containers, real cgroups)


def cpuset_file(rel):
    for base in ("/sys/fs/cgroup/cpuset", "/sys/fs/cgroup"):
        p = os.path.join(base, rel.lstrip("/"), "cpuset.cpus")
        if os.path.exists(p):
            return p
    return None


def read(p):
    with open(p) as f:
        return f.read().strip()


def write(p, v):
    with open(p, "w") as f:
        f.write(v)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 CPUs")
def test_online_cpus_widens_container_cpusets(sandbox_agent_factory, tmp_path, pb, oci, busybox_rootfs):
    """Containers created while only CPU 0 was online get the new CPUs once OnlineCPUMem onlined them:
    their parent cgroup and their own cpuset; a container whose spec pins CPUs keeps its pinning."""
    fs = FakeSysfs(tmp_path / "sysfs", cpus=(None, "0"), online="0-1")
    a = sandbox_agent_factory(args=["--sysfs-root", fs.root])
    s = Session(a, pb, oci)
    s.create_sandbox(sandbox_id=a.cid("sb"))
    parent = f"/{a.token}-pod"
    free_cid, pinned_cid = a.cid("free"), a.cid("pinned")
    s.run(free_cid, oci.spec(busybox_rootfs, ["/bin/sh", "-c", "sleep 1000"], cgroups_path=f"{parent}/{free_cid}"))
    res = pb.oci.LinuxResources()
    res.CPU.Cpus = "0"
    s.run(pinned_cid, oci.spec(busybox_rootfs, ["/bin/sh", "-c", "sleep 1000"], cgroups_path=f"{parent}/{pinned_cid}",
                               resources=res))
    free, pinned, par = (cpuset_file(f"{parent}/{free_cid}"), cpuset_file(f"{parent}/{pinned_cid}"),
                         cpuset_file(parent))
    if not free or not par:
        pytest.skip("no cpuset controller for the containers' cgroups")
    # as if they had been created when only CPU 0 was online (children first, then the parent)
    write(free, "0")
    if read(par):
        write(par, "0")
    assert read(pinned) == "0"
    s.call("OnlineCPUMem", pb.agent.OnlineCPUMemRequest(nb_cpus=1, cpu_only=True))
    assert fs.cpu_online(1) == "1"
    assert read(free) == "0-1"
    assert read(par) in ("0-1", "")  # v2: an unset parent cpuset means "all of its parent's"
    assert read(pinned) == "0"
    for cid in (free_cid, pinned_cid):
        s.signal(cid, "", 9)
        s.wait(cid)
        s.remove(cid)
