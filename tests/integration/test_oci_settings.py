"""Each OCI setting of a container, checked from inside it (or on the host where it lives there: cgroup
files, hook side effects) through the wire. The agent runs in a private mount namespace on this machine's
cgroup v1 hierarchies (the hybrid layout); the cgroup v2 code paths are covered by tests/unit/test_cgroup.c
on the unified hierarchy, which has no resource controllers here."""
import json
import os
import stat

import pytest

from test_containers import Session
from ttrpc_client import INTERNAL, INVALID_ARGUMENT, RpcError


@pytest.fixture
def s(sandbox_agent, pb, oci):
    return Session(sandbox_agent, pb, oci)


def run(s, rootfs, script, **kw):
    status, out, err = s.sh(s.agent.cid(), script, rootfs, **kw)
    assert status == 0, (status, out, err)
    return out


def status_field(text, key):
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return line.split(":", 1)[1].strip()
    raise KeyError(key)


def test_capabilities_and_no_new_privs(s, busybox_rootfs):
    out = run(s, busybox_rootfs, "cat /proc/self/status", caps=("CAP_NET_BIND_SERVICE", "CAP_KILL"),
              no_new_privileges=True)
    want = (1 << 10) | (1 << 5)
    for key in ("CapEff", "CapPrm", "CapBnd"):
        assert int(status_field(out, key), 16) == want, (key, out)
    assert int(status_field(out, "CapInh"), 16) == 0
    assert status_field(out, "NoNewPrivs") == "1"
    out = run(s, busybox_rootfs, "cat /proc/self/status", no_new_privileges=False)
    assert status_field(out, "NoNewPrivs") == "0"


def test_user_groups_rlimits_oom_score_adj(s, busybox_rootfs, pb):
    sp = dict(uid=1000, gid=1000, additional_gids=(10, 20), rlimits=(("RLIMIT_NOFILE", 300, 200),
                                                                      ("RLIMIT_CORE", 0, 0)))
    out = run(s, busybox_rootfs, "id -u; id -g; id -G; ulimit -n; ulimit -H -n; ulimit -c; echo $HOME; "
              "cat /proc/self/oom_score_adj", **sp)
    assert out.split("\n")[:8] == ["1000", "1000", "1000 10 20", "200", "300", "0", "/home/user", "0"]


def test_hostname_and_shared_uts(s, sandbox_agent, busybox_rootfs):
    # before CreateSandbox there is no shared UTS namespace: a new one with the spec's hostname
    assert run(s, busybox_rootfs, "hostname", hostname="own-name").strip() == "own-name"
    s.create_sandbox(hostname="pod-host", sandbox_id=sandbox_agent.cid("sb"))
    # afterwards every container joins the sandbox's UTS namespace (as upstream): the pod's hostname
    assert run(s, busybox_rootfs, "hostname", hostname="own-name").strip() == "pod-host"
    assert open(f"/proc/{sandbox_agent.pid}/root/proc/sys/kernel/hostname").read().strip() != "pod-host" or \
        os.uname().nodename == "pod-host"  # the agent's own hostname is untouched


def test_mounts_masked_and_readonly_paths(s, busybox_rootfs, rootfs_copy):
    mounts = tuple(s.oci.DEFAULT_MOUNTS) + (("/tmp", "tmpfs", "tmpfs", ("size=2m", "mode=1777")),)
    out = run(s, busybox_rootfs,
              "grep ' /tmp ' /proc/mounts; grep ' /proc ' /proc/mounts | head -1; "
              "wc -c < /proc/timer_list; ls /proc/acpi | wc -l; "
              "echo 1 > /proc/sys/kernel/ns_last_pid 2>&1 || echo ro-ok; "
              "echo x > /proc/sysrq-trigger 2>/dev/null || echo ro2-ok",
              mounts=mounts, masked_paths=("/proc/timer_list", "/proc/acpi"),
              readonly_paths=("/proc/sys", "/proc/sysrq-trigger"))
    lines = out.splitlines()
    assert "tmpfs /tmp tmpfs" in lines[0] and "size=2048k" in lines[0], out
    assert lines[1].startswith("proc /proc proc"), out
    assert lines[2].strip() == "0"  # masked file: /dev/null
    assert lines[3].strip() == "0"  # masked directory: empty
    assert "ro-ok" in out and "ro2-ok" in out
    out = run(s, rootfs_copy, "touch /newfile 2>/dev/null && echo rw-root || echo ro-root", readonly_root=True)
    assert out.strip() == "ro-root"
    out = run(s, rootfs_copy, "touch /newfile 2>/dev/null && echo rw-root || echo ro-root")
    assert out.strip() == "rw-root"


