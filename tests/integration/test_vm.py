"""End to end in a real VM: the static kata-agent as PID 1 of a qemu guest, driven from the host over
virtio-serial.

One VM per module (tests/vm/: setup.sh fetches the Debian cloud kernel into /var/tmp/ka-vm-kit, mkinitrd.sh
builds a busybox initramfs holding the agent, boot.sh boots it). qemu runs with TCG only (KVM on these hosts is
PVM and hangs Debian kernels) and exposes the guest port /dev/virtio-ports/agent.channel.0 as the host unix
socket RUN/agent.sock; the agent listens on serial:///dev/virtio-ports/agent.channel.0, and kata-agent-ctl
(`-a unix://RUN/agent.sock`) and the Python ttrpc client speak ttrpc over that byte stream, one connection at a
time. The tests run in file order against the one VM; the last one sends DestroySandbox, after which the agent
(PID 1) returns from main, the kernel panics ("Attempted to kill init") and, with panic=-1 -no-reboot, qemu
exits.

Binaries: kata-agent-ctl comes from KA_BUILD_DIR, the guest's kata-agent too when it is statically linked. The
sanitizer build (build-asan) links the agent dynamically, and the initramfs has no libraries: then the guest
runs the normal build's static <repo>/build/kata-agent instead (the test is skipped if there is none).
KA_VM_AGENT=PATH names the guest's agent explicitly (mkinitrd.sh refuses one that is not static). The kernel
kit is cached in KA_VM_KIT (default /var/tmp/ka-vm-kit) and reused; the first setup downloads ~27 MB.

The containers run with `kata-agent-ctl run --no-sandbox`: a plain `run` ends with DestroySandbox, which
would end the VM; the sandbox is created once (CreateSandbox) and destroyed by the last test."""
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import BUILD, CTL, REPO
from ttrpc_client import Client

VM_DIR = os.path.join(REPO, "tests", "vm")
KIT = os.environ.get("KA_VM_KIT", "/var/tmp/ka-vm-kit")
SVC = "grpc.AgentService"
BOOT_TIMEOUT = 90  # seconds from qemu start to the agent answering (about 5 s under TCG here)
DOWN_TIMEOUT = 30  # DestroySandbox -> qemu exited


def is_static(path):
    p = subprocess.run(["ldd", path], capture_output=True, text=True)
    return "=>" not in p.stdout


def guest_agent():
    if os.environ.get("KA_VM_AGENT"):  # an explicit static agent for the guest
        return os.environ["KA_VM_AGENT"]
    own = os.path.join(BUILD, "kata-agent")
    if is_static(own):
        return own
    normal = os.path.join(REPO, "build", "kata-agent")
    if os.path.exists(normal) and is_static(normal):
        return normal
    pytest.skip(f"{own} is linked dynamically and there is no static {normal} for the guest")


class VM:
    def __init__(self, run):
        self.run = run
        self.sock = os.path.join(run, "agent.sock")
        self.addr = "unix://" + self.sock
        self.console = os.path.join(run, "console.log")
        self.proc = None

    def console_text(self):
        try:
            with open(self.console, "rb") as f:
                return f.read().decode(errors="replace").replace("\r", "")
        except FileNotFoundError:
            return ""

    def tail(self, n=40):
        return "\n--- guest console (last lines) ---\n" + "\n".join(self.console_text().splitlines()[-n:])

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def ctl(self, *args, timeout=60, check=True):
        argv = [CTL, "-a", self.addr, "-t", str(timeout)] + list(args)
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 15)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{argv} hung{self.tail()}")
        if check and p.returncode != 0:
            raise AssertionError(f"{argv} failed ({p.returncode}): {p.stderr}{self.tail()}")
        return p

    def client(self, pb, timeout=60):
        return Client(pb, self.sock, timeout=timeout)


