"""A DNS server on 127.0.0.1:53 for the resolver test (tests/test_dns_resolver.py),
run inside a network namespace:

    python dns_bridge.py kdp SNAPSHOT LOG      # queries go through node-1's kdp data plane
    python dns_bridge.py coredns SNAPSHOT LOG  # queries go to the CoreDNS model alone

`kdp`: each datagram becomes a packet from a pod to the kube-dns ClusterIP and runs
through the Dataplane; kdp's answer goes back to the resolver, and a query kdp
passes on to the DNS pods is answered by "CoreDNS" (the reference responder over
the same zone, forwarding names outside the cluster to a fixed upstream), as in a
cluster. `coredns`: every query is answered by that CoreDNS stand-in. Each
query is logged as a JSON line (who answered, name, type, rcode). Serves until
killed or for 60 s; prints "ready" once listening.
"""
import json
import logging
import socket
import sys
import time

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)     # no routes in the namespace: fine

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
from scapy.all import IP, UDP, Ether, raw

from kdp._fast.packet import Batch
from kdp.control import Cluster
from kdp.control.dns import build_zone
from kdp.control.dnswire import encode
from kdp.dataplane import Dataplane
from kdp.benchmarks.peers.dnspython_responder import Responder

CLIENT, DNS_IP, COREDNS = "10.244.1.50", "10.96.0.53", "10.244.2.53"
UPSTREAM = {"www.example.com.": "93.184.216.34"}     # the internet, as CoreDNS's forward sees it


def coredns(responder, data):
    kind, wire = responder.respond(data)
    if kind == "reply":
        return wire
    q = dns.message.from_wire(data)
    r = dns.message.make_response(q)
    name = q.question[0].name.to_text().lower()
    if name in UPSTREAM:
        if q.question[0].rdtype == 1:
            r.answer.append(dns.rrset.from_text(q.question[0].name, 300, "IN", "A", UPSTREAM[name]))
    else:
        r.set_rcode(dns.rcode.NXDOMAIN)
    return r.to_wire()


def main():
    mode, snap, log_path = sys.argv[1:4]
    cluster = Cluster.load([snap], node="node-1")
    zone = build_zone(cluster)
    encode(zone)
    responder = Responder(zone)
    dp = Dataplane.from_snapshot([snap], "node-1") if mode == "kdp" else None
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 53))
    sock.settimeout(0.5)
    print("ready", flush=True)
    deadline = time.monotonic() + 60
    with open(log_path, "w") as log:
        while time.monotonic() < deadline:
            try:
                data, peer = sock.recvfrom(4096)
            except socket.timeout:
                continue
            who, resp = "coredns", None
            if dp is not None:
                b = Batch(1)
                b.append(raw(Ether() / IP(src=CLIENT, dst=DNS_IP) / UDP(sport=peer[1], dport=53) / data))
                dp.process(b)
                m = b.meta[0]
                out = Ether(b.packet(0))
                if m["verdict"] == 5:
                    who, resp = "kdp", bytes(out[UDP].payload)
                elif m["verdict"] == 1 and out[IP].dst == COREDNS and out[UDP].dport == 53:
                    resp = coredns(responder, bytes(out[UDP].payload))
                else:
                    who = f"lost (verdict {int(m['verdict'])})"
            else:
                resp = coredns(responder, data)
            q = dns.message.from_wire(data)
            entry = {"who": who, "name": q.question[0].name.to_text(),
                     "type": dns.rdatatype.to_text(q.question[0].rdtype)}
            if resp is not None:
                entry["rcode"] = dns.rcode.to_text(dns.message.from_wire(resp).rcode())
                sock.sendto(resp, peer)
            log.write(json.dumps(entry) + "\n")
            log.flush()


if __name__ == "__main__":
    main()
