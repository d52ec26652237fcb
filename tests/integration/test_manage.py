"""Container management through the wire: StatsContainer (figures checked against the cgroup and procfs
files), UpdateContainer (pids and memory limits changed live and seen inside the container, invalid values
refused with no partial change, cpuset widening), PauseContainer/ResumeContainer (output stops and resumes),
GetOOMEvent producers (exactly one event per OOM kill, queued in order while nobody polls, none lost by a
poller that disconnects), UpdateEphemeralMounts and RemoveStaleVirtiofsShareMounts.

The agent runs in a private mount namespace (conftest.SandboxAgent) on this machine's cgroups (v1 for
containers: /sys/fs/cgroup/<controller>/<cid>)."""
import os
import signal
import subprocess
import time

import pytest

from test_containers import Session
from ttrpc_client import DEADLINE_EXCEEDED, HDR, INVALID_ARGUMENT, T_REQUEST, RpcError

SVC = "grpc.AgentService"
CG = "/sys/fs/cgroup"
MiB = 1 << 20
FAILED_PRECONDITION, NOT_FOUND, ABORTED = 9, 5, 10

# A process that allocates past its limit: tail keeps the whole (newline-free) input in memory. It is the
# only process in its cgroup, so the kernel has exactly one victim (with `head | tail` in a shell, head may
# charge pipe buffers while tail is being reaped, and the kernel then kills a second process).
OOM_ARGS = ["/bin/tail", "/dev/zero"]
COUNTER = "i=0; while true; do echo $i; i=$((i+1)); usleep 50000; done"  # a line every 50 ms
# CPU-bound processes: a v1 freeze has to wait until each is off a CPU, so it is not done at the first check
SPINNERS = "i=0; while [ $i -lt 6 ]; do (while :; do :; done) & i=$((i+1)); done; echo ready; wait"


@pytest.fixture
def s(sandbox_agent, pb, oci):
    return Session(sandbox_agent, pb, oci)


def v1_only():
    if not os.path.isdir(f"{CG}/memory") or os.path.exists(f"{CG}/cgroup.controllers"):
        pytest.skip("needs cgroup v1 controllers for containers")


def cg_read(ctl, cid, name):
    with open(f"{CG}/{ctl}/{cid}/{name}") as f:
        return f.read().strip()


def cg_kv(ctl, cid, name):
    out = {}
    for line in cg_read(ctl, cid, name).splitlines():
        k, _, v = line.partition(" ")
        if v.strip().isdigit():
            out[k] = int(v)
    return out


def mem_limit(pb, limit, **kw):
    return pb.oci.LinuxResources(Memory=pb.oci.LinuxMemory(Limit=limit, **kw))


def init_pid(cid):
    """Host pid of the container's init (the first pid of its pids cgroup that is a pid-namespace init)."""
    for pid in map(int, cg_read("pids", cid, "cgroup.procs").split()):
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:") and line.split()[-1] == "1":
                    return pid
    raise AssertionError(f"no init in {cid}")


def baseline(s, a, rootfs):
    """Snapshot for leak checks, after a first container (whose pid namespace the sandbox keeps) and exec."""
    cid = a.cid("warmup")
    s.run(cid, s.oci.spec(rootfs, ["/bin/sleep", "100"]))
    s.exec(cid, "x1", ["/bin/true"])  # the first exec keeps the agent's own pid namespace open
    s.wait(cid, "x1")
    s.remove(cid)
    return a.snapshot()


def stats(s, cid):
    return s.call("StatsContainer", s.pb.agent.StatsContainerRequest(container_id=cid),
                  s.pb.agent.StatsContainerResponse)


def oom_event(s, timeout_s):
    return s.call("GetOOMEvent", s.pb.agent.GetOOMEventRequest(), s.pb.agent.OOMEvent,
                  timeout_ns=int(timeout_s * 1e9)).container_id


def assert_no_oom_event(s, timeout_s=1.0):
    with pytest.raises(RpcError) as e:
        oom_event(s, timeout_s)
    assert e.value.code == DEADLINE_EXCEEDED


def read_some(s, cid, want_lines, timeout_s=10):
    out = b""
    deadline = time.time() + timeout_s
    while out.count(b"\n") < want_lines and time.time() < deadline:
        r = s.call("ReadStdout", s.pb.agent.ReadStreamRequest(container_id=cid, exec_id="", len=65536),
                   s.pb.agent.ReadStreamResponse)
        out += r.data
    return out


def drain(s, cid, wait_s):
    """Data ReadStdout returns within wait_s, b"" when none comes."""
    try:
        return s.call("ReadStdout", s.pb.agent.ReadStreamRequest(container_id=cid, exec_id="", len=65536),
                      s.pb.agent.ReadStreamResponse, timeout_ns=int(wait_s * 1e9)).data
    except RpcError as e:
        assert e.code == DEADLINE_EXCEEDED, e
        return b""


def read_nothing(s, cid, wait_s):
    """True if ReadStdout gets no data within wait_s (the call times out)."""
    try:
        r = s.call("ReadStdout", s.pb.agent.ReadStreamRequest(container_id=cid, exec_id="", len=65536),
                   s.pb.agent.ReadStreamResponse, timeout_ns=int(wait_s * 1e9))
    except RpcError as e:
        assert e.code == DEADLINE_EXCEEDED, e
        return True
    return not r.data


# ---------------------------------------------------------------------------------------------------------
# StatsContainer


