"""Configuration through the real binary: kernel command line, environment, config file and flags in the
documented order; the endpoint allowlist; invalid options stop startup with an error naming them."""
import os
import subprocess
import time

import pytest

from conftest import AGENT, Agent
from ttrpc_client import UNIMPLEMENTED, Client, RpcError, wait_for_socket


def start_raw(tmp_path, args, cmdline="", env=None):
    cmd = tmp_path / "cmdline"
    cmd.write_text(cmdline)
    e = {k: v for k, v in os.environ.items() if not k.startswith("KATA_AGENT_")}
    e.update(env or {})
    return subprocess.Popen([AGENT, "--cmdline", str(cmd)] + args, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=e, text=True)


def stop(p):
    p.terminate()
    out = p.communicate(timeout=10)[0]
    assert p.returncode == 0, out
    return out


def test_server_addr_from_cmdline_env_and_flag(tmp_path, pb):
    s_cmd, s_env, s_flag = (str(tmp_path / n) for n in ("cmd.sock", "env.sock", "flag.sock"))
    p = start_raw(tmp_path, [], cmdline=f"quiet agent.server_addr=unix://{s_cmd} console=ttyS0")
    wait_for_socket(s_cmd, p)
    stop(p)
    p = start_raw(tmp_path, [], cmdline=f"agent.server_addr=unix://{s_cmd}",
                  env={"KATA_AGENT_SERVER_ADDR": f"unix://{s_env}"})
    wait_for_socket(s_env, p)
    assert not os.path.exists(s_cmd)
    stop(p)
    p = start_raw(tmp_path, ["--server-addr", f"unix://{s_flag}"], cmdline=f"agent.server_addr=unix://{s_cmd}",
                  env={"KATA_AGENT_SERVER_ADDR": f"unix://{s_env}"})
    wait_for_socket(s_flag, p)
    with Client(pb, s_flag) as c:
        assert c.health().status == 1
    stop(p)
    assert not os.path.exists(s_flag), "the agent removes the socket file it created"


@pytest.mark.parametrize("cmdline,word", [
    ("agent.log=loud", "agent.log"),
    ("agent.hotplug_timeout=soon", "agent.hotplug_timeout"),
    ("agent.container_pipe_size=-1", "agent.container_pipe_size"),
    ("agent.server_addr=", "agent.server_addr"),
    ("agent.config_file=/nonexistent/agent.toml", "/nonexistent/agent.toml"),
])
def test_bad_kernel_option_stops_startup(tmp_path, cmdline, word):
    p = start_raw(tmp_path, ["--server-addr", f"unix://{tmp_path}/x.sock"], cmdline=cmdline)
    out = p.communicate(timeout=10)[0]
    assert p.returncode != 0
    assert word in out, out


def test_bad_env_and_flag_stop_startup(tmp_path):
    p = start_raw(tmp_path, ["--server-addr", f"unix://{tmp_path}/x.sock"], env={"KATA_AGENT_LOG_LEVEL": "chatty"})
    out = p.communicate(timeout=10)[0]
    assert p.returncode != 0 and "KATA_AGENT_LOG_LEVEL" in out
    p = start_raw(tmp_path, ["--log-level", "chatty", "--server-addr", f"unix://{tmp_path}/x.sock"])
    out = p.communicate(timeout=10)[0]
    assert p.returncode != 0 and "chatty" in out


def test_bad_config_file_line_stops_startup(tmp_path):
    cfg = tmp_path / "agent.toml"
    cfg.write_text('log_level = "debug"\nserver_addr = 42\n')
    p = start_raw(tmp_path, ["--config", str(cfg)])
    out = p.communicate(timeout=10)[0]
    assert p.returncode != 0 and "server_addr" in out and ":2" in out, out


def test_config_file_allowlist(tmp_path, pb):
    sock = tmp_path / "a.sock"
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'server_addr = "unix://{sock}"\nlog_level = "debug"\n\n[endpoints]\n'
                   'allowed = ["GuestDetailsRequest", "ReadStreamRequest"]\n')
    # agent.* options are ignored once a config file is used
    p = start_raw(tmp_path, ["--config", str(cfg)], cmdline=f"agent.server_addr=unix://{tmp_path}/ignored.sock")
    wait_for_socket(str(sock), p)
    with Client(pb, str(sock)) as c:
        assert c.health().status == 1  # Health is never blocked
        c.call("grpc.AgentService", "GetGuestDetails", pb.agent.GuestDetailsRequest())
        with pytest.raises(RpcError) as e:
            c.call("grpc.AgentService", "GetOOMEvent", pb.agent.GetOOMEventRequest())
        assert (e.value.code, e.value.message) == (UNIMPLEMENTED, "GetOOMEventRequest is blocked")
        for m in ("ReadStdout", "ReadStderr"):  # one allowlist name for both: allowed, so they look it up
            with pytest.raises(RpcError) as e:
                c.call("grpc.AgentService", m, pb.agent.ReadStreamRequest(container_id="x"))
            assert e.value.message == "Invalid container id x"
    out = stop(p)
    assert not os.path.exists(tmp_path / "ignored.sock")
    assert '"config"' in out and "GuestDetailsRequest" in out


def test_config_file_without_endpoints_blocks_every_agent_method(tmp_path, pb):
    sock = tmp_path / "a.sock"
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'server_addr = "unix://{sock}"\n')
    p = start_raw(tmp_path, [], cmdline=f"agent.config_file={cfg}")
    wait_for_socket(str(sock), p)
    with Client(pb, str(sock)) as c:
        assert c.health().status == 1
        with pytest.raises(RpcError) as e:
            c.call("grpc.AgentService", "GetGuestDetails", pb.agent.GuestDetailsRequest())
        assert e.value.message == "GuestDetailsRequest is blocked"
    stop(p)


def test_log_level_filters(tmp_path, pb):
    sock = tmp_path / "a.sock"
    p = start_raw(tmp_path, [], cmdline=f"agent.server_addr=unix://{sock} agent.log=warn")
    wait_for_socket(str(sock), p)
    with Client(pb, str(sock)) as c:
        c.health()
    out = stop(p)
    assert '"DEBG"' not in out and '"INFO"' not in out


def test_version_flag():
    p = subprocess.run([AGENT, "--version"], capture_output=True, text=True)
    assert p.returncode == 0 and "kata-agent version 3.2.0-alpha0 (api version: 0.0.1" in p.stdout
