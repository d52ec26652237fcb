#!/usr/bin/python3
"""Write the fuzzing seed corpus (fuzz/seeds/): well-formed and malformed ttrpc frames for the agent's
methods. Run from the repo root; needs protoc and python3-protobuf."""
import importlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
out = tempfile.mkdtemp()
subprocess.run(["protoc", "-I", os.path.join(REPO, "proto"), "--python_out", out, "ttrpc.proto", "types.proto",
                "oci.proto", "csi.proto", "health.proto", "agent.proto"], check=True)
sys.path.insert(0, out)
ttrpc, agent, health, oci = (importlib.import_module(m + "_pb2") for m in ("ttrpc", "agent", "health", "oci"))


def frame(sid, service, method, msg=None, timeout=0, mtype=1):
    r = ttrpc.Request(service=service, method=method, payload=msg.SerializeToString() if msg else b"",
                      timeout_nano=timeout)
    data = r.SerializeToString()
    return struct.pack(">IIBB", len(data), sid, mtype, 0) + data


spec = oci.Spec(Version="1.0.2", Hostname="h", Process=oci.Process(Args=["/bin/true"], Cwd="/"),
                Root=oci.Root(Path="/run/rootfs"))
spec.Mounts.add(destination="/proc", type="proc", source="proc")
seeds = {
    "health": frame(1, "grpc.Health", "Check", health.CheckRequest()),
    "version": frame(1, "grpc.Health", "Version", health.CheckRequest()),
    "guest_details": frame(3, "grpc.AgentService", "GetGuestDetails",
                           agent.GuestDetailsRequest(mem_block_size=True, mem_hotplug_probe=True)),
    "oom_timeout": frame(5, "grpc.AgentService", "GetOOMEvent", agent.GetOOMEventRequest(), timeout=1000),
    "create_container": frame(7, "grpc.AgentService", "CreateContainer",
                              agent.CreateContainerRequest(container_id="c1", OCI=spec)),
    "unknown_method": frame(9, "grpc.AgentService", "Nope"),
    "unknown_service": frame(11, "x.Y", "Z"),
    "even_stream": frame(2, "grpc.Health", "Check"),
    "data_frame": frame(13, "grpc.Health", "Check", mtype=3),
    "oversize_header": struct.pack(">IIBB", (4 << 20) + 1, 15, 1, 0) + b"\0" * 64,
    "pipelined": b"".join(frame(2 * i + 1, "grpc.Health", "Check") for i in range(8)),
    "add_swap": frame(17, "grpc.AgentService", "AddSwap", agent.AddSwapRequest(PCIPath=[2, 3]), timeout=10**6),
}
os.makedirs(os.path.join(REPO, "fuzz", "seeds"), exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(REPO, "fuzz", "seeds", name), "wb") as f:
        f.write(data)
shutil.rmtree(out, ignore_errors=True)
print(f"wrote {len(seeds)} seeds")