def test_stats_match_cgroup_files(s, sandbox_agent, busybox_rootfs, pb):
    v1_only()
    a = sandbox_agent
    before = baseline(s, a, busybox_rootfs)
    cid = a.cid()
    res = pb.oci.LinuxResources(Memory=pb.oci.LinuxMemory(Limit=64 * MiB), Pids=pb.oci.LinuxPids(Limit=100),
                                CPU=pb.oci.LinuxCPU(Quota=50000, Period=100000))
    # some CPU, some direct block I/O, some loopback traffic in its own network namespace, then idle
    script = ("i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; "
              "dd if=/bin/busybox of=/dev/null bs=4096 iflag=direct 2>/dev/null; "
              "ip link set lo up; ping -c 3 -i 0.2 127.0.0.1 >/dev/null; "
              "echo ready; exec sleep 1000")
    s.run(cid, s.oci.spec(busybox_rootfs, ["/bin/sh", "-c", script], resources=res,
                          namespaces=("mount", "pid", "ipc", "uts", "network"),
                          caps=s.oci.DEFAULT_CAPS + ("CAP_NET_RAW", "CAP_NET_ADMIN")))
    assert read_some(s, cid, 1) == b"ready\n"
    time.sleep(0.2)
    cpu_before = int(cg_read("cpuacct", cid, "cpuacct.usage"))
    r = stats(s, cid)
    cpu_after = int(cg_read("cpuacct", cid, "cpuacct.usage"))
    cs = r.cgroup_stats

    # cpu (cpuacct: nanoseconds; cpuacct.stat in ticks)
    u = cs.cpu_stats.cpu_usage
    assert cpu_before <= u.total_usage <= cpu_after and u.total_usage > 0
    percpu = [int(x) for x in cg_read("cpuacct", cid, "cpuacct.usage_percpu").split()]
    assert len(u.percpu_usage) == len(percpu) and sum(u.percpu_usage) <= sum(percpu)
    tck = os.sysconf("SC_CLK_TCK")
    st = cg_kv("cpuacct", cid, "cpuacct.stat")
    assert u.usage_in_usermode == st["user"] * 10**9 // tck
    assert u.usage_in_kernelmode == st["system"] * 10**9 // tck
    thr = cg_kv("cpu", cid, "cpu.stat")
    t = cs.cpu_stats.throttling_data
    assert (t.periods, t.throttled_periods, t.throttled_time) == \
        (thr["nr_periods"], thr["nr_throttled"], thr["throttled_time"])
    assert t.periods > 0  # the quota makes the scheduler count periods

    # memory
    m = cs.memory_stats
    assert m.usage.limit == 64 * MiB == int(cg_read("memory", cid, "memory.limit_in_bytes"))
    assert m.usage.usage == int(cg_read("memory", cid, "memory.usage_in_bytes"))
    assert m.usage.max_usage == int(cg_read("memory", cid, "memory.max_usage_in_bytes"))
    assert m.usage.failcnt == int(cg_read("memory", cid, "memory.failcnt"))
    if os.path.exists(f"{CG}/memory/{cid}/memory.memsw.usage_in_bytes"):
        assert m.swap_usage.usage == int(cg_read("memory", cid, "memory.memsw.usage_in_bytes"))
        assert m.swap_usage.limit == int(cg_read("memory", cid, "memory.memsw.limit_in_bytes"))
    if os.path.exists(f"{CG}/memory/{cid}/memory.kmem.usage_in_bytes"):
        assert m.kernel_usage.usage == int(cg_read("memory", cid, "memory.kmem.usage_in_bytes"))
    mstat = cg_kv("memory", cid, "memory.stat")
    assert dict(m.stats) == mstat
    assert m.cache == mstat["cache"]
    assert m.use_hierarchy == (cg_read("memory", cid, "memory.use_hierarchy") == "1")

    # pids: the init (exec'd sleep) only
    assert (cs.pids_stats.current, cs.pids_stats.limit) == (1, 100)
    assert int(cg_read("pids", cid, "pids.current")) == 1

    # block I/O: the files the agent reads on this kernel (CFQ, else BFQ, else the throttle files)
    def entries(name, with_op=True):
        out = []
        for line in cg_read("blkio", cid, name).splitlines():
            f = line.split()
            if ":" not in f[0]:
                continue
            mj, mn = map(int, f[0].split(":"))
            if with_op:
                if f[1].lower() in ("read", "write", "sync", "async", "total"):
                    out.append((mj, mn, f[1].lower(), int(f[2])))
            else:
                out.append((mj, mn, "", int(f[1])))
        return out

    def got(lst):
        return [(e.major, e.minor, e.op, e.value) for e in lst]

    b = cs.blkio_stats
    if os.path.exists(f"{CG}/blkio/{cid}/blkio.bfq.io_serviced_recursive") and \
            entries("blkio.bfq.io_serviced_recursive"):
        assert got(b.io_service_bytes_recursive) == entries("blkio.bfq.io_service_bytes_recursive")
    else:
        want = entries("blkio.throttle.io_service_bytes_recursive")
        assert got(b.io_service_bytes_recursive) == want
        assert got(b.io_serviced_recursive) == entries("blkio.throttle.io_serviced_recursive")
        if want:  # the direct read above is accounted
            size = os.path.getsize(busybox_rootfs + "/bin/busybox")
            assert sum(v for _, _, op, v in want if op == "read") >= size // 2

    # hugetlb: one entry per page size when the controller exists
    if not os.path.isdir(f"{CG}/hugetlb"):
        assert len(cs.hugetlb_stats) == 0

    # network: the container's own namespace (lo only), as /proc/<init>/net/dev shows it
    pid = init_pid(cid)
    with open(f"/proc/{pid}/net/dev") as f:
        dev = {}
        for line in f.read().splitlines()[2:]:
            name, _, rest = line.partition(":")
            v = list(map(int, rest.split()))
            dev[name.strip()] = (v[0], v[1], v[2], v[3], v[8], v[9], v[10], v[11])
    net = {n.name: (n.rx_bytes, n.rx_packets, n.rx_errors, n.rx_dropped, n.tx_bytes, n.tx_packets, n.tx_errors,
                    n.tx_dropped) for n in r.network_stats}
    assert net == dev and set(net) == {"lo"}
    assert net["lo"][1] >= 6  # 3 echo requests + 3 replies

    s.remove(cid)
    a.check_no_leaks(before)


