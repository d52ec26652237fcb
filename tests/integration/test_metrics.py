"""GetMetrics through the wire (spec §3.21, §5.7): the Prometheus text is parsed by a real parser
(python3-prometheus-client) and checked against /proc as the test sees it."""
import os
import subprocess

import pytest

from ttrpc_client import Client

prom = pytest.importorskip("prometheus_client.parser")

SVC = "grpc.AgentService"

FAMILIES = {
    "kata_agent_fds": ("gauge", "Agent process open FDs"),
    "kata_agent_io_stat": ("gauge", "Agent process IO statistics."),
    "kata_agent_proc_stat": ("gauge", "Agent process statistics."),
    "kata_agent_proc_status": ("gauge", "Agent process status."),
    "kata_agent_scrape_count": ("counter", "Metrics scrape count"),
    "kata_agent_threads": ("gauge", "Agent process threads"),
    "kata_agent_total_rss": ("gauge", "Agent process total RSS size"),
    "kata_agent_total_time": ("gauge", "Agent process total time"),
    "kata_agent_total_vm": ("gauge", "Agent process total VM size"),
    "kata_guest_cpu_time": ("gauge", "Guest CPU statistics."),
    "kata_guest_diskstat": ("gauge", "Disks statistics in system."),
    "kata_guest_load": ("gauge", "Guest system load."),
    "kata_guest_meminfo": ("gauge", "Statistics about memory usage in the system."),
    "kata_guest_netdev_stat": ("gauge", "Guest net devices statistics."),
    "kata_guest_tasks": ("gauge", "Guest system load."),
    "kata_guest_vm_stat": ("gauge", "Guest virtual memory statistics."),
}


def get_metrics(c, pb):
    return c.call(SVC, "GetMetrics", pb.agent.GetMetricsRequest(), pb.agent.Metrics).metrics


def parse(text):
    fams = {f.name: f for f in prom.text_string_to_metric_families(text)}
    samples = {}
    for f in fams.values():
        for s in f.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return fams, samples


def val(samples, name, **labels):
    return samples[(name, tuple(sorted(labels.items())))]


def test_metrics_parse_and_match_proc(agent, client, pb):
    text = get_metrics(client, pb)
    assert len(text.encode()) < 4 << 20
    fams, s = parse(text)
    for name, (typ, help_) in FAMILIES.items():
        assert name in fams, name
        assert (fams[name].type, fams[name].documentation) == (typ, help_), name
    # families in name order, each with its HELP and TYPE lines first
    names = [ln.split()[2] for ln in text.splitlines() if ln.startswith("# HELP ")]
    assert names == sorted(FAMILIES)
    assert text.count("# TYPE ") == len(FAMILIES)

    assert val(s, "kata_agent_scrape_count_total") == 1
    assert val(s, "kata_agent_threads") == 1  # single-threaded (upstream never sets it: 0)
    fds = len(os.listdir(f"/proc/{agent.pid}/fd"))
    assert abs(val(s, "kata_agent_fds") - fds) <= 2
    rss = agent.rss_kib() * 1024
    assert 0.5 * rss < val(s, "kata_agent_total_rss") < 2 * rss + (8 << 20)
    assert val(s, "kata_agent_total_vm") > val(s, "kata_agent_total_rss")
    assert val(s, "kata_agent_total_time") >= 0
    assert val(s, "kata_agent_proc_status", item="vmrss") > 0
    assert val(s, "kata_agent_proc_status", item="vmhwm") >= val(s, "kata_agent_proc_status", item="vmrss") - 64
    assert val(s, "kata_agent_io_stat", item="rchar") > 0
    for item in ("utime", "stime", "cutime", "cstime"):
        assert val(s, "kata_agent_proc_stat", item=item) >= 0

    with open("/proc/meminfo") as f:
        mem_total = int(next(ln for ln in f if ln.startswith("MemTotal:")).split()[1]) * 1024
    assert val(s, "kata_guest_meminfo", item="mem_total") == mem_total
    assert val(s, "kata_guest_meminfo", item="quicklists") == 0  # absent field: 0
    assert len([k for k in s if k[0] == "kata_guest_meminfo"]) == 58
    with open("/proc/vmstat") as f:
        vm_keys = {ln.split()[0] for ln in f if ln.strip()}
    assert {dict(k[1])["item"] for k in s if k[0] == "kata_guest_vm_stat"} == vm_keys
    assert val(s, "kata_guest_tasks", item="max") >= val(s, "kata_guest_tasks", item="cur") >= 1
    for item in ("load1", "load5", "load15"):
        assert val(s, "kata_guest_load", item=item) >= 0

    cpus = {dict(k[1])["cpu"] for k in s if k[0] == "kata_guest_cpu_time"}
    with open("/proc/stat") as f:
        want = {ln.split()[0][3:] or "total" for ln in f if ln.startswith("cpu")}
    assert cpus == want and "total" in cpus
    assert val(s, "kata_guest_cpu_time", cpu="total", item="idle") > 0
    items = {dict(k[1])["item"] for k in s if k[0] == "kata_guest_cpu_time"}
    assert items == {"user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice"}

    ifaces = {dict(k[1])["interface"] for k in s if k[0] == "kata_guest_netdev_stat"}
    assert "lo" in ifaces
    assert len([k for k in s if k[0] == "kata_guest_netdev_stat" and dict(k[1])["interface"] == "lo"]) == 16
    with open("/proc/diskstats") as f:
        disks = {ln.split()[2] for ln in f if ln.strip()}
    assert {dict(k[1])["disk"] for k in s if k[0] == "kata_guest_diskstat"} == disks


