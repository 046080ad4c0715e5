"""Helpers for the DNS tests: a cluster with every kind of Service, queries built
with dnspython, run through the DNS stage (or a whole Dataplane), answers parsed
with dnspython."""
from dataclasses import dataclass

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
from scapy.all import IP, UDP, Dot1Q, Ether, IPv6, raw

from kdp._fast.dns import DnsOutcome, dns_stage
from kdp._fast.packet import Batch
from kdp._fast.parse import parse
from kdp.control import Cluster
from kdp.control.dns import build_zone
from kdp.control.dnswire import compile_dns
from kdptest import (CLIENT, CLIENT6, MAC_A, MAC_B, WEB1, WEB2, base_objects, endpoint,
                     endpoint_slice, port, service)

DNS_IP, DNS_IP6 = "10.96.0.53", "fd00:96::53"
COREDNS = "10.244.2.53"


def ep(address, node="node-1", ready=True, hostname=None, terminating=False):
    e = endpoint(address, node, ready=ready, terminating=terminating)
    if hostname:
        e["hostname"] = hostname
    return e


def headless(name, ports, namespace="shop", **spec):
    s = service(name, ports, cluster_ips=("None",), namespace=namespace, **spec)
    s["spec"]["clusterIPs"] = ["None"]
    s["spec"].pop("ipFamilies")
    return s


def external(name, target, namespace="shop"):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": namespace, "name": name},
            "spec": {"type": "ExternalName", "externalName": target}}


def cluster_objects(dns=None, big=40):
    """node-1's snapshot: kube-dns (dual-stack) plus one Service of each kind in `shop`."""
    cfg = {} if dns is None else {"dns": dns}
    objs = base_objects(**cfg) + [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "quiet"}},
        service("kube-dns", [port("dns", 53, 53, "UDP"), port("dns-tcp", 53, 53, "TCP")],
                cluster_ips=(DNS_IP, DNS_IP6), namespace="kube-system"),
        endpoint_slice("kube-dns", [("dns", "UDP", 53), ("dns-tcp", "TCP", 53)],
                       [ep(COREDNS, "node-2")], namespace="kube-system"),
        service("web", [port("http", 80, 8080), port("https", 443, 8443)], cluster_ips=("10.96.0.10",)),
        endpoint_slice("web", [("http", "TCP", 8080), ("https", "TCP", 8443)],
                       [ep(WEB1), ep(WEB2, "node-2"), ep("10.244.2.11", "node-2", ready=False)]),
        service("dual", [port("http", 80, 8080)], cluster_ips=("10.96.0.11", "fd00:96::11")),
        service("one", [port("", 53, 53, "UDP")], cluster_ips=("10.96.0.12",)),
        service("noports", [], cluster_ips=("10.96.0.13",)),
        headless("db", [port("pg", 5432, 5432)]),
        endpoint_slice("db", [("pg", "TCP", 5432)],
                       [ep("10.244.1.20", hostname="db-0"), ep("10.244.2.21", "node-2", hostname="db-1"),
                        ep("10.244.2.22", "node-2"), ep("10.244.1.23", ready=False, hostname="db-3",
                                                         terminating=True)]),
        endpoint_slice("db", [("pg", "TCP", 5432)], [ep("fd00:244:1::20", hostname="db-0")],
                       family="IPv6", suffix="b"),
        headless("all", [port("pg", 5432, 5432)], publishNotReadyAddresses=True),
        endpoint_slice("all", [("pg", "TCP", 5432)],
                       [ep("10.244.1.30"), ep("10.244.1.31", ready=False)]),
        headless("empty", [port("pg", 5432, 5432)]),
        headless("noport", []),
        endpoint_slice("noport", [], [ep("10.244.1.40")]),
        headless("big", [port("p", 7000, 7000)]),
        endpoint_slice("big", [("p", "TCP", 7000)],
                       [ep(f"10.244.3.{k + 1}", "node-2") for k in range(big)]),
        external("ext", "www.example.com"),
        external("alias", "web.shop.svc.cluster.local"),
        external("toext", "ext.shop.svc.cluster.local"),
        external("loop", "loop.shop.svc.cluster.local"),
        external("ipname", "192.0.2.1"),
    ]
    return objs


