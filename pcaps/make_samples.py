#!/usr/bin/env python3
"""Writes the shipped sample captures, deterministically (fixed timestamps, no randomness).

    python pcaps/make_samples.py          # rewrites pcaps/sample.pcap and pcaps/sample.pcapng

The traffic is node-1's view of pcaps/sample-cluster/ (see pcaps/README.md for the
story of each packet). Needs scapy (a test dependency), not kdp.
"""
from pathlib import Path

from scapy.all import (ARP, DNS, DNSQR, ICMP, IP, TCP, UDP, Ether, IPv6, PcapNgWriter, Raw,
                       raw, wrpcap)

HERE = Path(__file__).resolve().parent
T0 = 1_763_700_000.0          # 2025-11-21, a fixed start

NODE_MAC, UPLINK_PEER_MAC = "02:00:00:00:01:01", "02:00:00:00:ff:01"
POD_MAC = "02:00:00:00:02:50"
CLIENT, WEB1, WEB2, API1, FRONTEND1, CACHE1 = ("10.244.1.50", "10.244.1.10", "10.244.2.10",
                                              "10.244.1.11", "10.244.1.20", "10.244.1.40")
DB0 = "10.244.1.30"
NODE1, OUTSIDE, LB_IP = "192.168.56.11", "198.51.100.7", "203.0.113.10"


def from_pod(pkt):
    return Ether(src=POD_MAC, dst=NODE_MAC) / pkt


def from_uplink(pkt):
    return Ether(src=UPLINK_PEER_MAC, dst=NODE_MAC) / pkt


