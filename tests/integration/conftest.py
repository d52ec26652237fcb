"""Shared fixtures: the agent under test, the ctl tool and Python protobuf modules generated from proto/.

Environment: KA_BUILD_DIR (meson build dir, default <repo>/build) selects the binaries, so the same tests
run against the normal and the sanitizer build."""
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import types

import pytest

from ttrpc_client import Client, wait_for_socket

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.abspath(os.environ.get("KA_BUILD_DIR", os.path.join(REPO, "build")))
AGENT = os.path.join(BUILD, "kata-agent")
CTL = os.path.join(BUILD, "kata-agent-ctl")


@pytest.fixture(scope="session")
def pb():
    """Python modules for the envelope and the kata protos (protoc --python_out at test time)."""
    out = tempfile.mkdtemp(prefix="ka-pb-")
    protos = ["ttrpc.proto", "types.proto", "oci.proto", "csi.proto", "health.proto", "agent.proto"]
    subprocess.run(["protoc", "-I", os.path.join(REPO, "proto"), "--python_out", out] + protos, check=True)
    sys.path.insert(0, out)
    mods = types.SimpleNamespace()
    for name in ["ttrpc", "types", "oci", "csi", "health", "agent"]:
        setattr(mods, name, importlib.import_module(name + "_pb2"))
    mods.empty = importlib.import_module("google.protobuf.empty_pb2")
    return mods


class Agent:
    """A running kata-agent process serving on a unix socket in a temporary directory."""

    def __init__(self, workdir, args=(), env=None, addr=None, cmdline="", wait=True):
        self.workdir = str(workdir)
        self.sock = os.path.join(self.workdir, "agent.sock")
        self.addr = addr or f"unix://{self.sock}"
        self.log_path = os.path.join(self.workdir, "agent.log")
        self.cmdline_path = os.path.join(self.workdir, "cmdline")
        with open(self.cmdline_path, "w") as f:
            f.write(cmdline)
        argv = [AGENT, "--cmdline", self.cmdline_path, "--log-level", "debug"]
        if addr is not False:
            argv += ["--server-addr", self.addr]
        argv += list(args)
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("KATA_AGENT_")}
        full_env.update(env or {})
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=full_env)
        if wait:
            wait_for_socket(self.sock, self.proc)

    @property
    def pid(self):
        return self.proc.pid

    def fd_count(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def rss_kib(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def log_records(self):
        recs = []
        for line in self.log_text().splitlines():
            line = line.strip()
            if line.startswith("{"):
                recs.append(json.loads(line))
        return recs

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=10):
        """SIGTERM, wait; returns the exit status (a sanitizer finding makes it non-zero)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture
def agent_factory(tmp_path):
    started = []

    def start(**kw):
        d = tmp_path / f"agent{len(started)}"
        d.mkdir()
        a = Agent(d, **kw)
        started.append(a)
        return a

    yield start
    for a in started:
        rc = a.stop()
        if rc not in (0, None):
            print(a.log_text()[-4000:])
        assert rc == 0, f"agent exited with status {rc} (sanitizer report or crash?)"


@pytest.fixture
def agent(agent_factory):
    return agent_factory()


@pytest.fixture
def client(agent, pb):
    c = Client(pb, agent.sock)
    yield c
    c.close()


def ctl(*args, addr=None, check=True, timeout=60):
    """Run kata-agent-ctl; returns CompletedProcess (stdout/stderr text)."""
    argv = [CTL] + (["-a", addr] if addr else []) + list(args)
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{argv} failed ({p.returncode}): {p.stderr}")
    return p
