"""Networking through the wire: UpdateInterface, ListInterfaces, UpdateRoutes, ListRoutes, AddARPNeighbors.

Every agent here runs in a network namespace of its own (`ip netns add ka-net-<random>`, entered with nsenter
so that the agent keeps the host's /sys and cgroups); links are veth pairs made in those namespaces (this
kernel has no dummy driver). Results are checked against the kernel's view (`ip -j ...` in the namespace) and
the List replies. Only private address ranges are used, and only inside these namespaces. Every namespace is
deleted at teardown, after its agents stopped (each must exit 0: the ASan build fails on leaks/UB)."""
import json
import os
import subprocess
import time
import uuid

import pytest

from conftest import AGENT, Agent
from ttrpc_client import (INTERNAL, INVALID_ARGUMENT, RESOURCE_EXHAUSTED, Client, RpcError, wait_for_socket)

SVC = "grpc.AgentService"
IFF_UP, IFF_NOARP = 0x1, 0x80
NUD_REACHABLE, NUD_PERMANENT = 0x02, 0x80
NTF_ROUTER = 0x80
RT_SCOPE_LINK = 253


def sh(*argv, check=True, timeout=60):
    p = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{argv} failed ({p.returncode}): {p.stderr}")
    return p


class NetnsAgent(Agent):
    """kata-agent on a unix socket, inside network namespace `netns` (nsenter --net: mounts untouched)."""

    def __init__(self, workdir, netns, args=()):
        self.workdir = str(workdir)
        self.netns = netns
        self.sock = os.path.join(self.workdir, "agent.sock")
        self.addr = f"unix://{self.sock}"
        self.log_path = os.path.join(self.workdir, "agent.log")
        self.cmdline_path = os.path.join(self.workdir, "cmdline")
        with open(self.cmdline_path, "w") as f:
            f.write("")
        argv = ["nsenter", f"--net=/run/netns/{netns}", "--", AGENT, "--cmdline", self.cmdline_path,
                "--log-level", "debug", "--server-addr", self.addr] + list(args)
        env = {k: v for k, v in os.environ.items() if not k.startswith("KATA_AGENT_")}
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        wait_for_socket(self.sock, self.proc)

    def in_its_netns(self):
        net = os.stat(f"/proc/{self.pid}/ns/net").st_ino
        return net == os.stat(f"/run/netns/{self.netns}").st_ino and net != os.stat("/proc/self/ns/net").st_ino


class Net:
    """Network namespaces, links in them and agents serving in them; all removed by the fixture."""

    def __init__(self, tmp_path, pb):
        self.tmp_path, self.pb = tmp_path, pb
        self.namespaces, self.agents, self.clients = [], [], []

    def netns(self):
        name = "ka-net-" + uuid.uuid4().hex[:10]
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def agent(self, ns):
        d = self.tmp_path / f"net-agent{len(self.agents)}"
        d.mkdir()
        a = NetnsAgent(d, ns)
        self.agents.append(a)
        assert a.in_its_netns(), "the agent is not in its own network namespace: refusing to configure it"
        c = Client(self.pb, a.sock, timeout=120)
        self.clients.append(c)
        c.health()
        return a, c

    def close(self):
        for c in self.clients:
            c.close()
        failed = []
        for a in self.agents:
            rc = a.stop()
            if rc != 0:
                print(a.log_text()[-4000:])
                failed.append(rc)
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        assert not failed, f"network agent exited with status {failed} (sanitizer report or crash?)"


@pytest.fixture
def net(tmp_path, pb):
    n = Net(tmp_path, pb)
    try:
        yield n
    finally:
        n.close()


@pytest.fixture
def ns1(net):
    """A namespace with an agent and a veth pair: v0 (02:00:00:00:aa:01) and its peer v0p."""
    ns = net.netns()
    sh("ip", "-n", ns, "link", "add", "v0", "address", "02:00:00:00:aa:01", "type", "veth", "peer", "name", "v0p",
       "address", "02:00:00:00:aa:02")
    sh("ip", "-n", ns, "link", "set", "v0p", "up")
    agent, client = net.agent(ns)
    return ns, client