def test_stats_of_exited_container_and_unknown_ids(s, sandbox_agent, busybox_rootfs, pb):
    a = sandbox_agent
    cid = a.cid()
    s.run(cid, s.oci.spec(busybox_rootfs, ["/bin/true"]))
    assert s.wait(cid) == 0
    r = stats(s, cid)
    assert r.cgroup_stats.HasField("memory_stats") and len(r.network_stats) == 0  # no init left
    for method, req in (("StatsContainer", pb.agent.StatsContainerRequest(container_id="nope")),
                        ("UpdateContainer", pb.agent.UpdateContainerRequest(container_id="nope",
                                                                            resources=mem_limit(pb, 64 * MiB))),
                        ("PauseContainer", pb.agent.PauseContainerRequest(container_id="nope")),
                        ("ResumeContainer", pb.agent.ResumeContainerRequest(container_id="nope"))):
        with pytest.raises(RpcError) as e:
            s.call(method, req)
        assert e.value.code == INVALID_ARGUMENT and "invalid container id" in e.value.message.lower(), method
    # no resources: nothing to do
    s.call("UpdateContainer", pb.agent.UpdateContainerRequest(container_id=cid))
    s.remove(cid)
    s.c.health()


def test_v2_stats_pause_and_no_memory_controller(sandbox_agent_factory, pb, oci, busybox_rootfs):
    """agent.unified_cgroup_hierarchy=true: the cgroup2 hierarchy at /sys/fs/cgroup/unified (here without
    memory, pids or io controllers): cpu.stat figures in nanoseconds, absent sub-messages for the missing
    controllers, pause/resume through cgroup.freeze, and a container without an OOM watch still runs."""
    unified = f"{CG}/unified"
    if not os.path.exists(f"{unified}/cgroup.controllers"):
        pytest.skip("no cgroup2 hierarchy at /sys/fs/cgroup/unified")
    a = sandbox_agent_factory(cmdline="agent.unified_cgroup_hierarchy=true")
    s = Session(a, pb, oci)
    cid = a.cid()
    s.run(cid, oci.spec(busybox_rootfs, ["/bin/sh", "-c", COUNTER]))
    read_some(s, cid, 2)

    def kv(name):
        with open(f"{unified}/{cid}/{name}") as f:
            return {k: int(v) for k, v in (line.split() for line in f if len(line.split()) == 2)}

    st0 = kv("cpu.stat")
    r = stats(s, cid)
    st1 = kv("cpu.stat")
    u = r.cgroup_stats.cpu_stats.cpu_usage
    assert st0["usage_usec"] * 1000 <= u.total_usage <= st1["usage_usec"] * 1000 and u.total_usage > 0
    assert st0["user_usec"] * 1000 <= u.usage_in_usermode <= st1["user_usec"] * 1000
    assert len(u.percpu_usage) == 0
    cs = r.cgroup_stats
    for ctl, field in (("memory.current", "memory_stats"), ("pids.current", "pids_stats"), ("io.stat", "blkio_stats")):
        assert cs.HasField(field) == os.path.exists(f"{unified}/{cid}/{ctl}"), field
    files = os.listdir(f"{unified}/{cid}")
    assert set(cs.hugetlb_stats) == {f.split(".")[1] for f in files if f.startswith("hugetlb.") and
                                     f.endswith(".current")}
    for size, h in cs.hugetlb_stats.items():
        with open(f"{unified}/{cid}/hugetlb.{size}.current") as f:
            assert h.usage == int(f.read())
    assert "no OOM events" in a.log_text() or os.path.exists(f"{unified}/{cid}/memory.events")
    s.call("PauseContainer", pb.agent.PauseContainerRequest(container_id=cid))
    assert kv("cgroup.events")["frozen"] == 1
    for _ in range(20):
        if not drain(s, cid, 0.2):
            break
    time.sleep(0.3)
    assert read_nothing(s, cid, 0.3)
    s.call("ResumeContainer", pb.agent.ResumeContainerRequest(container_id=cid))
    assert kv("cgroup.events")["frozen"] == 0
    assert read_some(s, cid, 2)
    s.remove(cid)
    assert not os.path.exists(f"{unified}/{cid}")


# ---------------------------------------------------------------------------------------------------------
# UpdateContainer


def test_update_pids_and_memory_live(s, sandbox_agent, busybox_rootfs, pb):
    v1_only()
    a = sandbox_agent
    before = baseline(s, a, busybox_rootfs)
    cid = a.cid()
    s.run(cid, s.oci.spec(busybox_rootfs, ["/bin/sleep", "1000"], mounts=s.oci.DEFAULT_MOUNTS + (s.oci.CGROUP_MOUNT,),
                          resources=pb.oci.LinuxResources(Pids=pb.oci.LinuxPids(Limit=200))))
    s.call("UpdateContainer", pb.agent.UpdateContainerRequest(
        container_id=cid, resources=pb.oci.LinuxResources(Memory=pb.oci.LinuxMemory(Limit=48 * MiB),
                                                          Pids=pb.oci.LinuxPids(Limit=10))))
    # seen from the host ...
    assert cg_read("pids", cid, "pids.max") == "10"
    assert int(cg_read("memory", cid, "memory.limit_in_bytes")) == 48 * MiB
    # ... and inside the container
    s.exec(cid, "cat", ["/bin/cat", "/sys/fs/cgroup/pids/pids.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"])
    assert s.read_all(cid, "cat") == b"10\n%d\n" % (48 * MiB)
    assert s.wait(cid, "cat") == 0
    # a fork bomb stops at the limit
    s.exec(cid, "bomb", ["/bin/sh", "-c",
                         "for i in $(seq 1 40); do sleep 100 </dev/null >/dev/null 2>&1 & done; echo all-started"])
    out = s.read_all(cid, "bomb")
    err = s.read_all(cid, "bomb", stream="ReadStderr")
    assert s.wait(cid, "bomb") != 0
    assert b"all-started" not in out and b"can't fork" in err, (out, err)
    assert int(cg_read("pids", cid, "pids.current")) <= 10
    assert int(cg_read("pids", cid, "pids.events").split()[-1]) > 0  # "max N": forks refused
    # the bomb's sleeps stay (zombies under the container's init count too): raise the limit again
    s.call("UpdateContainer", pb.agent.UpdateContainerRequest(
        container_id=cid, resources=pb.oci.LinuxResources(Pids=pb.oci.LinuxPids(Limit=200))))
    assert cg_read("pids", cid, "pids.max") == "200"
    # 48 MiB: allocating 100 MiB is OOM-killed; raised to 256 MiB live, the same succeeds
    s.exec(cid, "big1", OOM_ARGS)
    assert s.wait(cid, "big1") == 9  # OOM-killed
    assert oom_event(s, 10) == cid
    s.call("UpdateContainer", pb.agent.UpdateContainerRequest(
        container_id=cid, resources=pb.oci.LinuxResources(Memory=pb.oci.LinuxMemory(Limit=256 * MiB))))
    assert int(cg_read("memory", cid, "memory.limit_in_bytes")) == 256 * MiB
    s.exec(cid, "big2", ["/bin/sh", "-c", "head -c 100m /dev/zero | tail | wc -c"])
    assert s.read_all(cid, "big2") == b"%d\n" % (100 * MiB)
    assert s.wait(cid, "big2") == 0
    assert_no_oom_event(s, 0.5)
    s.remove(cid)
    a.check_no_leaks(before)


