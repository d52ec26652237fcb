"""Hot-plugged devices through the wire: AddSwap, disk storages (blk by PCI path, scsi, nvdimm, mmioblk), an
overlayfs storage, and CreateContainer's devices rewriting the OCI spec to the guest's device numbers.

The agent runs in a private mount namespace with a fake sysfs tree (--sysfs-root) that describes the PCI
topology and a fake /dev (--dev-root) whose nodes are loop devices: the disks are real block devices (swapon
and mount really happen), only their names and places are staged. One test makes the kernel itself announce
a disk: it re-sends the "add" uevent of this machine's virtio-blk disk (`echo add > .../uevent`), which is the
only way to get a genuine virtio-blk uevent without a hypervisor; on a machine without a virtio-blk disk that
test is skipped. Not testable here: virtio-fs and 9p mounts (no such transports), vfio (not supported)."""
import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from ttrpc_client import INTERNAL, INVALID_ARGUMENT, NOT_FOUND, UNIMPLEMENTED, RpcError

SVC = "grpc.AgentService"
MiB = 1 << 20


class Hardware:
    """A fake sysfs and /dev for one agent, and loop-device disks placed in them."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="ka-dev-", dir="/var/tmp")
        self.sys = os.path.join(self.dir, "sys")
        self.dev = os.path.join(self.dir, "dev")
        os.makedirs(self.dev)
        pci = os.path.join(self.sys, "devices/pci0000:00")
        os.makedirs(os.path.join(pci, "0000:00:02.0"))  # a slot with nothing plugged yet
        os.makedirs(os.path.join(pci, "0000:00:05.0"))  # a device that is not a bridge
        os.makedirs(os.path.join(pci, "0000:00:03.0/pci_bus/0000:01"))  # a bridge with bus 01 ...
        os.makedirs(os.path.join(pci, "0000:00:03.0/0000:01:04.0"))  # ... and a slot behind it
        self.loops, self.swaps = [], []

    def disk(self, name, kind="raw", size=32 * MiB, head=b""):
        """A loop device with kind (raw, swap, ext4) whose node is <dev>/<name>; returns the node's path."""
        img = os.path.join(self.dir, name + ".img")
        with open(img, "wb") as f:
            f.write(head)
            f.truncate(size)
        loop = subprocess.run(["losetup", "-f", "--show", img], check=True, capture_output=True,
                              text=True).stdout.strip()
        self.loops.append(loop)
        if kind == "swap":
            subprocess.run(["mkswap", loop], check=True, capture_output=True)
        elif kind == "ext4":
            subprocess.run(["mkfs.ext4", "-q", "-F", loop], check=True, capture_output=True)
        st = os.stat(loop)
        node = os.path.join(self.dev, name)
        os.mknod(node, 0o660 | 0o060000, st.st_rdev)
        return node

    def plug_virtio(self, pci_dir, name, virtio="virtio9"):
        """Show the disk in sysfs under a PCI device (what the kernel does on hot-plug)."""
        os.makedirs(os.path.join(self.sys, "devices/pci0000:00", pci_dir, virtio, "block", name))

    def close(self):
        for node in self.swaps:
            subprocess.run(["swapoff", node], check=False, capture_output=True)
        for loop in self.loops:
            subprocess.run(["losetup", "-d", loop], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def hw():
    if not os.path.exists("/dev/loop-control") or not shutil.which("losetup"):
        pytest.skip("no loop devices")
    h = Hardware()
    yield h
    h.close()


@pytest.fixture
def dagent(sandbox_agent_factory, hw):
    """A sandboxed agent on the fake hardware, with a 1 s hotplug timeout; stopped before the disks go."""
    a = sandbox_agent_factory(args=["--sysfs-root", hw.sys, "--dev-root", hw.dev],
                              cmdline="agent.hotplug_timeout=1")
    yield a
    a.stop()


def swaps():
    with open("/proc/swaps") as f:
        return [line.split()[0] for line in f.read().splitlines()[1:]]


def add_swap(c, pb, slots, timeout_ns=0):
    return c.call(SVC, "AddSwap", pb.agent.AddSwapRequest(PCIPath=slots), timeout_ns=timeout_ns)


def err_of(fn, *a, **kw):
    with pytest.raises(RpcError) as ei:
        fn(*a, **kw)
    return ei.value


# ---- AddSwap ----

def test_add_swap_on_present_disks(dagent, hw, pb):
    """A disk already in sysfs is used at once: on the root bus and behind a bridge."""
    c = dagent.connect(pb)
    a = hw.disk("vdq", "swap")
    hw.plug_virtio("0000:00:02.0", "vdq")
    b = hw.disk("vdr", "swap")
    hw.plug_virtio("0000:00:03.0/0000:01:04.0", "vdr", virtio="virtio3")
    hw.swaps += [a, b]
    add_swap(c, pb, [2])
    add_swap(c, pb, [3, 4])
    assert a in swaps() and b in swaps()
    assert re.search(r'"msg":"swap on [^"]*/vdr"', dagent.log_text())


def test_add_swap_refusals(dagent, hw, pb):
    c = dagent.connect(pb)
    e = err_of(add_swap, c, pb, [])
    assert e.code == INVALID_ARGUMENT and "1 to 16 slots, not 0" in e.message
    e = err_of(add_swap, c, pb, [40])
    assert e.code == INVALID_ARGUMENT and "PCI slot 40 is out of range" in e.message
    e = err_of(add_swap, c, pb, [1] * 17)
    assert e.code == INVALID_ARGUMENT
    e = err_of(add_swap, c, pb, [5, 1])
    assert e.code == NOT_FOUND and "0000:00:05.0 is not a bridge" in e.message
    e = err_of(add_swap, c, pb, [0x1e, 1])  # the first hop does not exist at all
    assert e.code == NOT_FOUND
    # a disk that holds no swap area: the kernel refuses it, the agent says so
    hw.disk("vdn", "raw")
    hw.plug_virtio("0000:00:02.0", "vdn")
    e = err_of(add_swap, c, pb, [2])
    assert e.code == INTERNAL and re.search(r"swapon \S*/vdn: Invalid argument", e.message), e.message
    c.health()


def test_add_swap_times_out_and_cancels_cleanly(dagent, hw, pb):
    """Nothing plugged: agent.hotplug_timeout (1 s) ends the wait; a call cancelled by its own deadline or
    by a hang-up leaves no wait behind (the agent serves on, the ASan build checks the memory)."""
    c = dagent.connect(pb)
    before = dagent.snapshot()
    t0 = time.time()
    e = err_of(add_swap, c, pb, [2])
    took = time.time() - t0
    assert e.code == INTERNAL and e.message == (
        "timeout after 1000 ms waiting for the virtio-blk disk under /devices/pci0000:00/0000:00:02.0")
    assert 0.9 <= took < 5
    e = err_of(add_swap, c, pb, [2], timeout_ns=200_000_000)
    assert e.code == 4 and e.message == "timeout"  # DEADLINE_EXCEEDED from ttrpc
    other = dagent.connect(pb)
    other.send(SVC, "AddSwap", pb.agent.AddSwapRequest(PCIPath=[2]))
    time.sleep(0.1)
    other.close()
    dagent.clients.remove(other)
    time.sleep(1.3)  # past both waits' timeouts: nothing fires into freed calls
    c.health()
    dagent.check_no_leaks(before)


def test_a_spoofed_uevent_is_ignored(dagent, hw, pb):
    """Only the kernel may announce a disk: the same message sent by a process (a container with
    CAP_NET_ADMIN in the VM's network namespace could) does not end the wait."""
    c = dagent.connect(pb)
    hw.disk("vdz", "swap")
    sid = c.send(SVC, "AddSwap", pb.agent.AddSwapRequest(PCIPath=[2]))
    time.sleep(0.2)
    msg = (b"add@/devices/pci0000:00/0000:00:02.0/virtio9/block/vdz\0ACTION=add\0"
           b"DEVPATH=/devices/pci0000:00/0000:00:02.0/virtio9/block/vdz\0SUBSYSTEM=block\0DEVNAME=vdz\0"
           b"DEVTYPE=disk\0SEQNUM=999999\0")
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 15)  # NETLINK_KOBJECT_UEVENT
    try:
        s.bind((0, 0))
        s.sendto(msg, (0, 1))
    finally:
        s.close()
    rsid, code, message, _ = c.recv(timeout=5)
    assert rsid == sid and code == INTERNAL and "timeout after 1000 ms" in message
    assert not any(p.endswith("/vdz") for p in swaps())