def ipj(ns, *args):
    out = sh("ip", "-n", ns, "-j", *args).stdout
    return json.loads(out) if out.strip() else []


def link(ns, name):
    return ipj(ns, "-d", "link", "show", "dev", name)[0]


def addrs(ns, name):
    """{"ip/len", ...} of a link's addresses, link-local IPv6 excluded."""
    info = ipj(ns, "addr", "show", "dev", name)[0]
    return {f"{a['local']}/{a['prefixlen']}" for a in info["addr_info"] if not a["local"].startswith("fe80:")}


def routes(ns, *extra):
    return ipj(ns, "route", "show", "table", "main", *extra) + ipj(ns, "-6", "route", "show", "table", "main", *extra)


def call(c, method, req, resp_cls=None):
    return c.call(SVC, method, req, resp_cls, timeout_ns=120 * 10**9)


def fails(c, method, req, code, text):
    with pytest.raises(RpcError) as e:
        call(c, method, req)
    assert e.value.code == code, e.value
    assert text.lower() in e.value.message.lower(), e.value.message
    return e.value.message


def iface(pb, hw, name="", mtu=0, ips=(), raw_flags=0):
    t = pb.types
    return t.Interface(hwAddr=hw, name=name, mtu=mtu, raw_flags=raw_flags,
                       IPAddresses=[t.IPAddress(address=a, mask=m, family=t.v6 if ":" in a else t.v4)
                                    for a, m in ips])


def update_iface(pb, c, **kw):
    return call(c, "UpdateInterface", pb.agent.UpdateInterfaceRequest(interface=iface(pb, **kw)), pb.types.Interface)


def route(pb, device, dest="", gateway="", source="", scope=0, v6=False):
    return pb.types.Route(dest=dest, gateway=gateway, device=device, source=source, scope=scope,
                          family=pb.types.v6 if v6 else pb.types.v4)


def update_routes(pb, c, rs):
    req = pb.agent.UpdateRoutesRequest(routes=pb.agent.Routes(Routes=rs))
    return call(c, "UpdateRoutes", req, pb.agent.Routes).Routes


def list_routes(pb, c):
    return call(c, "ListRoutes", pb.agent.ListRoutesRequest(), pb.agent.Routes).Routes


def list_ifaces(pb, c):
    got = call(c, "ListInterfaces", pb.agent.ListInterfacesRequest(), pb.agent.Interfaces)
    return {i.name: i for i in got.Interfaces}


def neighbour(pb, ip, device, lladdr="", state=0, flags=0):
    t = pb.types
    return t.ARPNeighbor(toIPAddress=t.IPAddress(address=ip, family=t.v6 if ":" in ip else t.v4), device=device,
                         lladdr=lladdr, state=state, flags=flags)


def add_neighbours(pb, c, ns_):
    req = pb.agent.AddARPNeighborsRequest(neighbors=pb.agent.ARPNeighbors(ARPNeighbors=ns_))
    return call(c, "AddARPNeighbors", req)


# ---------------------------------------------------------------------------------------------------------