def test_update_invalid_value_changes_nothing(s, sandbox_agent, busybox_rootfs, pb):
    v1_only()
    a = sandbox_agent
    cid = a.cid()
    s.run(cid, s.oci.spec(busybox_rootfs, ["/bin/sleep", "1000"], resources=pb.oci.LinuxResources(
        Pids=pb.oci.LinuxPids(Limit=50), Memory=pb.oci.LinuxMemory(Limit=64 * MiB))))
    shares = cg_read("cpu", cid, "cpu.shares")
    bad = [
        # valid pids, cpu and memory limit, then an invalid swappiness
        (pb.oci.LinuxResources(Pids=pb.oci.LinuxPids(Limit=20), CPU=pb.oci.LinuxCPU(Shares=512),
                               Memory=pb.oci.LinuxMemory(Limit=32 * MiB, Swappiness=200)), "swappiness"),
        (pb.oci.LinuxResources(Pids=pb.oci.LinuxPids(Limit=20), CPU=pb.oci.LinuxCPU(Quota=5)), "cpu.quota"),
        (pb.oci.LinuxResources(Pids=pb.oci.LinuxPids(Limit=20), CPU=pb.oci.LinuxCPU(Cpus="1-0")), "cpu.cpus"),
        (pb.oci.LinuxResources(Pids=pb.oci.LinuxPids(Limit=20),
                               Memory=pb.oci.LinuxMemory(Limit=64 * MiB, Swap=32 * MiB)), "swap"),
        (pb.oci.LinuxResources(Pids=pb.oci.LinuxPids(Limit=20), Memory=pb.oci.LinuxMemory(Limit=-5)),
         "memory.limit"),
    ]
    for res, word in bad:
        with pytest.raises(RpcError) as e:
            s.call("UpdateContainer", pb.agent.UpdateContainerRequest(container_id=cid, resources=res))
        assert e.value.code == INVALID_ARGUMENT and word in e.value.message, e.value.message
        assert cg_read("pids", cid, "pids.max") == "50"
        assert int(cg_read("memory", cid, "memory.limit_in_bytes")) == 64 * MiB
        assert cg_read("cpu", cid, "cpu.shares") == shares
        s.c.health()
    s.call("UpdateContainer", pb.agent.UpdateContainerRequest(
        container_id=cid, resources=pb.oci.LinuxResources(Pids=pb.oci.LinuxPids(Limit=20))))
    assert cg_read("pids", cid, "pids.max") == "20"
    s.call("UpdateContainer", pb.agent.UpdateContainerRequest(
        container_id=cid, resources=pb.oci.LinuxResources(Pids=pb.oci.LinuxPids(Limit=0))))
    assert cg_read("pids", cid, "pids.max") == "max"
    s.remove(cid)


def test_update_refused_by_the_kernel_is_rolled_back(s, sandbox_agent, busybox_rootfs, pb):
    """A memory limit below what the container uses (tmpfs pages, no swap to push them to) is refused by the
    kernel (EBUSY) after cpu.shares was already written: the update fails and cpu.shares is back."""
    v1_only()
    a = sandbox_agent
    cid = a.cid()
    s.run(cid, s.oci.spec(busybox_rootfs, ["/bin/sh", "-c", "dd if=/dev/zero of=/dev/fill bs=1M count=24; "
                                                        "echo filled; exec sleep 1000"],
                          resources=pb.oci.LinuxResources(Memory=pb.oci.LinuxMemory(Limit=64 * MiB),
                                                          Pids=pb.oci.LinuxPids(Limit=50))))
    r = s.call("ReadStdout", pb.agent.ReadStreamRequest(container_id=cid, len=64), pb.agent.ReadStreamResponse)
    assert b"filled" in r.data
    shares = cg_read("cpu", cid, "cpu.shares")
    assert shares != "512"
    with pytest.raises(RpcError) as e:
        s.call("UpdateContainer", pb.agent.UpdateContainerRequest(container_id=cid, resources=pb.oci.LinuxResources(
            CPU=pb.oci.LinuxCPU(Shares=512), Memory=pb.oci.LinuxMemory(Limit=8 * MiB),
            Pids=pb.oci.LinuxPids(Limit=20))))
    assert "memory.limit_in_bytes" in e.value.message and "busy" in e.value.message.lower(), e.value.message
    assert cg_read("cpu", cid, "cpu.shares") == shares
    assert int(cg_read("memory", cid, "memory.limit_in_bytes")) == 64 * MiB
    assert cg_read("pids", cid, "pids.max") == "50"
    assert "the previous values are restored" in a.log_text()
    s.signal(cid, "", 9)
    s.wait(cid)
    s.remove(cid)


