"""Builders for the container RPC messages (pb = the `pb` fixture namespace: pb.agent, pb.oci, pb.types).

The defaults are those of `runc spec` / `crun spec` (capabilities, mounts, masked and read-only paths, rlimits,
no_new_privileges) with the namespaces a Kata container gets: mount, pid, ipc, uts (no network: the sandbox's).
The Kata runtime itself strips `pid` from the spec and sends sandbox_pidns instead (spec §4.11); pass
namespaces=("mount", "ipc", "uts") to mimic it exactly. The `oci` fixture (conftest.py) binds pb:

    spec = oci.spec(rootfs, ["/bin/sh", "-c", "echo hi"], env=["A=1"], uid=1000, gid=1000)
    req = oci.create_container_request(cid, spec)
    client.call("grpc.AgentService", "CreateContainer", req)"""

PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_ENV = (PATH, "TERM=xterm")
DEFAULT_CAPS = ("CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE")  # bounding, effective, permitted
DEFAULT_NAMESPACES = ("mount", "pid", "ipc", "uts")
DEFAULT_RLIMITS = (("RLIMIT_NOFILE", 1024, 1024),)  # (type, hard, soft)

# (destination, type, source, options)
DEFAULT_MOUNTS = (
    ("/proc", "proc", "proc", ()),
    ("/dev", "tmpfs", "tmpfs", ("nosuid", "strictatime", "mode=755", "size=65536k")),
    ("/dev/pts", "devpts", "devpts", ("nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5")),
    ("/dev/shm", "tmpfs", "shm", ("nosuid", "noexec", "nodev", "mode=1777", "size=65536k")),
    ("/dev/mqueue", "mqueue", "mqueue", ("nosuid", "noexec", "nodev")),
    ("/sys", "sysfs", "sysfs", ("nosuid", "noexec", "nodev", "ro")),
)
# runc/crun also mount this one; opt in with mounts=DEFAULT_MOUNTS + (CGROUP_MOUNT,)
CGROUP_MOUNT = ("/sys/fs/cgroup", "cgroup", "cgroup", ("nosuid", "noexec", "nodev", "relatime", "ro"))

MASKED_PATHS = ("/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
                "/sys/devices/virtual/tpm")
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


def capabilities(pb, caps=DEFAULT_CAPS):
    caps = list(caps)
    return pb.oci.LinuxCapabilities(Bounding=caps, Effective=caps, Permitted=caps)


def process(pb, args, env=DEFAULT_ENV, cwd="/", terminal=False, uid=0, gid=0, additional_gids=(), caps=None,
            rlimits=(), no_new_privileges=False):
    """A Process as the runtime sends it in ExecProcess: no capabilities, rlimits or NNP unless given."""
    p = pb.oci.Process(Terminal=terminal, Args=list(args), Env=list(env), Cwd=cwd,
                       User=pb.oci.User(UID=uid, GID=gid, AdditionalGids=list(additional_gids)),
                       NoNewPrivileges=no_new_privileges)
    if caps is not None:
        p.Capabilities.CopyFrom(capabilities(pb, caps))
    for typ, hard, soft in rlimits:
        p.Rlimits.add(Type=typ, Hard=hard, Soft=soft)
    return p


def spec(pb, rootfs, args, env=DEFAULT_ENV, cwd="/", terminal=False, uid=0, gid=0, additional_gids=(),
         namespaces=DEFAULT_NAMESPACES, caps=DEFAULT_CAPS, mounts=DEFAULT_MOUNTS, masked_paths=MASKED_PATHS,
         readonly_paths=READONLY_PATHS, rlimits=DEFAULT_RLIMITS, no_new_privileges=True, cgroups_path="",
         resources=None, hostname=None, readonly_root=False, annotations=None, seccomp=None, sysctl=None):
    """A pb.oci.Spec for CreateContainer. namespaces: types, or (type, path) pairs; resources: a
    pb.oci.LinuxResources; seccomp: a pb.oci.LinuxSeccomp; caps=None sends no capabilities."""
    s = pb.oci.Spec(Version="1.0.2", Hostname=hostname or "",
                    Root=pb.oci.Root(Path=str(rootfs), Readonly=readonly_root),
                    Process=process(pb, args, env, cwd, terminal, uid, gid, additional_gids, caps, rlimits,
                                    no_new_privileges))
    for dest, typ, src, opts in mounts:
        s.Mounts.add(destination=dest, type=typ, source=src, options=list(opts))
    lx = s.Linux
    for ns in namespaces:
        typ, path = (ns, "") if isinstance(ns, str) else ns
        lx.Namespaces.add(Type=typ, Path=path)
    lx.MaskedPaths.extend(masked_paths)
    lx.ReadonlyPaths.extend(readonly_paths)
    lx.CgroupsPath = cgroups_path
    if resources is not None:
        lx.Resources.CopyFrom(resources)
    if seccomp is not None:
        lx.Seccomp.CopyFrom(seccomp)
    for k, v in (sysctl or {}).items():
        lx.Sysctl[k] = v
    for k, v in (annotations or {}).items():
        s.Annotations[k] = v
    return s


def create_container_request(pb, cid, spec, storages=(), devices=(), sandbox_pidns=False, exec_id=None):
    return pb.agent.CreateContainerRequest(container_id=cid, exec_id=exec_id or cid, OCI=spec,
                                           storages=list(storages), devices=list(devices),
                                           sandbox_pidns=sandbox_pidns)


def exec_process_request(pb, cid, exec_id, args, **kw):
    return pb.agent.ExecProcessRequest(container_id=cid, exec_id=exec_id, process=process(pb, args, **kw))


class Oci:
    """The builders with pb bound (what the `oci` fixture returns)."""

    PATH, DEFAULT_ENV, DEFAULT_CAPS, DEFAULT_NAMESPACES = PATH, DEFAULT_ENV, DEFAULT_CAPS, DEFAULT_NAMESPACES
    DEFAULT_MOUNTS, CGROUP_MOUNT = DEFAULT_MOUNTS, CGROUP_MOUNT
    MASKED_PATHS, READONLY_PATHS = MASKED_PATHS, READONLY_PATHS

    def __init__(self, pb):
        self.pb = pb

    def spec(self, rootfs, args, **kw):
        return spec(self.pb, rootfs, args, **kw)

    def process(self, args, **kw):
        return process(self.pb, args, **kw)

    def capabilities(self, caps=DEFAULT_CAPS):
        return capabilities(self.pb, caps)

    def create_container_request(self, cid, spec_, **kw):
        return create_container_request(self.pb, cid, spec_, **kw)

    def exec_process_request(self, cid, exec_id, args, **kw):
        return exec_process_request(self.pb, cid, exec_id, args, **kw)