def real_virtio_disk():
    """(slot, disk name, uevent file) of a virtio-blk disk on the root PCI bus, or None."""
    for blk in sorted(glob.glob("/sys/devices/pci0000:00/0000:00:*.0/virtio*/block/*")):
        m = re.match(r"/sys/devices/pci0000:00/0000:00:([0-9a-f]{2})\.0/virtio\d+/block/([^/]+)$", blk)
        if m:
            return int(m.group(1), 16), m.group(2), os.path.join(blk, "uevent")
    return None


def test_kernel_uevent_ends_the_wait(dagent, hw, pb):
    """The disk is not in (fake) sysfs when AddSwap arrives; the kernel's "add" uevent for a disk under that
    PCI slot completes the wait. The uevent is the kernel's own, re-sent for this machine's virtio-blk disk;
    the node the agent then uses is the fake /dev entry of that name (a loop device with a swap area)."""
    real = real_virtio_disk()
    if real is None:
        pytest.skip("no virtio-blk disk on this machine: the kernel cannot be made to send its uevent")
    slot, name, uevent = real
    os.makedirs(os.path.join(hw.sys, f"devices/pci0000:00/0000:00:{slot:02x}.0"), exist_ok=True)
    node = hw.disk(name, "swap")
    hw.swaps.append(node)
    c = dagent.connect(pb)
    sid = c.send(SVC, "AddSwap", pb.agent.AddSwapRequest(PCIPath=[slot]))
    with pytest.raises(socket.timeout):
        c.recv(timeout=0.3)  # still waiting
    with open(uevent, "w") as f:
        f.write("add")
    rsid, code, message, _ = c.recv(timeout=5)
    assert (rsid, code) == (sid, 0), message
    assert node in swaps()