def test_update_cpuset_widening(s, sandbox_agent, busybox_rootfs, pb):
    v1_only()
    if (os.cpu_count() or 1) < 2 or cg_read("cpuset", "", "cpuset.cpus") != "0-%d" % (os.cpu_count() - 1):
        pytest.skip("needs 2 online CPUs")
    a = sandbox_agent
    parent, cid = a.cid("parent"), a.cid()
    hi = os.cpu_count() - 1
    try:
        s.run(cid, s.oci.spec(busybox_rootfs, ["/bin/sleep", "1000"], cgroups_path=f"{parent}:{cid}",
                              resources=pb.oci.LinuxResources(CPU=pb.oci.LinuxCPU(Cpus="0"))))
        leaf = f"{parent}/{cid}"
        assert cg_read("cpuset", leaf, "cpuset.cpus") == "0"
        # the parent is narrower than the CPUs the update asks for (as after a CPU hot-plug)
        with open(f"{CG}/cpuset/{parent}/cpuset.cpus", "w") as f:
            f.write("0")
        s.call("UpdateContainer", pb.agent.UpdateContainerRequest(
            container_id=cid, resources=pb.oci.LinuxResources(CPU=pb.oci.LinuxCPU(Cpus=f"0-{hi}"))))
        assert cg_read("cpuset", parent, "cpuset.cpus") == f"0-{hi}"
        assert cg_read("cpuset", leaf, "cpuset.cpus") == f"0-{hi}"
        s.exec(cid, "aff", ["/bin/sh", "-c", "grep Cpus_allowed_list /proc/self/status"])
        assert s.read_all(cid, "aff").split()[-1] == f"0-{hi}".encode()
        s.wait(cid, "aff")
        # narrowing needs no widening
        s.call("UpdateContainer", pb.agent.UpdateContainerRequest(
            container_id=cid, resources=pb.oci.LinuxResources(CPU=pb.oci.LinuxCPU(Cpus=str(hi)))))
        assert cg_read("cpuset", leaf, "cpuset.cpus") == str(hi)
        s.remove(cid)
    finally:
        for ctl in os.listdir(CG):
            for d in (f"{CG}/{ctl}/{parent}/{cid}", f"{CG}/{ctl}/{parent}"):
                try:
                    os.rmdir(d)
                except OSError:
                    pass


# ---------------------------------------------------------------------------------------------------------
# PauseContainer / ResumeContainer


def test_pause_stops_output_and_resume_continues(s, sandbox_agent, busybox_rootfs, pb):
    a = sandbox_agent
    before = baseline(s, a, busybox_rootfs)
    cid = a.cid()
    s.run(cid, s.oci.spec(busybox_rootfs, ["/bin/sh", "-c", COUNTER]))
    out = read_some(s, cid, 5)
    s.call("PauseContainer", pb.agent.PauseContainerRequest(container_id=cid))
    if os.path.isdir(f"{CG}/freezer/{cid}"):
        assert cg_read("freezer", cid, "freezer.state") == "FROZEN"
    # what was written before the freeze, then nothing
    for _ in range(20):
        r = drain(s, cid, 0.2)
        if not r:
            break
        out += r
    time.sleep(0.5)
    assert read_nothing(s, cid, 0.3)
    stats(s, cid)  # a paused container still answers stats
    with pytest.raises(RpcError) as e:
        s.call("PauseContainer", pb.agent.PauseContainerRequest(container_id=cid))
    assert e.value.code == FAILED_PRECONDITION and "current status is: paused" in e.value.message
    with pytest.raises(RpcError) as e:
        s.exec(cid, "e1", ["/bin/true"])
    assert "paused" in e.value.message
    s.call("ResumeContainer", pb.agent.ResumeContainerRequest(container_id=cid))
    out += read_some(s, cid, 3)
    nums = [int(x) for x in out.split()]
    assert len(nums) >= 8 and nums == list(range(len(nums)))  # the counter went on from where it stopped
    with pytest.raises(RpcError) as e:
        s.call("ResumeContainer", pb.agent.ResumeContainerRequest(container_id=cid))
    assert e.value.code == FAILED_PRECONDITION and "not paused" in e.value.message
    s.remove(cid)
    a.check_no_leaks(before)


def test_pause_while_created_then_start(s, sandbox_agent, busybox_rootfs, pb):
    cid = sandbox_agent.cid()
    s.create(cid, s.oci.spec(busybox_rootfs, ["/bin/echo", "hello"]))
    s.call("PauseContainer", pb.agent.PauseContainerRequest(container_id=cid))
    with pytest.raises(RpcError):
        s.start(cid)  # a paused container is not started
    s.call("ResumeContainer", pb.agent.ResumeContainerRequest(container_id=cid))
    s.start(cid)  # back to created: starts (upstream would call it running)
    assert s.read_all(cid) == b"hello\n"
    assert s.wait(cid) == 0
    s.remove(cid)


def test_remove_paused_container(s, sandbox_agent, busybox_rootfs, pb):
    a = sandbox_agent
    before = baseline(s, a, busybox_rootfs)
    cid = a.cid()
    s.run(cid, s.oci.spec(busybox_rootfs, ["/bin/sleep", "1000"]))
    s.call("PauseContainer", pb.agent.PauseContainerRequest(container_id=cid))
    s.remove(cid)
    a.check_no_leaks(before)


def pipeline(s, calls):
    """Send every (service, method, request) in one write; return the replies in arrival order as
    (index in calls, code, message)."""
    sids, blob = [], b""
    for svc, method, req in calls:
        sid, s.c.next_id = s.c.next_id, s.c.next_id + 2
        frame = s.c.request_bytes(svc, method, req.SerializeToString())
        blob += HDR.pack(len(frame), sid, T_REQUEST, 0) + frame
        sids.append(sid)
    s.c.sock.sendall(blob)
    got = []
    for _ in calls:
        sid, code, msg, _ = s.c.recv(timeout=30)
        got.append((sids.index(sid), code, msg))
    return got