def test_scrape_count_and_many_calls(agent, client, pb):
    for i in range(1, 4):
        _, s = parse(get_metrics(client, pb))
        assert val(s, "kata_agent_scrape_count_total") == i
    rss0 = agent.rss_kib()
    sids = [client.send(SVC, "GetMetrics", pb.agent.GetMetricsRequest()) for _ in range(200)]
    got = []
    for _ in sids:
        sid, code, msg, payload = client.recv(timeout=30)
        assert code == 0, msg
        got.append(sid)
    assert sorted(got) == sorted(sids)
    _, s = parse(get_metrics(client, pb))
    assert val(s, "kata_agent_scrape_count_total") == 204
    if "asan" not in os.environ.get("KA_BUILD_DIR", ""):  # ASan's quarantine keeps freed memory
        assert agent.rss_kib() < rss0 + 16 * 1024


@pytest.fixture
def netns_agent_with(tmp_path):
    """start(script): an agent in a private network namespace, after `script` ran there (sh -c)."""
    from test_iptables import WrappedAgent
    started = []

    def start(script):
        d = tmp_path / f"netns-agent{len(started)}"
        d.mkdir()
        a = WrappedAgent(d, ["unshare", "--net", "--", "sh", "-c", script + ' && exec "$@"', "sh"])
        started.append(a)
        return a

    yield start
    for a in started:
        rc = a.stop()
        assert rc == 0, a.log_text()[-3000:]


def test_hostile_interface_names(netns_agent_with, pb):
    """Interface names may hold quotes and backslashes: they are escaped and still parse; 300 interfaces
    still make a reply well under the frame limit. Bridge interfaces in a private network namespace, gone
    with the agent."""
    probe = subprocess.run(["unshare", "--net", "ip", "link", "add", "x", "type", "bridge"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no bridge interfaces here: {probe.stderr.decode().strip()}")
    a = netns_agent_with("ip link add 'a\"b\\c' type bridge && ip link add \"q'uote\" type bridge && "
                         "for i in $(seq 300); do ip link add d$i type bridge || exit 1; done")
    assert os.readlink(f"/proc/{a.pid}/ns/net") != os.readlink("/proc/self/ns/net")
    with Client(pb, a.sock) as c:
        text = get_metrics(c, pb)
    fams, s = parse(text)
    ifaces = {dict(k[1])["interface"] for k in s if k[0] == "kata_guest_netdev_stat"}
    assert {"lo", 'a"b\\c', "q'uote", "d1", "d300"} <= ifaces
    assert len(ifaces) == 303
    assert 'interface="a\\"b\\\\c"' in text
    assert len(text) < 2 << 20