# ---- storages ----

def storage(pb, driver, source, fstype, name, options=()):
    return pb.agent.Storage(driver=driver, source=source, fstype=fstype, options=list(options),
                            mount_point=f"/run/kata-containers/sandbox/storage/{name}")


def mount_of(agent, mount_point):
    for line in agent.mounts():
        f = line.split()
        if f[4] == mount_point:
            return f[f.index("-") + 1], f[5]  # fstype, per-mount options
    return None


def test_disk_storages_are_mounted(dagent, hw, pb):
    c = dagent.connect(pb)
    for name in ("vdb", "sdq", "pmem7", "vdm"):
        hw.disk(name, "ext4")
    hw.plug_virtio("0000:00:03.0/0000:01:04.0", "vdb")
    scsi = os.path.join(hw.sys, "bus/scsi/devices/2:0:1:3/block/sdq")
    os.makedirs(scsi)
    scan = os.path.join(hw.sys, "class/scsi_host/host2/scan")
    os.makedirs(os.path.dirname(scan))
    open(scan, "w").close()
    os.makedirs(os.path.join(hw.sys, "block/pmem7"))
    req = pb.agent.CreateSandboxRequest(hostname="dev", sandbox_id="sb", storages=[
        storage(pb, "blk", "03/04", "ext4", "blk", ["ro"]),
        storage(pb, "scsi", "1:3", "ext4", "scsi"),
        storage(pb, "nvdimm", "/dev/pmem7", "ext4", "pmem", ["nodev"]),
        storage(pb, "mmioblk", os.path.join(hw.dev, "vdm"), "ext4", "mmio"),
    ])
    c.call(SVC, "CreateSandbox", req)
    fs, opts = mount_of(dagent, "/run/kata-containers/sandbox/storage/blk")
    assert fs == "ext4" and opts.startswith("ro")
    assert mount_of(dagent, "/run/kata-containers/sandbox/storage/scsi")[0] == "ext4"
    assert "nodev" in mount_of(dagent, "/run/kata-containers/sandbox/storage/pmem")[1]
    assert mount_of(dagent, "/run/kata-containers/sandbox/storage/mmio")[0] == "ext4"
    with open(scan) as f:
        assert f.read() == "0 1 3"  # every SCSI host was asked to scan for target 1, LUN 3
    assert os.path.isdir(f"/proc/{dagent.pid}/root/run/kata-containers/sandbox/storage/blk/lost+found")
    c.call(SVC, "DestroySandbox", pb.agent.DestroySandboxRequest())
    dagent.proc.wait(10)