def test_health_answered_while_pause_in_progress(s, sandbox_agent, busybox_rootfs, pb):
    """PauseContainer waits for the freezer from the event loop: Health.Check calls pipelined behind it on the
    same connection are answered while the freeze is in progress (before the Pause reply), and all succeed."""
    cid = sandbox_agent.cid()
    s.run(cid, s.oci.spec(busybox_rootfs, ["/bin/sh", "-c", SPINNERS]))
    assert read_some(s, cid, 1) == b"ready\n"
    health = ("grpc.Health", "Check", pb.health.CheckRequest())
    calls = [(SVC, "PauseContainer", pb.agent.PauseContainerRequest(container_id=cid))] + [health] * 5
    got = pipeline(s, calls)
    assert sorted(i for i, _, _ in got) == list(range(len(calls)))
    assert all(code == 0 for _, code, _ in got), got
    order = [i for i, _, _ in got]
    assert order.index(0) > 0, order  # a Health reply left before the freeze was over
    if os.path.isdir(f"{CG}/freezer/{cid}"):
        assert cg_read("freezer", cid, "freezer.state") == "FROZEN"
    with pytest.raises(RpcError) as e:
        s.call("PauseContainer", pb.agent.PauseContainerRequest(container_id=cid))
    assert e.value.code == FAILED_PRECONDITION and "current status is: paused" in e.value.message
    s.call("ResumeContainer", pb.agent.ResumeContainerRequest(container_id=cid))
    if os.path.isdir(f"{CG}/freezer/{cid}"):
        assert cg_read("freezer", cid, "freezer.state") == "THAWED"
    s.remove(cid)
    s.c.health()


def test_remove_during_pause_aborts_it(s, sandbox_agent, busybox_rootfs, pb):
    """RemoveContainer pipelined behind a PauseContainer still freezing: removal wins, the pause is answered
    ABORTED (or OK if it was already over), the container and its cgroups are gone."""
    a = sandbox_agent
    cid = a.cid()
    s.run(cid, s.oci.spec(busybox_rootfs, ["/bin/sh", "-c", SPINNERS]))
    assert read_some(s, cid, 1) == b"ready\n"
    got = pipeline(s, [(SVC, "PauseContainer", pb.agent.PauseContainerRequest(container_id=cid)),
                       (SVC, "RemoveContainer", pb.agent.RemoveContainerRequest(container_id=cid, timeout=10))])
    codes = {i: (code, msg) for i, code, msg in got}
    assert codes[0][0] in (0, ABORTED), codes
    if codes[0][0] == ABORTED:
        assert "being removed" in codes[0][1]
    assert codes[1][0] == 0, codes
    for ctl in ("freezer", "memory", "pids"):
        assert not os.path.exists(f"{CG}/{ctl}/{cid}")
    with pytest.raises(RpcError):
        s.call("ResumeContainer", pb.agent.ResumeContainerRequest(container_id=cid))
    s.c.health()

def test_pause_cancelled_by_its_deadline_leaves_container_running(s, sandbox_agent, busybox_rootfs, pb):
    """A PauseContainer whose timeout_nano expires before the freeze is over is cancelled: DEADLINE_EXCEEDED,
    the freeze undone, the container still running (a later pause and resume work)."""
    cid = sandbox_agent.cid()
    s.run(cid, s.oci.spec(busybox_rootfs, ["/bin/sh", "-c", SPINNERS]))
    assert read_some(s, cid, 1) == b"ready\n"
    try:
        s.call("PauseContainer", pb.agent.PauseContainerRequest(container_id=cid), timeout_ns=1)
        paused = True  # the freeze was over at once (not expected with busy processes): also a defined end
    except RpcError as e:
        assert e.code == DEADLINE_EXCEEDED, e
        paused = False
    if os.path.isdir(f"{CG}/freezer/{cid}"):
        assert cg_read("freezer", cid, "freezer.state") == ("FROZEN" if paused else "THAWED")
    if paused:
        s.call("ResumeContainer", pb.agent.ResumeContainerRequest(container_id=cid))
    with pytest.raises(RpcError) as e:
        s.call("ResumeContainer", pb.agent.ResumeContainerRequest(container_id=cid))
    assert e.value.code == FAILED_PRECONDITION and "not paused" in e.value.message
    s.call("PauseContainer", pb.agent.PauseContainerRequest(container_id=cid))
    s.call("ResumeContainer", pb.agent.ResumeContainerRequest(container_id=cid))
    s.remove(cid)


# every process traps SIGUSR1 and says so (once its trap is set: up-N); children exit after it, the init goes on
CHILD = "sh -c \"trap 'echo got-$n >/proc/1/fd/1; exit 0' USR1; echo up-$n >/proc/1/fd/1; while :; do usleep 20000; done\" &"
TRAPS = f"trap 'echo got-init' USR1; for n in 1 2 3; do {CHILD} done; while :; do usleep 20000; done"


def tokens(s, cid, want, timeout_s=10):
    """Words read from the init's stdout until every one of want was seen (or timeout_s)."""
    out = set()
    deadline = time.time() + timeout_s
    while not want <= out and time.time() < deadline:
        out |= set(drain(s, cid, 0.5).decode().split())
    return out