def zone_and_table(objects=None, node="node-1"):
    cluster = Cluster.from_documents(objects if objects is not None else cluster_objects(), node=node)
    zone = build_zone(cluster)
    return zone, compile_dns(zone)


def make_query(name, qtype="A", *, edns=None, payload=1232, do=False, qid=4242, rd=True, cd=False):
    """dnspython query wire bytes. edns: None (no OPT) or the EDNS version."""
    q = dns.message.make_query(name, qtype, use_edns=edns if edns is not None else False,
                               payload=payload, want_dnssec=do)
    q.id = qid
    if not rd:
        q.flags &= ~dns.flags.RD
    if cd:
        q.flags |= dns.flags.CD
    return q.to_wire()


def frame(payload, *, src=CLIENT, dst=DNS_IP, sport=33333, dport=53, v6=False, vlan=None, tcp=False):
    ipl = IPv6(src=CLIENT6 if src == CLIENT else src, dst=DNS_IP6 if dst == DNS_IP else dst) if v6 \
        else IP(src=src, dst=dst)
    eth = Ether(src=MAC_A, dst=MAC_B)
    if vlan is not None:
        eth = eth / Dot1Q(vlan=vlan)
    if tcp:
        from scapy.all import TCP
        return eth / ipl / TCP(sport=sport, dport=dport, flags="PA") / payload
    return eth / ipl / UDP(sport=sport, dport=dport) / payload


def fast_frame(payload, src=CLIENT, dst=DNS_IP, sport=33333):
    """frame() for IPv4 without scapy (bulk tests): Ethernet/IPv4/UDP, UDP checksum 0."""
    import struct
    from ipaddress import IPv4Address
    ip = bytearray(struct.pack(">BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), 0, 0, 64, 17, 0,
                               IPv4Address(src).packed, IPv4Address(dst).packed))
    c = sum(struct.unpack(">10H", ip))
    c = (c & 0xFFFF) + (c >> 16)
    ip[10:12] = struct.pack(">H", ~((c & 0xFFFF) + (c >> 16)) & 0xFFFF)
    return (bytes.fromhex("02000000000b02000000000a0800") + bytes(ip)
            + struct.pack(">HHHH", sport, 53, 8 + len(payload), 0) + payload)


@dataclass
class Reply:
    verdict: int
    reason: int
    outcome: DnsOutcome
    note: object
    meta: object
    data: bytes             # the packet as it stands after the stage
    msg: object = None      # dnspython Message of the answer (verdict reply)

    @property
    def rcode(self):
        return self.msg.rcode()

    def records(self, section):
        """Sorted lowercase 'name ttl IN TYPE rdata' lines of a section ("answer", ...)."""
        out = []
        for rrset in getattr(self.msg, section):
            for line in rrset.to_text().split("\n"):
                out.append(line.lower())
        return sorted(out)


def run_stage(table, frames, batch_cls=Batch, in_port=5, counters=None):
    """Parse and run the DNS stage over raw frames; returns ([Reply], counters, batch)."""
    b = batch_cls(max(len(frames), 1))
    for f in frames:
        b.append(raw(f) if not isinstance(f, (bytes, bytearray)) else bytes(f), in_port=in_port)
    parse(b)
    counters, notes = dns_stage(b, table, counters)
    out = []
    for i in range(len(b)):
        m = b.meta[i]
        data = b.packet(i)
        msg = None
        if m["verdict"] == 5:
            msg = dns.message.from_wire(data[int(m["l4_off"]) + 8:])
        out.append(Reply(int(m["verdict"]), int(m["reason"]), DnsOutcome(int(notes[i]["outcome"])),
                         notes[i], m, data, msg))
    return out, counters, b


def ask(table, name, qtype="A", **kw):
    """One query through the stage: its Reply."""
    fkw = {k: kw.pop(k) for k in ("src", "dst", "sport", "dport", "v6", "vlan", "tcp") if k in kw}
    return run_stage(table, [frame(make_query(name, qtype, **kw), **fkw)])[0][0]