def test_disk_storage_refusals(dagent, hw, pb):
    c = dagent.connect(pb)
    cases = [
        (storage(pb, "blk", "zz", "ext4", "a"), INVALID_ARGUMENT, 'invalid PCI path "zz"'),
        (storage(pb, "blk", "/dev/null", "ext4", "a"), INVALID_ARGUMENT, "/dev/null is not a block device"),
        (storage(pb, "mmioblk", "/no/such/disk", "ext4", "a"), INTERNAL, "/no/such/disk: No such file"),
        (storage(pb, "scsi", "1", "ext4", "a"), INVALID_ARGUMENT, 'Unexpected format for SCSI Address: "1"'),
        (storage(pb, "scsi", "1:2:3", "ext4", "a"), INVALID_ARGUMENT, "Unexpected format for SCSI Address"),
        (storage(pb, "nvdimm", "pmem0", "ext4", "a"), INVALID_ARGUMENT, "is not /dev/<name>"),
        (storage(pb, "nvdimm", "/dev/../x", "ext4", "a"), INVALID_ARGUMENT, "is not /dev/<name>"),
        (storage(pb, "blk", "02", "ext4", "a"), INTERNAL, "timeout after 1000 ms waiting for the virtio-blk"),
        (storage(pb, "blk", "/dev/loop-control", "", "a"), INVALID_ARGUMENT, ""),
        (storage(pb, "watchable-bind", "/x", "", "a"), UNIMPLEMENTED, "storage driver watchable-bind"),
    ]
    for st, code, text in cases:
        req = pb.agent.CreateSandboxRequest(hostname="dev", sandbox_id="sb", storages=[st])
        e = err_of(c.call, SVC, "CreateSandbox", req)
        assert e.code == code and text in e.message, (st.driver, st.source, e.code, e.message)
    assert not any("/run/kata-containers/sandbox/storage" in m for m in dagent.mounts())
    many = [storage(pb, "blk", "02", "ext4", f"s{i}") for i in range(1025)]
    e = err_of(c.call, SVC, "CreateSandbox", pb.agent.CreateSandboxRequest(hostname="dev", storages=many))
    assert e.code == INVALID_ARGUMENT and "too many storages or devices (1025 and 0" in e.message, e.message


def test_overlayfs_storage(dagent, hw, pb):
    c = dagent.connect(pb)
    base = os.path.join(hw.dir, "ovl")
    for d in ("lower", "upper", "work"):
        os.makedirs(os.path.join(base, d))
    with open(os.path.join(base, "lower/hello"), "w") as f:
        f.write("from the lower layer")
    opts = [f"lowerdir={base}/lower,upperdir={base}/upper,workdir={base}/work"]
    req = pb.agent.CreateSandboxRequest(hostname="dev", sandbox_id="sb", storages=[
        storage(pb, "overlayfs", "overlay", "overlay", "ovl", opts)])
    c.call(SVC, "CreateSandbox", req)
    root = f"/proc/{dagent.pid}/root/run/kata-containers/sandbox/storage/ovl"
    with open(os.path.join(root, "hello")) as f:
        assert f.read() == "from the lower layer"
    with open(os.path.join(root, "new"), "w") as f:
        f.write("x")
    assert os.path.exists(os.path.join(base, "upper/new"))


# ---- CreateContainer devices ----

def device_spec(pb, oci, rootfs, script):
    spec = oci.spec(rootfs, ["/bin/sh", "-c", script])
    spec.Linux.Devices.add(Path="/dev/xvdz", Type="b", Major=250, Minor=7, FileMode=0o660)
    spec.Linux.Resources.Devices.add(Allow=False, Access="rwm")
    spec.Linux.Resources.Devices.add(Allow=True, Type="b", Major=250, Minor=7, Access="rw")
    return spec