def wait_ready(vm):
    deadline = time.time() + BOOT_TIMEOUT
    while time.time() < deadline:
        if not vm.alive():
            raise AssertionError(f"qemu exited with {vm.proc.returncode} during boot{vm.tail()}")
        if os.path.exists(vm.sock):
            p = vm.ctl("health", timeout=3, check=False)
            if p.returncode == 0 and "SERVING" in p.stdout:
                return
        time.sleep(0.3)
    raise AssertionError(f"the agent did not answer within {BOOT_TIMEOUT} s{vm.tail()}")


@pytest.fixture(scope="module")
def vm():
    agent = guest_agent()
    t0 = time.time()
    p = subprocess.run([os.path.join(VM_DIR, "setup.sh"), KIT], capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, f"tests/vm/setup.sh failed: {p.stderr[-3000:]}"
    kit = p.stdout.strip().splitlines()[-1]
    run = tempfile.mkdtemp(prefix="ka-vm-")
    v = VM(run)
    try:
        initrd = os.path.join(run, "initrd.gz")
        subprocess.run([os.path.join(VM_DIR, "mkinitrd.sh"), kit, agent, initrd], check=True, timeout=120)
        t1 = time.time()
        v.proc = subprocess.Popen([os.path.join(VM_DIR, "boot.sh"), kit, initrd, run],
                                  env=dict(os.environ, VM_TIMEOUT="600"), start_new_session=True)
        wait_ready(v)
        print(f"\nVM kit+initramfs {t1 - t0:.1f} s, boot to first answer {time.time() - t1:.1f} s")
        yield v
    finally:
        if v.proc is not None and v.proc.poll() is None:
            v.proc.terminate()  # timeout passes SIGTERM on to qemu
            try:
                v.proc.wait(20)
            except subprocess.TimeoutExpired:
                v.proc.kill()  # timeout -k would follow with SIGKILL; make sure
                v.proc.wait()
        shutil.rmtree(run, ignore_errors=True)


@pytest.fixture(scope="module")
def sandbox(vm):
    vm.ctl("call", "CreateSandbox", '{"sandboxId": "vm-e2e", "hostname": "kata-vm"}')
    return vm


def read_all(c, pb, cid, stream):
    out = bytearray()
    while True:
        sid = c.send(SVC, stream, pb.agent.ReadStreamRequest(container_id=cid, exec_id="", len=32768))
        rsid, code, msg, payload = c.recv(timeout=60)
        assert rsid == sid
        if code != 0:
            assert "eof" in msg.lower(), (code, msg)
            return bytes(out)
        out += pb.agent.ReadStreamResponse.FromString(payload).data


def run_in_guest(vm, pb, oci, cid, script, **spec_kw):
    """CreateContainer/StartContainer/read/WaitProcess/RemoveContainer through the Python client."""
    with vm.client(pb) as c:
        spec = oci.spec("/rootfs", ["/bin/sh", "-c", script], **spec_kw)
        c.call(SVC, "CreateContainer", oci.create_container_request(cid, spec))
        c.call(SVC, "StartContainer", pb.agent.StartContainerRequest(container_id=cid))
        out = read_all(c, pb, cid, "ReadStdout")
        err = read_all(c, pb, cid, "ReadStderr")
        status = c.call(SVC, "WaitProcess", pb.agent.WaitProcessRequest(container_id=cid, exec_id=""),
                        pb.agent.WaitProcessResponse).status
        c.call(SVC, "RemoveContainer", pb.agent.RemoveContainerRequest(container_id=cid, timeout=10))
    return status, out.decode(errors="replace"), err.decode(errors="replace")


def test_health_and_version(vm):
    assert '"SERVING"' in vm.ctl("health").stdout
    out = vm.ctl("version").stdout
    want = subprocess.run([guest_agent(), "--version"], capture_output=True, text=True).stdout
    assert '"agentVersion"' in out
    version = out.split('"agentVersion": "')[1].split('"')[0]
    assert f"version {version} " in want, (out, want)
    assert '"announce"' in vm.console_text(), vm.tail()


def test_guest_details(sandbox, pb, oci):
    import json
    d = json.loads(sandbox.ctl("call", "GetGuestDetails", '{"memBlockSize": true}').stdout)
    assert d["agentDetails"]["initDaemon"] is True, d  # the agent found itself PID 1
    status, out, err = run_in_guest(sandbox, pb, oci, "sysfs",
                                    "cat /sys/devices/system/memory/block_size_bytes; uname -r")
    assert status == 0, (out, err, sandbox.tail())
    block_hex, kernel = out.split()
    assert int(d["memBlockSizeBytes"]) == int(block_hex, 16), (d, out)
    with open(os.path.join(KIT, "kver")) as f:
        assert kernel == f.read().strip()  # really inside the VM: the kit's kernel, not the host's


def test_agent_is_pid1(sandbox, pb, oci):
    # A container always gets a pid namespace of its own (upstream does so too), so the VM's PID 1 is seen
    # through a bind mount of the guest's /proc (the agent's own procfs) into the container.
    mounts = oci.DEFAULT_MOUNTS + (("/guestproc", "bind", "/proc", ("rbind", "ro")),)
    status, out, err = run_in_guest(sandbox, pb, oci, "pid1",
                                    "cat /guestproc/1/comm; tr '\\0' ' ' </guestproc/1/cmdline; echo; echo $$",
                                    mounts=mounts)
    assert status == 0, (out, err, sandbox.tail())
    comm, cmdline, own_pid = out.splitlines()[:3]
    assert comm == "kata-agent", out
    assert cmdline.strip() == "/usr/bin/kata-agent", out
    assert own_pid == "1", out  # the container's shell is PID 1 of its own namespace
    assert '"pid":1,' in sandbox.console_text(), sandbox.tail()  # the agent's log lines say so too


def test_run_echo(sandbox):
    p = sandbox.ctl("run", "--no-sandbox", "--id", "echo1", "/rootfs", "--", "echo", "hello")
    assert p.stdout == "hello\n", (p.stdout, p.stderr)


def test_run_nonzero_exit(sandbox):
    p = sandbox.ctl("run", "--no-sandbox", "--id", "exit3", "/rootfs", "--", "sh", "-c", "echo oops >&2; exit 3",
                    check=False)
    assert p.returncode == 3, (p.returncode, p.stdout, p.stderr, sandbox.tail())
    assert p.stdout == "" and "oops" in p.stderr, (p.stdout, p.stderr)


def test_host_reconnects(sandbox, pb):
    # The host hangs up and connects again at once, many times: the agent serves the port again each time.
    # (An agent that closed and re-opened the port lost about one request in twenty here: the guest kernel
    # discards what a port holds when it is closed; src/ttrpc/serial.c keeps it open.)
    for i in range(30):
        with sandbox.client(pb, timeout=10) as c:
            assert c.health().status == pb.health.HealthCheckResponse.SERVING
            c.call("grpc.Health", "Version", pb.health.CheckRequest(), pb.health.VersionCheckResponse)
    for i in range(3):
        assert '"SERVING"' in sandbox.ctl("health", timeout=30).stdout
    p = sandbox.ctl("run", "--no-sandbox", "--id", "again", "/rootfs", "--", "sh", "-c", "echo again")
    assert p.stdout == "again\n"


def test_destroy_sandbox_ends_vm(sandbox):
    """Last: DestroySandbox; the agent (PID 1) ends and so does the VM."""
    t = time.time()
    sandbox.ctl("call", "DestroySandbox", "{}")
    try:
        rc = sandbox.proc.wait(DOWN_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"qemu still running {DOWN_TIMEOUT} s after DestroySandbox{sandbox.tail()}")
    text = sandbox.console_text()
    print(f"\nDestroySandbox -> qemu exited ({rc}) in {time.time() - t:.1f} s")
    assert rc == 0, f"qemu exit status {rc}{sandbox.tail()}"  # 124: killed by timeout
    assert "kata-agent shutdown complete" in text, sandbox.tail()
    assert "Attempted to kill init" in text, sandbox.tail()  # PID 1 returned: the kernel panics, qemu exits