def story():
    """(description, frame) in capture order."""
    out = []

    def add(what, frame):
        out.append((what, frame))

    # 1. a pod opens a TCP connection to the ClusterIP of shop/web; the backend's
    #    answers come from the pod kdp chose: the flow hash of source port 41002
    #    picks web-1 (kdp's Maglev table; tests/test_sample.py would notice a change)
    c = IP(src=CLIENT, dst="10.96.0.10")
    add("client SYN to shop/web ClusterIP", from_pod(c / TCP(sport=41002, dport=80, flags="S", seq=100)))
    b = IP(src=WEB1, dst=CLIENT)
    add("web-1 SYN-ACK (reply, reverse-NATed to the ClusterIP)",
        from_pod(b / TCP(sport=8080, dport=41002, flags="SA", seq=900, ack=101)))
    add("client ACK", from_pod(c / TCP(sport=41002, dport=80, flags="A", seq=101, ack=901)))
    get = b"GET / HTTP/1.1\r\nHost: web.shop\r\n\r\n"
    add("client HTTP GET", from_pod(c / TCP(sport=41002, dport=80, flags="PA", seq=101, ack=901) / get))
    body = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    add("web-1 HTTP 200", from_pod(b / TCP(sport=8080, dport=41002, flags="PA", seq=901, ack=101 + len(get)) / body))
    add("client FIN", from_pod(c / TCP(sport=41002, dport=80, flags="FA", seq=101 + len(get), ack=901 + len(body))))
    add("web-1 FIN", from_pod(b / TCP(sport=8080, dport=41002, flags="FA", seq=901 + len(body), ack=102 + len(get))))
    add("client last ACK", from_pod(c / TCP(sport=41002, dport=80, flags="A", seq=102 + len(get), ack=902 + len(body))))

    # 2. UDP to shop/cache (sessionAffinity ClientIP): two sockets, one backend
    add("client UDP to shop/cache", from_pod(IP(src=CLIENT, dst="10.96.0.40") / UDP(sport=52000, dport=11211) / b"get k\r\n"))
    add("cache-1 UDP answer", from_pod(IP(src=CACHE1, dst=CLIENT) / UDP(sport=11211, dport=52000) / b"END\r\n"))
    add("client UDP to shop/cache, other socket (same backend: affinity)",
        from_pod(IP(src=CLIENT, dst="10.96.0.40") / UDP(sport=52001, dport=11211) / b"get j\r\n"))
    add("cache-1 ICMP port unreachable about it (related, translated)",
        from_pod(IP(src=CACHE1, dst=CLIENT) / ICMP(type=3, code=3)
                 / IP(src=CLIENT, dst=CACHE1) / UDP(sport=52001, dport=11211) / b"get j\r\n"))

    # 3. from outside: NodePort (masqueraded) and the LoadBalancer (Local policy: source kept)
    add("outside SYN to NodePort 30080 of shop/api",
        from_uplink(IP(src=OUTSIDE, dst=NODE1) / TCP(sport=50000, dport=30080, flags="S", seq=1)))
    add("outside SYN to the LoadBalancer IP of shop/frontend",
        from_uplink(IP(src=OUTSIDE, dst=LB_IP) / TCP(sport=50001, dport=443, flags="S", seq=1)))
    add("frontend-1 SYN-ACK to the outside client (reverse-NATed to the LB IP)",
        from_pod(IP(src=FRONTEND1, dst=OUTSIDE) / TCP(sport=8443, dport=50001, flags="SA", seq=7, ack=2)))
    add("SYN to the LoadBalancer IP from a source outside loadBalancerSourceRanges",
        from_uplink(IP(src="192.0.2.1", dst=LB_IP) / TCP(sport=50002, dport=443, flags="S")))

    # 4. nftables-mode edges of the service CIDR
    add("SYN to a port shop/web does not expose (rejected: ICMP port unreachable back)",
        from_pod(IP(src=CLIENT, dst="10.96.0.10") / TCP(sport=41011, dport=81, flags="S")))
    add("SYN to an unallocated service address (dropped)",
        from_pod(IP(src=CLIENT, dst="10.96.0.99") / TCP(sport=41012, dport=80, flags="S")))

    # 5. plain routing
    add("pod to a pod on node-2 (IP-in-IP to node-2 out of the uplink)",
        from_pod(IP(src=CLIENT, dst=WEB2) / TCP(sport=41013, dport=8080, flags="S")))
    add("pod pings the internet", from_pod(IP(src=CLIENT, dst="8.8.8.8") / ICMP(id=7, seq=1)))
    add("the echo reply", from_uplink(IP(src="8.8.8.8", dst=CLIENT) / ICMP(type=0, id=7, seq=1)))
    add("DNS query to the node itself (local delivery)",
        from_pod(IP(src=CLIENT, dst=NODE1) / UDP(sport=53000, dport=53) / DNS(qd=DNSQR(qname="web.shop"))))
    add("packet to an unused address of node-1's pod block (no route)",
        from_uplink(IP(src=OUTSIDE, dst="10.244.1.99") / TCP(sport=50003, dport=80, flags="S")))
    add("IPv6 from a pod (the sample cluster is IPv4 only: no route)",
        from_pod(IPv6(src="fd00::50", dst="2001:db8::1") / UDP(sport=1, dport=2)))
    add("ARP request for the gateway (the node's neighbour handling)",
        Ether(src=POD_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=CLIENT, pdst="10.244.1.1"))

    # 6. damage
    bad = bytearray(raw(from_pod(IP(src=CLIENT, dst="8.8.8.8") / UDP(sport=1, dport=2))))
    bad[14 + 10] ^= 0xFF
    add("IPv4 header checksum wrong", Ether(bytes(bad)))
    add("IPv4 header cut short", Ether(raw(from_pod(IP(src=CLIENT, dst="8.8.8.8") / UDP()))[:14 + 12]))
    tcp = bytearray(raw(from_pod(IP(src=CLIENT, dst="8.8.8.8") / TCP(sport=1, dport=2))))
    tcp[14 + 20 + 12] = 0x30           # data offset 3 (< 5)
    add("TCP data offset below 5", Ether(bytes(tcp)))

    # 7. cluster DNS: queries to kube-system/kube-dns (10.96.0.53)
    dns = IP(src=CLIENT, dst="10.96.0.53")
    add("DNS A web.shop.svc.cluster.local (answered by kdp in place)",
        from_pod(dns / UDP(sport=53100, dport=53) / DNS(id=1, rd=1, qd=DNSQR(qname="web.shop.svc.cluster.local"))))
    add("DNS AAAA of a search-path expansion (NXDOMAIN at once)",
        from_pod(dns / UDP(sport=53101, dport=53) / DNS(id=2, rd=1, qd=DNSQR(
            qname="web.shop.svc.cluster.local.shop.svc.cluster.local", qtype="AAAA"))))
    add("DNS A www.example.com (not the cluster's: to CoreDNS on node-2, IP-in-IP)",
        from_pod(dns / UDP(sport=53102, dport=53) / DNS(id=3, rd=1, qd=DNSQR(qname="www.example.com"))))

    # 8. network policy (sample-cluster/networkpolicies.yaml)
    add("api-1 SYN to db-0's port pg (allowed by NetworkPolicy data/db)",
        from_pod(IP(src=API1, dst=DB0) / TCP(sport=43000, dport=5432, flags="S", seq=1)))
    add("db-0 SYN-ACK (a reply: passes)",
        from_pod(IP(src=DB0, dst=API1) / TCP(sport=5432, dport=43000, flags="SA", seq=50, ack=2)))
    add("client SYN to db-0 (not an api pod of shop: dropped, policy_denied_ingress)",
        from_pod(IP(src=CLIENT, dst=DB0) / TCP(sport=43001, dport=5432, flags="S", seq=1)))
    add("web-1 SYN to the cloud metadata address (ClusterNetworkPolicy: policy_denied_egress)",
        from_pod(IP(src=WEB1, dst="169.254.169.254") / TCP(sport=43002, dport=80, flags="S", seq=1)))
    return out


def main():
    frames = []
    for i, (_what, frame) in enumerate(story()):
        frame.time = T0 + i * 0.001
        frames.append(frame)
    wrpcap(str(HERE / "sample.pcap"), frames)
    with PcapNgWriter(str(HERE / "sample.pcapng")) as w:
        for frame in frames:
            w.write(frame)
    (HERE / "sample.txt").write_text(
        "".join(f"{i:3d}  {what}\n" for i, (what, _f) in enumerate(story())))


if __name__ == "__main__":
    main()