def test_seccomp_errno(s, busybox_rootfs, pb):
    sc = pb.oci.LinuxSeccomp(DefaultAction="SCMP_ACT_ALLOW", Architectures=["SCMP_ARCH_X86_64"],
                             Syscalls=[pb.oci.LinuxSyscall(Names=["mkdir", "mkdirat"], Action="SCMP_ACT_ERRNO",
                                                           errnoret=36)])
    out = run(s, busybox_rootfs, "mkdir /tmp/x 2>&1; echo done", seccomp=sc)
    assert "File name too long" in out and "done" in out, out


def test_cgroup_limits_written(s, sandbox_agent, busybox_rootfs, pb):
    cid = sandbox_agent.cid()
    res = pb.oci.LinuxResources(Memory=pb.oci.LinuxMemory(Limit=64 << 20, Swappiness=10),
                                Pids=pb.oci.LinuxPids(Limit=42), CPU=pb.oci.LinuxCPU(Shares=512, Quota=50000,
                                                                                   Period=100000))
    s.run(cid, s.oci.spec(busybox_rootfs, ["/bin/sleep", "100"], resources=res,
                          cgroups_path=f"/kata-test/{cid}"))
    base = "/sys/fs/cgroup"
    read = lambda ctl, f: open(f"{base}/{ctl}/kata-test/{cid}/{f}").read().strip()
    assert int(read("memory", "memory.limit_in_bytes")) == 64 << 20
    assert read("pids", "pids.max") == "42"
    assert read("cpu", "cpu.shares") == "512"
    assert read("cpu", "cpu.cfs_quota_us") == "50000"
    init = s.c.call("grpc.AgentService", "ExecProcess", s.oci.exec_process_request(cid, "p1", ["/bin/sh", "-c",
                                                                                            "cat /proc/self/cgroup"]))
    assert f"/kata-test/{cid}" in s.read_all(cid, "p1").decode()
    assert s.wait(cid, "p1") == 0
    s.remove(cid)
    assert not os.path.exists(f"{base}/memory/kata-test/{cid}")
    # the parent the agent made (in every hierarchy) is the test's to remove
    for ctl in os.listdir(base):
        if os.path.isdir(f"{base}/{ctl}/kata-test"):
            os.rmdir(f"{base}/{ctl}/kata-test")


def test_pids_limit_enforced(s, sandbox_agent, busybox_rootfs, pb):
    res = pb.oci.LinuxResources(Pids=pb.oci.LinuxPids(Limit=5))
    status, out, err = s.sh(s.agent.cid(), "for i in 1 2 3 4 5 6 7 8; do sleep 5 & done; echo spawned",
                            busybox_rootfs, resources=res)
    assert "can't fork" in out + err or "Resource temporarily unavailable" in out + err, (status, out, err)


def test_sysctl_and_devices(s, busybox_rootfs, pb):
    sp = s.oci.spec(busybox_rootfs, ["/bin/sh", "-c", "cat /proc/sys/kernel/shm_rmid_forced; ls -l /dev/fuse"],
                    sysctl={"kernel.shm_rmid_forced": "1"})
    sp.Linux.Devices.add(Path="/dev/fuse", Type="c", Major=10, Minor=229, FileMode=0o620, UID=0, GID=0)
    cid = s.agent.cid()
    s.run(cid, sp)
    out = s.read_all(cid).decode()
    assert out.splitlines()[0] == "1"
    assert out.splitlines()[1].startswith("crw--w----") and "10, 229" in out, out
    assert s.wait(cid) == 0
    s.remove(cid)