def test_list_interfaces_reports_links_addresses_and_correct_families(net, ns1, pb):
    ns, c = ns1
    sh("ip", "-n", ns, "addr", "add", "10.200.1.2/24", "dev", "v0")
    sh("ip", "-n", ns, "addr", "add", "fd00:200:1::2/64", "dev", "v0", "nodad")
    sh("ip", "-n", ns, "link", "set", "v0", "mtu", "1400")
    got = list_ifaces(pb, c)
    assert set(got) == {"lo", "v0", "v0p"}
    v0 = got["v0"]
    assert v0.hwAddr == "02:00:00:00:AA:01"
    assert v0.mtu == 1400
    found = {(a.address, a.mask, a.family) for a in v0.IPAddresses}
    # the family is reported correctly (upstream inverts it)
    assert ("10.200.1.2", "24", pb.types.v4) in found
    assert ("fd00:200:1::2", "64", pb.types.v6) in found
    assert all(a.family == (pb.types.v6 if ":" in a.address else pb.types.v4) for a in v0.IPAddresses)
    lo = got["lo"]
    assert lo.hwAddr == "00:00:00:00:00:00" and lo.mtu == 65536
    assert {(a.address, a.mask, a.family) for a in lo.IPAddresses} >= {("127.0.0.1", "8", pb.types.v4),
                                                                      ("::1", "128", pb.types.v6)}
    assert got["v0p"].hwAddr == "02:00:00:00:AA:02"
    assert all(i.device == "" and i.pciPath == "" and i.type == "" for i in got.values())


def test_update_interface_sets_name_mtu_addresses_flags_and_up(net, ns1, pb):
    ns, c = ns1
    sh("ip", "-n", ns, "addr", "add", "10.201.0.9/16", "dev", "v0")
    sh("ip", "-n", ns, "addr", "add", "fd00:201::9/64", "dev", "v0", "nodad")
    sh("ip", "-n", ns, "link", "set", "v0", "up")
    req = iface(pb, hw="02:00:00:00:aa:01", name="eth0", mtu=1380, raw_flags=IFF_NOARP,
                ips=[("10.201.1.2", "24"), ("10.201.2.2", "28"), ("fd00:201:1::2", "64")])
    reply = call(c, "UpdateInterface", pb.agent.UpdateInterfaceRequest(interface=req), pb.types.Interface)
    assert reply == req  # as upstream: the request's interface
    info = link(ns, "eth0")
    assert info["address"] == "02:00:00:00:aa:01" and info["mtu"] == 1380
    assert "UP" in info["flags"] and "NOARP" in info["flags"]
    assert addrs(ns, "eth0") == {"10.201.1.2/24", "10.201.2.2/28", "fd00:201:1::2/64"}  # old ones gone
    v4 = [a for a in ipj(ns, "-4", "addr", "show", "dev", "eth0")[0]["addr_info"] if a["local"] == "10.201.1.2"][0]
    assert v4.get("broadcast") == "10.201.1.255"
    assert sh("ip", "-n", ns, "link", "show", "dev", "v0", check=False).returncode != 0  # renamed
    # the List view agrees
    got = list_ifaces(pb, c)["eth0"]
    assert got.mtu == 1380 and got.hwAddr == "02:00:00:00:AA:01"
    assert {(a.address, a.mask) for a in got.IPAddresses if not a.address.startswith("fe80")} == {
        ("10.201.1.2", "24"), ("10.201.2.2", "28"), ("fd00:201:1::2", "64")}

    # ARP back on, everything else as given; mtu 0 and an empty name keep the link's
    update_iface(pb, c, hw="02:00:00:00:AA:01", ips=[("10.201.3.2", "24")])
    info = link(ns, "eth0")
    assert info["mtu"] == 1380 and "NOARP" not in info["flags"] and "UP" in info["flags"]
    assert addrs(ns, "eth0") == {"10.201.3.2/24"}

    # a down link comes up; no addresses at all is allowed
    sh("ip", "-n", ns, "link", "set", "eth0", "down")
    update_iface(pb, c, hw="02:00:00:00:aa:01", name="eth1", mtu=9000)
    info = link(ns, "eth1")
    assert "UP" in info["flags"] and info["mtu"] == 9000
    assert addrs(ns, "eth1") == set()