def test_signal_all_reaches_every_process_and_keeps_paused(s, sandbox_agent, busybox_rootfs, pb):
    """SignalProcess with exec_id "" reaches the init and every other process of the container (freeze, signal,
    thaw from the event loop); on a paused container it is answered at once and the container stays paused
    (the signals are delivered on resume)."""
    cid = sandbox_agent.cid()
    s.run(cid, s.oci.spec(busybox_rootfs, ["/bin/sh", "-c", TRAPS]))
    assert tokens(s, cid, {"up-1", "up-2", "up-3"}) >= {"up-1", "up-2", "up-3"}
    want = {"got-1", "got-2", "got-3", "got-init"}
    s.signal(cid, "", signal.SIGUSR1)
    assert tokens(s, cid, want) >= want
    if os.path.isdir(f"{CG}/freezer/{cid}"):
        assert cg_read("freezer", cid, "freezer.state") == "THAWED"

    # new children, then the same on a paused container
    s.exec(cid, "kids", ["/bin/sh", "-c", f"for n in 4 5; do {CHILD} done; wait"])
    assert tokens(s, cid, {"up-4", "up-5"}) >= {"up-4", "up-5"}
    s.call("PauseContainer", pb.agent.PauseContainerRequest(container_id=cid))
    s.signal(cid, "", signal.SIGUSR1)
    with pytest.raises(RpcError) as e:
        s.call("PauseContainer", pb.agent.PauseContainerRequest(container_id=cid))
    assert e.value.code == FAILED_PRECONDITION and "current status is: paused" in e.value.message
    if os.path.isdir(f"{CG}/freezer/{cid}"):
        assert cg_read("freezer", cid, "freezer.state") == "FROZEN"
    assert read_nothing(s, cid, 0.3)  # frozen: no trap ran
    s.call("ResumeContainer", pb.agent.ResumeContainerRequest(container_id=cid))
    want = {"got-4", "got-5", "got-init"}
    assert tokens(s, cid, want) >= want
    assert s.wait(cid, "kids") == signal.SIGUSR1  # the exec'd shell too (no trap: killed by it)
    s.remove(cid)

# ---------------------------------------------------------------------------------------------------------
# OOM events


def oom_container(s, cid, rootfs, pb, limit=32 * MiB):
    s.run(cid, s.oci.spec(rootfs, OOM_ARGS, resources=mem_limit(pb, limit)))


def test_oom_kill_gives_exactly_one_event(s, sandbox_agent, busybox_rootfs, pb):
    v1_only()
    a = sandbox_agent
    before = baseline(s, a, busybox_rootfs)
    victim, bystander = a.cid("victim"), a.cid("bystander")
    s.run(bystander, s.oci.spec(busybox_rootfs, ["/bin/sleep", "1000"], resources=mem_limit(pb, 32 * MiB)))
    poll = s.c.send(SVC, "GetOOMEvent", pb.agent.GetOOMEventRequest())  # waiting before the OOM
    time.sleep(0.2)
    oom_container(s, victim, busybox_rootfs, pb)
    rsid, code, msg, payload = s.c.recv(timeout=30)
    assert rsid == poll and code == 0, msg
    assert pb.agent.OOMEvent.FromString(payload).container_id == victim
    assert s.wait(victim) == 9  # SIGKILL
    assert cg_kv("memory", victim, "memory.oom_control").get("oom_kill") == 1  # the kernel saw one kill
    assert_no_oom_event(s, 1.5)  # exactly one event
    # the bystander is fine and had no OOM
    s.exec(bystander, "e1", ["/bin/echo", "alive"])
    assert s.read_all(bystander, "e1") == b"alive\n"
    assert s.wait(bystander, "e1") == 0
    assert cg_kv("memory", bystander, "memory.oom_control").get("oom_kill") == 0
    s.remove(victim)
    s.remove(bystander)
    a.check_no_leaks(before)


def test_oom_events_queue_in_order_while_nobody_polls(s, sandbox_agent, busybox_rootfs, pb):
    v1_only()
    a = sandbox_agent
    ids = [a.cid(f"v{i}") for i in range(3)]
    for cid in ids:
        oom_container(s, cid, busybox_rootfs, pb)
        assert s.wait(cid) == 9  # SIGKILL
        time.sleep(0.3)  # the kill is confirmed within a few ms: the events are produced in this order
    assert [oom_event(s, 5) for _ in ids] == ids
    assert_no_oom_event(s, 1.0)
    for cid in ids:
        s.remove(cid)


def test_oom_poller_that_disconnects_loses_nothing(s, sandbox_agent, busybox_rootfs, pb):
    v1_only()
    a = sandbox_agent
    cid = a.cid()
    # one poller disconnects mid-poll, another gives up on its deadline
    gone = a.connect(pb)
    gone.send(SVC, "GetOOMEvent", pb.agent.GetOOMEventRequest())
    time.sleep(0.1)
    gone.close()
    a.clients.remove(gone)
    assert_no_oom_event(s, 0.3)
    oom_container(s, cid, busybox_rootfs, pb)
    assert s.wait(cid) == 9
    time.sleep(0.3)
    other = a.connect(pb)
    assert other.call(SVC, "GetOOMEvent", pb.agent.GetOOMEventRequest(), pb.agent.OOMEvent).container_id == cid
    assert_no_oom_event(s, 0.5)
    s.remove(cid)


def test_no_oom_event_without_a_kill(s, sandbox_agent, busybox_rootfs, pb):
    """The OOM killer disabled: the allocating process waits at its limit, nothing is killed, no event."""
    v1_only()
    a = sandbox_agent
    cid = a.cid()
    # the shell grows its command substitution buffer itself (user-mode page faults wait at the limit)
    script = "x=$(head -c 200m /dev/zero | tr '\\0' a); echo survived"
    s.run(cid, s.oci.spec(busybox_rootfs, ["/bin/sh", "-c", script],
                          resources=mem_limit(pb, 32 * MiB, DisableOOMKiller=True)))
    deadline = time.time() + 10
    while cg_kv("memory", cid, "memory.oom_control").get("under_oom") != 1 and time.time() < deadline:
        time.sleep(0.05)
    assert cg_kv("memory", cid, "memory.oom_control").get("under_oom") == 1
    assert_no_oom_event(s, 3.0)  # longer than the kill confirmation window
    s.remove(cid)


# ---------------------------------------------------------------------------------------------------------
# UpdateEphemeralMounts, RemoveStaleVirtiofsShareMounts

EPH = "/run/kata-containers/sandbox/ephemeral"


def tmpfs_mount(agent, mp):
    """(per-mount options, super options) of the top mount at mp in the agent's namespace, or None."""
    found = None
    for line in agent.mounts():
        left, _, right = line.partition(" - ")
        f, r = left.split(), right.split()
        if f[4] == mp:
            found = (set(f[5].split(",")), set(r[2].split(",")))
    return found