def run_script(c, pb, oci, cid, spec, devices):
    c.call(SVC, "CreateContainer", oci.create_container_request(cid, spec, devices=devices), timeout_ns=60 * 10**9)
    c.call(SVC, "StartContainer", pb.agent.StartContainerRequest(container_id=cid))
    out = b""
    while True:
        try:
            r = c.call(SVC, "ReadStdout", pb.agent.ReadStreamRequest(container_id=cid, len=4096),
                       pb.agent.ReadStreamResponse)
        except RpcError:
            break
        out += r.data
    st = c.call(SVC, "WaitProcess", pb.agent.WaitProcessRequest(container_id=cid), pb.agent.WaitProcessResponse)
    c.call(SVC, "RemoveContainer", pb.agent.RemoveContainerRequest(container_id=cid))
    return st.status, out.decode()


def test_container_device_gets_the_guest_numbers(dagent, hw, pb, oci, busybox_rootfs):
    """The spec names the host's 250:7; the guest's disk is a loop device: the container's /dev/xvdz gets the
    loop's numbers and the cgroup rule follows, so the container can read the disk (and nothing else)."""
    c = dagent.connect(pb, timeout=60)
    node = hw.disk("vds", "raw", head=b"KATADISK")
    hw.plug_virtio("0000:00:02.0", "vds")
    rdev = os.stat(node).st_rdev
    c.call(SVC, "CreateSandbox", pb.agent.CreateSandboxRequest(hostname="dev", sandbox_id="sb"))
    spec = device_spec(pb, oci, busybox_rootfs, "stat -c %t:%T /dev/xvdz; head -c 8 /dev/xvdz")
    dev = pb.agent.Device(type="blk", id="02", container_path="/dev/xvdz")
    status, out = run_script(c, pb, oci, dagent.cid("dev"), spec, [dev])
    assert status == 0, out
    assert out == f"{os.major(rdev):x}:{os.minor(rdev):x}\nKATADISK", out


def test_container_device_refusals(dagent, hw, pb, oci, busybox_rootfs):
    c = dagent.connect(pb, timeout=60)
    c.call(SVC, "CreateSandbox", pb.agent.CreateSandboxRequest(hostname="dev", sandbox_id="sb"))
    hw.disk("vds", "raw")
    hw.plug_virtio("0000:00:02.0", "vds")
    spec = device_spec(pb, oci, busybox_rootfs, "true")
    D = pb.agent.Device
    cases = [
        ([D(type="vfio-pci", id="02", container_path="/dev/vfio/1")], UNIMPLEMENTED, "vfio-pci devices"),
        ([D(type="", id="02", container_path="/dev/xvdz")], INVALID_ARGUMENT, "invalid type for device"),
        ([D(type="blk", container_path="/dev/xvdz")], INVALID_ARGUMENT, "invalid ID and VM path"),
        ([D(type="blk", id="02")], INVALID_ARGUMENT, "invalid container path"),
        ([D(type="floppy", id="02", container_path="/dev/xvdz")], INVALID_ARGUMENT, "Unknown device type floppy"),
        ([D(type="blk", id="02", container_path="/dev/other")], INVALID_ARGUMENT,
         "Missing devices in OCI spec: /dev/other"),
        ([D(type="blk", id="02", container_path="/dev/xvdz")] * 2, INVALID_ARGUMENT,
         "Conflicting device updates for /dev/xvdz"),
        ([D(type="mmioblk", vm_path="/no/such", container_path="/dev/xvdz")], INTERNAL, "/no/such: No such file"),
        ([D(type="blk", id="05", container_path="/dev/xvdz")], INTERNAL, "timeout after 1000 ms"),
    ]
    for i, (devices, code, text) in enumerate(cases):
        req = oci.create_container_request(dagent.cid(f"r{i}"), spec, devices=devices)
        e = err_of(c.call, SVC, "CreateContainer", req)
        assert e.code == code and text in e.message, (i, e.code, e.message)
    c.health()


# ---- hugetlbfs ephemeral storages ----

def huge(pb, name, pagesize, size):
    return pb.agent.Storage(driver="ephemeral", source="nodev", fstype="hugetlbfs",
                            options=[f"pagesize={pagesize},size={size}"],
                            mount_point=f"/run/kata-containers/sandbox/ephemeral/{name}")