def test_update_interface_small_mtu_refuses_ipv6_clearly(net, ns1, pb):
    """The MTU is set before the addresses: IPv6 on a link below 1280 bytes is an error, not a silent loss."""
    ns, c = ns1
    msg = fails(c, "UpdateInterface", pb.agent.UpdateInterfaceRequest(interface=iface(
        pb, hw="02:00:00:00:aa:01", name="eth0", mtu=1000, ips=[("10.210.0.2", "24"), ("fd00:210::2", "64")])),
        INTERNAL, "add address fd00:210::2/64")
    assert msg.startswith("update interface: v0 add address"), msg  # its name before the update
    update_iface(pb, c, hw="02:00:00:00:aa:01", name="eth0", mtu=1000, ips=[("10.210.0.2", "24")])
    info = link(ns, "eth0")
    assert info["mtu"] == 1000 and "UP" in info["flags"]
    assert addrs(ns, "eth0") == {"10.210.0.2/24"}


def test_update_interface_bad_input_changes_nothing(net, ns1, pb):
    ns, c = ns1
    sh("ip", "-n", ns, "addr", "add", "10.202.0.2/24", "dev", "v0")
    sh("ip", "-n", ns, "link", "set", "v0", "up")
    before = (link(ns, "v0"), addrs(ns, "v0"))
    hw = "02:00:00:00:aa:01"
    U = "UpdateInterface"
    R = pb.agent.UpdateInterfaceRequest
    fails(c, U, R(), INVALID_ARGUMENT, "empty update interface request")
    msg = fails(c, U, R(interface=iface(pb, hw="02:00:00:00:aa:77", name="x")), INTERNAL, "Link not found")
    assert "02:00:00:00:aa:77" in msg
    for bad_hw in ["", "02:00:00:00:aa", "zz:00:00:00:aa:01", "02:00:00:00:aa:01:02", "02-00-00-00-aa-01"]:
        fails(c, U, R(interface=iface(pb, hw=bad_hw)), INVALID_ARGUMENT, "MAC")
    for ip, mask, text in [("10.202.0.300", "24", "IP address"), ("10.202.0.3/24", "24", "IP address"),
                           ("", "24", "IP address"), ("fd00::1%v0", "64", "IP address"),
                           ("10.202.0.3", "33", "prefix"), ("10.202.0.3", "", "prefix"),
                           ("10.202.0.3", "255.255.255.0", "prefix"), ("fd00::3", "129", "prefix"),
                           ("10.202.0.3", "-1", "prefix")]:
        fails(c, U, R(interface=iface(pb, hw=hw, ips=[("10.202.0.9", "24"), (ip, mask)])), INVALID_ARGUMENT, text)
    for name in ["a/b", "a:b", "eth%d", "x" * 16, "a b", "..", "\u00e9th0"]:
        fails(c, U, R(interface=iface(pb, hw=hw, name=name)), INVALID_ARGUMENT, "interface name")
    for mtu in [2**40, 2**32 + 1500, 1 << 20, 65537, 67, 1]:
        fails(c, U, R(interface=iface(pb, hw=hw, mtu=mtu)), INVALID_ARGUMENT, "MTU")
    fails(c, U, R(interface=iface(pb, hw=hw, ips=[("10.9.9.9", "24")] * 1025)), RESOURCE_EXHAUSTED, "addresses")
    # another link's name: refused before anything changes
    fails(c, U, R(interface=iface(pb, hw=hw, name="v0p", ips=[("10.202.9.9", "24")])), INTERNAL, "v0p")
    assert (link(ns, "v0"), addrs(ns, "v0")) == before
    assert c.health().status == 1