def eph(pb, name, options, driver="ephemeral"):
    return pb.agent.Storage(driver=driver, source="tmpfs", fstype="tmpfs", options=options,
                            mount_point=f"{EPH}/{name}")


def test_update_ephemeral_mounts(s, sandbox_agent, pb):
    a = sandbox_agent
    s.create_sandbox(sandbox_id=a.cid("sb"), hostname="h",
                     storages=[eph(pb, "a", ["nosuid", "nodev", "size=1M"]), eph(pb, "b", ["size=1M"])])
    assert "size=1024k" in tmpfs_mount(a, f"{EPH}/a")[1]
    # every storage is updated (upstream stops after the first), other flags are kept
    s.call("UpdateEphemeralMounts", pb.agent.UpdateEphemeralMountsRequest(
        storages=[eph(pb, "a", ["remount", "size=2M"]), eph(pb, "b", ["remount", "size=3M", "fsgid=1000"])]))
    mnt, sup = tmpfs_mount(a, f"{EPH}/a")
    assert "size=2048k" in sup and {"nosuid", "nodev"} <= mnt
    assert "size=3072k" in tmpfs_mount(a, f"{EPH}/b")[1]
    # refused before anything is remounted: a mount point the sandbox did not mount, a non-ephemeral driver,
    # a path escaping with "..", a bind option
    for bad, code, word in (
            (eph(pb, "c", ["remount", "size=5M"]), NOT_FOUND, "not the mount point of a storage"),
            (eph(pb, "b", ["remount", "size=5M"], driver="local"), INVALID_ARGUMENT, "Unsupported storage type"),
            (pb.agent.Storage(driver="ephemeral", fstype="tmpfs", options=["remount", "size=5M"],
                              mount_point=f"{EPH}/a/../../../../../etc"), INVALID_ARGUMENT, ".."),
            (eph(pb, "b", ["remount", "bind"]), INVALID_ARGUMENT, "bind")):
        with pytest.raises(RpcError) as e:
            s.call("UpdateEphemeralMounts", pb.agent.UpdateEphemeralMountsRequest(
                storages=[eph(pb, "a", ["remount", "size=4M"]), bad]))
        assert e.value.code == code and word in e.value.message, e.value.message
        assert "size=2048k" in tmpfs_mount(a, f"{EPH}/a")[1]
    # a size below what is used fails cleanly
    subprocess.run(["nsenter", "-t", str(a.pid), "-m", "dd", "if=/dev/zero", f"of={EPH}/b/fill", "bs=1M",
                    "count=2"], check=True, capture_output=True)
    with pytest.raises(RpcError):
        s.call("UpdateEphemeralMounts", pb.agent.UpdateEphemeralMountsRequest(
            storages=[eph(pb, "b", ["remount", "size=1M"])]))
    assert "size=3072k" in tmpfs_mount(a, f"{EPH}/b")[1]
    # bounds: too many storages, options too long
    with pytest.raises(RpcError) as e:
        s.call("UpdateEphemeralMounts", pb.agent.UpdateEphemeralMountsRequest(
            storages=[eph(pb, "a", ["remount"])] * 2000))
    assert e.value.code == INVALID_ARGUMENT and "too many" in e.value.message
    with pytest.raises(RpcError) as e:
        s.call("UpdateEphemeralMounts", pb.agent.UpdateEphemeralMountsRequest(
            storages=[eph(pb, "a", ["remount", "x" * 5000])]))
    assert e.value.code == INVALID_ARGUMENT and "too long" in e.value.message
    # no options: nothing to do
    s.call("UpdateEphemeralMounts", pb.agent.UpdateEphemeralMountsRequest(storages=[eph(pb, "a", [])]))
    s.c.health()


def test_updated_ephemeral_mount_is_shared_with_its_new_options(s, sandbox_agent, pb, busybox_rootfs):
    """After UpdateEphemeralMounts the storage is known by its new options: a container naming them shares
    the mount; the old options no longer describe it and are refused."""
    a = sandbox_agent
    s.create_sandbox(sandbox_id=a.cid("sb"), hostname="h", storages=[eph(pb, "a", ["size=1M"])])
    s.call("UpdateEphemeralMounts", pb.agent.UpdateEphemeralMountsRequest(
        storages=[eph(pb, "a", ["remount", "size=2M"])]))
    spec = s.oci.spec(busybox_rootfs, ["/bin/true"])
    with pytest.raises(RpcError) as e:
        s.create(a.cid("old"), spec, storages=[eph(pb, "a", ["size=1M"])])
    assert "options" in e.value.message, e.value.message
    s.run(a.cid("new"), spec, storages=[eph(pb, "a", ["size=2M"])])
    assert s.wait(a.cid("new")) == 0
    s.remove(a.cid("new"))
    assert "size=2048k" in tmpfs_mount(a, f"{EPH}/a")[1]  # still mounted: the sandbox holds it


def test_remove_stale_virtiofs_share_mounts(s, sandbox_agent, pb):
    a = sandbox_agent
    s.call("RemoveStaleVirtiofsShareMounts", pb.agent.RemoveStaleVirtiofsShareMountsRequest())
    share = "/run/kata-containers/shared/containers/ka-share"
    subprocess.run(["nsenter", "-t", str(a.pid), "-m", "sh", "-c",
                    f"mkdir -p {share} && mount -t tmpfs kshare {share}"], check=True)
    try:
        s.call("RemoveStaleVirtiofsShareMounts", pb.agent.RemoveStaleVirtiofsShareMountsRequest())
        deadline = time.time() + 5
        while f"stat {share}: ok" not in a.log_text() and time.time() < deadline:
            time.sleep(0.05)
        assert f"stat {share}: ok" in a.log_text()
    finally:
        subprocess.run(["nsenter", "-t", str(a.pid), "-m", "umount", share], check=False)
    s.c.health()