def test_hugetlbfs_storages_grow_and_shrink_the_pool(dagent, hw, pb):
    """Each hugetlbfs storage adds size/pagesize pages to the pool of its page size (the fake sysfs stands in
    for the kernel's nr_hugepages) and gives them back when released; the mount itself is a real hugetlbfs."""
    c = dagent.connect(pb)
    pool = os.path.join(hw.sys, "kernel/mm/hugepages/hugepages-2048kB/nr_hugepages")
    os.makedirs(os.path.dirname(pool))
    with open(pool, "w") as f:
        f.write("1\n")  # someone else's page stays
    req = pb.agent.CreateSandboxRequest(hostname="h", sandbox_id="sb", storages=[
        huge(pb, "h1", 2 * MiB, 4 * MiB), huge(pb, "h2", 2 * MiB, 2 * MiB)])
    c.call(SVC, "CreateSandbox", req)
    with open(pool) as f:
        assert f.read().strip() == "4"
    for name, size in (("h1", 4 * MiB), ("h2", 2 * MiB)):
        fs, _ = mount_of(dagent, f"/run/kata-containers/sandbox/ephemeral/{name}")
        assert fs == "hugetlbfs"
        sup = [l for l in dagent.mounts() if f"/ephemeral/{name} " in l][0].split(" - ")[1]
        assert "pagesize=2M" in sup and f"size={size}" in sup, sup
    c.call(SVC, "DestroySandbox", pb.agent.DestroySandboxRequest())
    dagent.proc.wait(10)
    with open(pool) as f:
        assert f.read().strip() == "1"


def test_hugetlbfs_refusals(dagent, hw, pb):
    c = dagent.connect(pb)
    pool = os.path.join(hw.sys, "kernel/mm/hugepages/hugepages-2048kB/nr_hugepages")
    os.makedirs(os.path.dirname(pool))
    os.symlink("/dev/null", pool)  # the kernel finds no memory: reading back gives nothing
    cases = [
        (huge(pb, "a", 2 * MiB, 4 * MiB), 8, "Only allocated 0 of 2 hugepages of size 2097152"),
        (huge(pb, "a", 1 << 30, 1 << 30), INTERNAL, "hugepages-1048576kB/nr_hugepages"),
        (huge(pb, "a", 3 * MiB, 6 * MiB), INVALID_ARGUMENT, "power of two"),
        (huge(pb, "a", 2 * MiB, 3 * MiB), INVALID_ARGUMENT, "a multiple of it"),
        (huge(pb, "a", "2M", "4M"), INVALID_ARGUMENT, "bytes expected"),
    ]
    for st, code, text in cases:
        e = err_of(c.call, SVC, "CreateSandbox", pb.agent.CreateSandboxRequest(hostname="h", storages=[st]))
        assert e.code == code and text in e.message, (st.options, e.code, e.message)
    assert not any("hugetlbfs" in m for m in dagent.mounts())


def test_kata_shared_already_mounted_is_used(dagent, pb):
    """A virtio-fs storage of the host share (source kataShared) whose mount point is already a mount point
    (the guest image mounted it) is used as it is, as upstream does; elsewhere the mount is really attempted
    (and fails here: this machine has no virtio-fs share)."""
    c = dagent.connect(pb)
    share = "/run/kata-containers/shared/containers"
    st = pb.agent.Storage(driver="virtio-fs", source="kataShared", fstype="virtiofs", mount_point=share)
    e = err_of(c.call, SVC, "CreateSandbox", pb.agent.CreateSandboxRequest(hostname="h", storages=[st]))
    assert e.code == INTERNAL and "mount kataShared (virtiofs)" in e.message, e.message
    subprocess.run(["nsenter", "-t", str(dagent.pid), "-m", "sh", "-c",
                    f"mkdir -p {share} && mount -t tmpfs premounted {share}"], check=True)
    c.call(SVC, "CreateSandbox", pb.agent.CreateSandboxRequest(hostname="h", storages=[st]))
    assert mount_of(dagent, share)[0] == "tmpfs"
    assert "is already mounted: using it" in dagent.log_text()