def test_update_routes_replaces_managed_routes_only(net, ns1, pb):
    ns, c = ns1
    update_iface(pb, c, hw="02:00:00:00:aa:01", name="eth0", ips=[("10.203.0.2", "24"), ("fd00:203::2", "64")])
    # routes the agent must keep: a device-less one, loopback's, kernel ones; and one it must delete
    sh("ip", "-n", ns, "route", "add", "blackhole", "10.203.66.0/24", "proto", "static")
    sh("ip", "-n", ns, "route", "add", "10.203.77.0/24", "dev", "lo", "proto", "static")
    sh("ip", "-n", ns, "route", "add", "10.203.88.0/24", "dev", "eth0", "proto", "static")
    sh("ip", "-n", ns, "-6", "route", "add", "fd00:203:88::/48", "dev", "eth0", "proto", "static")
    # a gateway reachable only through a link route listed after it: link routes must be added first
    rs = [route(pb, "eth0", dest="10.203.50.0/24", gateway="10.203.60.1"),
          route(pb, "eth0", gateway="10.203.0.1"),
          route(pb, "eth0", dest="10.203.60.0/24", scope=RT_SCOPE_LINK, source="10.203.0.2"),
          route(pb, "eth0", dest="fd00:203:50::/48", gateway="fd00:203::1", v6=True),
          route(pb, "eth0", dest="10.203.70.5")]
    reply = update_routes(pb, c, rs)
    kernel = routes(ns)
    dsts = {r["dst"]: r for r in kernel}
    assert "10.203.88.0/24" not in dsts and "fd00:203:88::/48" not in dsts
    assert dsts["10.203.66.0/24"]["type"] == "blackhole"
    assert dsts["10.203.77.0/24"]["dev"] == "lo"
    assert dsts["10.203.0.0/24"]["protocol"] == "kernel" and dsts["fd00:203::/64"]["protocol"] == "kernel"
    assert dsts["10.203.50.0/24"]["gateway"] == "10.203.60.1"
    assert dsts["default"]["gateway"] == "10.203.0.1"
    assert dsts["10.203.60.0/24"]["scope"] == "link" and dsts["10.203.60.0/24"]["prefsrc"] == "10.203.0.2"
    assert dsts["fd00:203:50::/48"]["gateway"] == "fd00:203::1"
    assert dsts["10.203.70.5"]["dev"] == "eth0"
    assert {r["dst"] for r in routes(ns, "proto", "boot")} == {
        "10.203.50.0/24", "default", "10.203.60.0/24", "fd00:203:50::/48", "10.203.70.5"}

    # the reply is ListRoutes: gateway routes keep their destination, families are right
    assert list(reply) == list(list_routes(pb, c))
    got = {(r.dest, r.gateway, r.device, r.family) for r in reply}
    v4, v6 = pb.types.v4, pb.types.v6
    assert {("10.203.50.0/24", "10.203.60.1", "eth0", v4), ("", "10.203.0.1", "eth0", v4),
            ("10.203.60.0/24", "", "eth0", v4), ("fd00:203:50::/48", "fd00:203::1", "eth0", v6),
            ("10.203.70.5/32", "", "eth0", v4), ("10.203.77.0/24", "", "lo", v4),
            ("fd00:203::/64", "", "eth0", v6)} <= got
    linkr = [r for r in reply if r.dest == "10.203.60.0/24"][0]
    assert linkr.scope == RT_SCOPE_LINK and linkr.source == "10.203.0.2"

    # replacing again: the previous agent routes go, the new ones come; the kept ones stay
    reply = update_routes(pb, c, [route(pb, "eth0", gateway="10.203.0.254")])
    dsts = {r["dst"]: r for r in routes(ns)}
    assert dsts["default"]["gateway"] == "10.203.0.254"
    assert "10.203.50.0/24" not in dsts and "fd00:203:50::/48" not in dsts and "10.203.60.0/24" not in dsts
    assert "10.203.77.0/24" in dsts and "10.203.0.0/24" in dsts
    # an empty list removes every agent-managed route
    update_routes(pb, c, [])
    assert "default" not in {r["dst"] for r in routes(ns)}
    # the same route twice is not an error (EEXIST ignored, as upstream)
    update_routes(pb, c, [route(pb, "eth0", dest="10.203.90.0/24")] * 2)