def test_sysctl_outside_namespace_refused(s, busybox_rootfs):
    with pytest.raises(RpcError) as e:
        s.create(s.agent.cid(), s.oci.spec(busybox_rootfs, ["/bin/true"], sysctl={"vm.swappiness": "1"}))
    assert e.value.code == INVALID_ARGUMENT and "vm.swappiness" in e.value.message


def test_user_namespace_with_maps(s, rootfs_copy, pb):
    """The rootfs belongs to the mapped root (host uid 100000), as a runtime prepares it."""
    os.system(f"chown -R 100000:100000 {rootfs_copy}")
    sp = s.oci.spec(rootfs_copy, ["/bin/sh", "-c", "id -u; cat /proc/self/uid_map"],
                    namespaces=("mount", "pid", "ipc", "uts", "network", "user"))  # sysfs needs a netns of the userns
    sp.Linux.UIDMappings.add(ContainerID=0, HostID=100000, Size=65536)
    sp.Linux.GIDMappings.add(ContainerID=0, HostID=100000, Size=65536)
    cid = s.agent.cid()
    s.run(cid, sp)
    out = s.read_all(cid).decode().split()
    assert out[0] == "0" and out[1:4] == ["0", "100000", "65536"], out
    assert s.wait(cid) == 0
    s.remove(cid)


def write_hook(path, body):
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body + "\n")
    os.chmod(path, 0o755)


def test_oci_hooks_run_with_state(s, sandbox_agent, rootfs_copy, tmp_path, pb):
    """prestart/createRuntime/poststart/poststop run in the agent's namespaces (their side effects land on
    the host path), createContainer/startContainer inside the container (the container's /tmp)."""
    log = tmp_path / "hooks.log"
    hook = str(tmp_path / "hook.sh")
    write_hook(hook, f'read state; echo "$1 $state" >> {log}')
    inner = os.path.join(rootfs_copy, "bin", "inner-hook")
    write_hook(inner, 'cat > /tmp/state-$1')  # runs in the container: writes into the container's /tmp
    sp = s.oci.spec(rootfs_copy, ["/bin/sh", "-c", "cat /tmp/state-start; echo; ls /tmp"],
                    mounts=tuple(m for m in s.oci.DEFAULT_MOUNTS))
    for kind in ("Prestart", "CreateRuntime", "Poststart", "Poststop"):
        getattr(sp.Hooks, kind).add(Path=hook, Args=["hook", kind])
    sp.Hooks.StartContainer.add(Path="/bin/inner-hook", Args=["inner-hook", "start"])
    cid = sandbox_agent.cid()
    s.run(cid, sp)
    out = s.read_all(cid).decode()
    assert s.wait(cid) == 0
    s.remove(cid)
    lines = log.read_text().splitlines()
    kinds = [l.split()[0] for l in lines]
    assert kinds == ["Prestart", "CreateRuntime", "Poststart", "Poststop"] or \
        kinds == ["CreateRuntime", "Prestart", "Poststart", "Poststop"], lines
    assert f'"id":"{cid}"' in lines[0] and '"status":"creating"' in lines[0]
    assert '"status":"stopped"' in lines[-1]
    assert f'"id":"{cid}"' in out and '"status":"created"' in out