def test_update_routes_bad_input(net, ns1, pb):
    ns, c = ns1
    update_iface(pb, c, hw="02:00:00:00:aa:01", name="eth0", ips=[("10.204.0.2", "24")])
    update_routes(pb, c, [route(pb, "eth0", gateway="10.204.0.1")])
    before = routes(ns)
    U = "UpdateRoutes"

    def R(*rs):
        return pb.agent.UpdateRoutesRequest(routes=pb.agent.Routes(Routes=list(rs)))

    fails(c, U, pb.agent.UpdateRoutesRequest(), INVALID_ARGUMENT, "empty update routes request")
    good = route(pb, "eth0", dest="10.204.9.0/24")
    fails(c, U, R(good, route(pb, "nosuch0", dest="10.204.1.0/24")), INTERNAL, "nosuch0")
    fails(c, U, R(good, route(pb, "", dest="10.204.1.0/24")), INVALID_ARGUMENT, "interface name")
    fails(c, U, R(good, route(pb, "eth0/x", dest="10.204.1.0/24")), INVALID_ARGUMENT, "interface name")
    for bad in ["10.204.1.0/33", "10.204.1/24", "10.204.1.0/", "x", "10.204.1.0/24/8", "fd00::/129"]:
        fails(c, U, R(good, route(pb, "eth0", dest=bad)), INVALID_ARGUMENT, "CIDR")
    fails(c, U, R(route(pb, "eth0", dest="10.204.1.0/24", gateway="10.204.0.300")), INVALID_ARGUMENT, "IP address")
    fails(c, U, R(route(pb, "eth0", gateway="10.204.0.1/24")), INVALID_ARGUMENT, "IP address")
    fails(c, U, R(route(pb, "eth0", dest="10.204.1.0/24", source="10.204.0.2/99")), INVALID_ARGUMENT, "CIDR")
    fails(c, U, R(route(pb, "eth0", dest="fd00::/64", gateway="10.204.0.1")), INVALID_ARGUMENT, "IPv4 and IPv6")
    fails(c, U, R(route(pb, "eth0", dest="10.204.1.0/24", scope=256)), INVALID_ARGUMENT, "scope")
    fails(c, U, R(*[good] * 16385), RESOURCE_EXHAUSTED, "16385 routes")
    assert routes(ns) == before  # nothing was changed by a request refused while decoding
    # the kernel's refusal, with its own words: host bits set in the destination
    msg = fails(c, U, R(route(pb, "eth0", dest="10.204.1.1/16")), INTERNAL, "10.204.1.1/16")
    assert "Failed to update routes" in msg and "route 0" in msg
    # a gateway nobody can reach
    fails(c, U, R(route(pb, "eth0", dest="10.204.2.0/24", gateway="192.168.254.1")), INTERNAL, "192.168.254.1")
    assert c.health().status == 1


def test_ten_thousand_routes(net, ns1, pb):
    ns, c = ns1
    update_iface(pb, c, hw="02:00:00:00:aa:01", name="eth0", ips=[("10.205.0.2", "16"), ("fd00:205::2", "64")])
    rs = [route(pb, "eth0", dest=f"10.{206 + i // 65536}.{i // 256 % 256}.{i % 256}/32") for i in range(9000)]
    rs += [route(pb, "eth0", dest=f"fd00:206:{i:x}::/48", gateway="fd00:205::1", v6=True) for i in range(1000)]
    t0 = time.monotonic()
    reply = update_routes(pb, c, rs)
    took = time.monotonic() - t0
    assert len(routes(ns, "proto", "boot")) == 10000
    assert len(reply) == len(routes(ns)) == len(list_routes(pb, c))  # the others: kernel routes (subnets, fe80)
    assert len(reply) - 10000 == len(routes(ns, "proto", "kernel")) < 10
    assert {r.dest for r in reply} >= {"10.206.35.39/32", "fd00:206:3e7::/48"}
    assert took < 30, took
    # the agent keeps serving; the next update replaces all 10 000
    assert c.health().status == 1
    update_routes(pb, c, [route(pb, "eth0", gateway="10.205.0.1")])
    assert [r["dst"] for r in routes(ns, "proto", "boot")] == ["default"]


def test_list_routes_bounds(net, ns1, pb, tmp_path):
    """50 000 long IPv6 routes: more than the 4 MiB a reply may carry; 70 000: more than the agent dumps."""
    ns, c = ns1
    sh("ip", "-n", ns, "link", "set", "v0", "up")
    sh("ip", "-n", ns, "link", "set", "v0", "name", "a-long-name-015")

    def add(start, count):
        batch = tmp_path / "routes.batch"
        with open(batch, "w") as f:
            for i in range(start, start + count):
                f.write(f"route add fd00:ffff:{i >> 16:x}:{i & 0xffff:x}:1234:5678:9abc:def0/128 "
                        f"via fe80::1234:5678:9abc:def0 dev a-long-name-015\n")
        sh("ip", "-n", ns, "-batch", str(batch), timeout=300)

    add(0, 50000)
    fails(c, "ListRoutes", pb.agent.ListRoutesRequest(), RESOURCE_EXHAUSTED, "reply limit")
    add(50000, 20000)
    fails(c, "ListRoutes", pb.agent.ListRoutesRequest(), RESOURCE_EXHAUSTED, "more than 65536 routes")
    assert c.health().status == 1


def test_arp_neighbours(net, ns1, pb):
    ns, c = ns1
    update_iface(pb, c, hw="02:00:00:00:aa:01", name="eth0", ips=[("10.207.0.2", "24"), ("fd00:207::2", "64")])
    add_neighbours(pb, c, [neighbour(pb, "10.207.0.10", "eth0", lladdr="02:00:00:00:bb:10"),
                           neighbour(pb, "10.207.0.11", "eth0", lladdr="02:00:00:00:BB:11", state=NUD_REACHABLE),
                           neighbour(pb, "fd00:207::10", "eth0", lladdr="02:00:00:00:bb:12", flags=NTF_ROUTER)])
    got = {n["dst"]: n for n in ipj(ns, "neigh", "show", "dev", "eth0")}  # both families
    assert got["10.207.0.10"]["lladdr"] == "02:00:00:00:bb:10" and got["10.207.0.10"]["state"] == ["PERMANENT"]
    assert got["10.207.0.11"]["lladdr"] == "02:00:00:00:bb:11"
    assert got["10.207.0.11"]["state"] != ["PERMANENT"]
    assert got["fd00:207::10"]["lladdr"] == "02:00:00:00:bb:12" and got["fd00:207::10"]["state"] == ["PERMANENT"]
    assert "router" in got["fd00:207::10"] and "router" not in got["10.207.0.10"]  # flags NTF_ROUTER
    # replace, not duplicate
    add_neighbours(pb, c, [neighbour(pb, "10.207.0.10", "eth0", lladdr="02:00:00:00:bb:99")])
    got = [n for n in ipj(ns, "neigh", "show", "dev", "eth0") if n["dst"] == "10.207.0.10"]
    assert len(got) == 1 and got[0]["lladdr"] == "02:00:00:00:bb:99"

    A = "AddARPNeighbors"

    def R(*n):
        return pb.agent.AddARPNeighborsRequest(neighbors=pb.agent.ARPNeighbors(ARPNeighbors=list(n)))

    before = ipj(ns, "neigh", "show", "dev", "eth0")
    fails(c, A, pb.agent.AddARPNeighborsRequest(), INVALID_ARGUMENT, "empty add arp neighbours request")
    fails(c, A, R(pb.types.ARPNeighbor(device="eth0", lladdr="02:00:00:00:bb:01")), INVALID_ARGUMENT,
          "Unable to determine ip address of ARP neighbor")
    fails(c, A, R(neighbour(pb, "", "eth0")), INVALID_ARGUMENT, "Unable to determine ip address")
    fails(c, A, R(neighbour(pb, "10.207.0.300", "eth0")), INVALID_ARGUMENT, "IP address")
    fails(c, A, R(neighbour(pb, "10.207.0.20", "eth0", lladdr="02:00:00:00:bb")), INVALID_ARGUMENT, "MAC")
    fails(c, A, R(neighbour(pb, "10.207.0.20", "eth0", state=0x10000)), INVALID_ARGUMENT, "state")
    fails(c, A, R(neighbour(pb, "10.207.0.20", "eth0", flags=-1)), INVALID_ARGUMENT, "flags")
    fails(c, A, R(neighbour(pb, "10.207.0.20", "eth0:1")), INVALID_ARGUMENT, "interface name")
    fails(c, A, R(neighbour(pb, "10.207.0.21", "eth0", lladdr="02:00:00:00:bb:21"),
                  neighbour(pb, "10.207.0.20", "nosuch")), INTERNAL, "nosuch")
    fails(c, A, R(*[neighbour(pb, "10.207.0.30", "eth0")] * 16385), RESOURCE_EXHAUSTED, "16385 entries")
    assert ipj(ns, "neigh", "show", "dev", "eth0") == before
    assert c.health().status == 1