def test_bundle_config_json_for_hooks(s, sandbox_agent, busybox_rootfs, tmp_path, pb):
    """<bundle>/config.json holds the spec in runtime-spec JSON (root.path = <bundle>/rootfs), as upstream
    writes it: a prestart hook finds it through the state's bundle and copies it out."""
    out = tmp_path / "config.json"
    hook = str(tmp_path / "copy-config.sh")
    write_hook(hook, 'read state; b=$(echo "$state" | sed \'s/.*"bundle":"\\([^"]*\\)".*/\\1/\'); '
                     f'cp "$b/config.json" {out}')
    sp = s.oci.spec(busybox_rootfs, ["/bin/true"], hostname="cfg", annotations={"io.katacontainers.x": "1"})
    sp.Hooks.Prestart.add(Path=hook, Args=["copy-config"], Timeout=5)
    sp.Linux.Devices.add(Path="/dev/fuse", Type="c", Major=10, Minor=229, FileMode=0o666)
    sp.Linux.Resources.Devices.add(Allow=True, Type="c", Major=-1, Minor=-1, Access="m")
    sp.Linux.Sysctl["kernel.domainname"] = "example"
    cid = sandbox_agent.cid()
    s.run(cid, sp)
    assert s.wait(cid) == 0
    s.remove(cid)
    cfg = json.loads(out.read_text())
    assert cfg["ociVersion"] == "1.0.2" and cfg["hostname"] == "cfg"
    assert cfg["root"]["path"] == f"/run/kata-containers/{cid}/rootfs"
    assert cfg["process"]["args"] == ["/bin/true"] and cfg["process"]["user"] == {"uid": 0, "gid": 0}
    assert cfg["process"]["noNewPrivileges"] is True and "CAP_KILL" in cfg["process"]["capabilities"]["bounding"]
    assert {"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024} in cfg["process"]["rlimits"]
    assert cfg["annotations"] == {"io.katacontainers.x": "1"}
    assert cfg["hooks"]["prestart"] == [{"path": hook, "args": ["copy-config"], "timeout": 5}]
    lx = cfg["linux"]
    assert {"type": "mount"} in lx["namespaces"] and lx["sysctl"] == {"kernel.domainname": "example"}
    assert {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666} in lx["devices"]
    assert {"allow": True, "type": "c", "access": "m"} in lx["resources"]["devices"]  # -1 = any: left out
    assert "/proc/kcore" in lx["maskedPaths"] and "/proc/sys" in lx["readonlyPaths"]
    assert cfg["mounts"][0]["destination"] == "/proc"


def test_failing_prestart_hook_fails_create(s, sandbox_agent, busybox_rootfs, tmp_path):
    hook = str(tmp_path / "bad.sh")
    write_hook(hook, "echo nope >&2; exit 3")
    sp = s.oci.spec(busybox_rootfs, ["/bin/true"])
    sp.Hooks.Prestart.add(Path=hook)
    before = sandbox_agent.snapshot()
    with pytest.raises(RpcError) as e:
        s.create(sandbox_agent.cid(), sp)
    assert "exit status 3" in e.value.message and "nope" in e.value.message
    sandbox_agent.check_no_leaks(before)


def test_guest_hooks_from_sandbox(s, sandbox_agent, busybox_rootfs, tmp_path):
    hooks = tmp_path / "guest-hooks"
    (hooks / "prestart").mkdir(parents=True)
    mark = tmp_path / "guest-hook-ran"
    write_hook(str(hooks / "prestart" / "10-mark"), f'echo "$1" > {mark}')  # args [name, type]
    s.create_sandbox(sandbox_id=sandbox_agent.cid("sb"), guest_hook_path=str(hooks))
    run(s, busybox_rootfs, "true")
    assert mark.read_text().strip() == "prestart"


def test_sandbox_storages(s, sandbox_agent, busybox_rootfs, pb):
    shm = "/run/kata-containers/sandbox/shm"
    s.create_sandbox(sandbox_id=sandbox_agent.cid("sb"), storages=[
        pb.agent.Storage(driver="ephemeral", source="shm", fstype="tmpfs", mount_point=shm,
                         options=["noexec", "nosuid", "nodev", "mode=1777", "size=3145728"]),
        pb.agent.Storage(driver="local", source="local", fstype="local",
                         mount_point="/run/kata-containers/sandbox/local/data", options=["mode=0750"])])
    mounts = tuple(m for m in s.oci.DEFAULT_MOUNTS if m[0] != "/dev/shm") + \
        (("/dev/shm", "bind", shm, ("rbind",)),)
    out = run(s, busybox_rootfs, "grep ' /dev/shm ' /proc/mounts", mounts=mounts)
    assert "size=3072k" in out and "noexec" in out, out
    st = os.stat(f"/proc/{sandbox_agent.pid}/root/run/kata-containers/sandbox/local/data")
    assert stat.S_IMODE(st.st_mode) == 0o750


def test_missing_kernel_module_is_a_clear_error(s, sandbox_agent, pb):
    with pytest.raises(RpcError) as e:
        s.create_sandbox(sandbox_id=sandbox_agent.cid("sb"),
                         kernel_modules=[pb.agent.KernelModule(name="no_such_module_xyz")])
    assert "no_such_module_xyz" in e.value.message
    assert s.c.health().status == 1


def test_device_cgroup_v1_rules(s, sandbox_agent, busybox_rootfs, pb):
    """A deny rule in Resources.Devices is enforced by the v1 devices cgroup: the node exists in the
    container but cannot be opened. (The OCI default devices, /dev/null, /dev/full..., stay allowed.)"""
    for deny, want in ((False, "open"), (True, "denied")):
        res = pb.oci.LinuxResources()
        if deny:
            res.Devices.add(Allow=False, Type="c", Major=10, Minor=229, Access="rw")  # mknod stays allowed
        sp = s.oci.spec(busybox_rootfs, ["/bin/sh", "-c", "(exec 3</dev/fuse) 2>/dev/null && echo open || echo denied"],
                        resources=res)
        sp.Linux.Devices.add(Path="/dev/fuse", Type="c", Major=10, Minor=229, FileMode=0o666)
        cid = sandbox_agent.cid(f"d{int(deny)}")
        s.run(cid, sp)
        assert s.read_all(cid).decode().strip() == want
        assert s.wait(cid) == 0
        s.remove(cid)


def test_cgroup_namespace(s, busybox_rootfs):
    out = run(s, busybox_rootfs, "cat /proc/self/cgroup", namespaces=("mount", "pid", "ipc", "uts", "cgroup"))
    assert all(line.endswith(":/") for line in out.split()), out


def test_unified_cgroup_hierarchy_option(sandbox_agent_factory, pb, oci, busybox_rootfs):
    """agent.unified_cgroup_hierarchy=true: containers go to the cgroup2 hierarchy (here the host's
    /sys/fs/cgroup/unified, which has no resource controllers) — born there with clone3(CLONE_INTO_CGROUP),
    execs join it, device rules are an eBPF program, and removal deletes the cgroup."""
    a = sandbox_agent_factory(cmdline="agent.unified_cgroup_hierarchy=true")
    s = Session(a, pb, oci)
    cid = a.cid()
    res = pb.oci.LinuxResources(Devices=[pb.oci.LinuxDeviceCgroup(Allow=False, Type="c", Major=10, Minor=229,
                                                                  Access="rw")])
    sp = oci.spec(busybox_rootfs, ["/bin/sh", "-c", "cat /proc/self/cgroup; "
                                   "(exec 3</dev/fuse) 2>/dev/null && echo open || echo denied; sleep 100"],
                  resources=res)
    sp.Linux.Devices.add(Path="/dev/fuse", Type="c", Major=10, Minor=229, FileMode=0o666)
    s.run(cid, sp)
    procs = open(f"/sys/fs/cgroup/unified/{cid}/cgroup.procs").read().split()
    assert len(procs) >= 1
    r = s.call("ReadStdout", pb.agent.ReadStreamRequest(container_id=cid, exec_id=cid, len=4096),
               pb.agent.ReadStreamResponse).data.decode()
    while "denied" not in r and "open" not in r:
        r += s.call("ReadStdout", pb.agent.ReadStreamRequest(container_id=cid, exec_id=cid, len=4096),
                    pb.agent.ReadStreamResponse).data.decode()
    assert f"0::/{cid}" in r and "denied" in r, r
    s.exec(cid, "e1", ["/bin/cat", "/proc/self/cgroup"])
    assert f"0::/{cid}" in s.read_all(cid, "e1").decode()
    assert s.wait(cid, "e1") == 0
    s.remove(cid)
    assert not os.path.exists(f"/sys/fs/cgroup/unified/{cid}")