def test_ping_across_veth_configured_only_through_agents(net, pb):
    """Two namespaces, one agent in each; the veth pair between them is configured only through the agents.
    With ARP off on both ends (raw_flags IFF_NOARP) ping needs the static neighbours AddARPNeighbors adds."""
    a_ns, b_ns = net.netns(), net.netns()
    sh("ip", "-n", a_ns, "link", "add", "va", "address", "02:00:00:00:cc:0a", "type", "veth", "peer", "name", "vb",
       "address", "02:00:00:00:cc:0b", "netns", b_ns)
    _, a = net.agent(a_ns)
    _, b = net.agent(b_ns)
    update_iface(pb, a, hw="02:00:00:00:cc:0a", name="eth0", mtu=1450, ips=[("10.208.0.1", "24")])
    update_iface(pb, b, hw="02:00:00:00:cc:0b", name="eth0", mtu=1450, ips=[("10.208.0.2", "24")])
    # b reaches a's other network through a: a route to it, and the address on a's loopback side
    update_routes(pb, b, [route(pb, "eth0", dest="10.209.0.0/24", gateway="10.208.0.1")])
    sh("ip", "-n", a_ns, "addr", "add", "10.209.0.1/32", "dev", "lo")
    sh("ip", "netns", "exec", a_ns, "ping", "-c1", "-W2", "10.208.0.2")
    sh("ip", "netns", "exec", b_ns, "ping", "-c1", "-W2", "10.209.0.1")

    # ARP off on both sides: the peers' MAC addresses are unknown, ping fails
    update_iface(pb, a, hw="02:00:00:00:cc:0a", name="eth0", mtu=1450, ips=[("10.208.0.1", "24")], raw_flags=IFF_NOARP)
    update_iface(pb, b, hw="02:00:00:00:cc:0b", name="eth0", mtu=1450, ips=[("10.208.0.2", "24")], raw_flags=IFF_NOARP)
    p = sh("ip", "netns", "exec", a_ns, "ping", "-c1", "-W1", "10.208.0.2", check=False)
    assert p.returncode != 0
    # static neighbours through the agents make it work again
    add_neighbours(pb, a, [neighbour(pb, "10.208.0.2", "eth0", lladdr="02:00:00:00:cc:0b")])
    add_neighbours(pb, b, [neighbour(pb, "10.208.0.1", "eth0", lladdr="02:00:00:00:cc:0a")])
    sh("ip", "netns", "exec", a_ns, "ping", "-c1", "-W2", "10.208.0.2")
    assert "NOARP" in link(a_ns, "eth0")["flags"] and "NOARP" in link(b_ns, "eth0")["flags"]
