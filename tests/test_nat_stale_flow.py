"""NAT never forwards a packet of a translated flow untranslated, even when its
flow record was freed and reused by another flow between conntrack and NAT."""
import pytest
from scapy.all import IP, IPv6, SCTP, TCP, UDP, Ether, Raw, raw

from kdp._fast.conntrack import Conntrack
from kdp._fast.nat import nat
from kdp._fast.packet import Batch
from kdp._fast.parse import parse
from kdp.reasons import CtState, Reason, Stage, Verdict

from kdptest import DNAT, S, eth, run

L4 = {"tcp": lambda sp, dp, first: TCP(sport=sp, dport=dp, flags="S" if first else "A"),
      "udp": lambda sp, dp, first: UDP(sport=sp, dport=dp),
      "sctp": lambda sp, dp, first: SCTP(sport=sp, dport=dp)}
ADDR = {4: ("10.0.0.1", "10.96.0.10", "10.244.0.2", "10.0.0.7", "10.96.0.11", "10.244.0.3"),
        6: ("fd00::1", "fd96::10", "fd44::2", "fd00::7", "fd96::11", "fd44::3")}


def pkt(ver, proto, src, dst, sport, dport, first=False):
    ipc = IP if ver == 4 else IPv6
    return eth() / ipc(src=src, dst=dst) / L4[proto](sport, dport, first) / Raw(b"x" * 8)


def looked_up(ct, p, now_ns):
    b = Batch(1)
    b.append(raw(p), ts_ns=now_ns)
    parse(b)
    ct.lookup_batch(b, now_ns)
    return b


@pytest.mark.parametrize("ver", [4, 6])
@pytest.mark.parametrize("proto", ["tcp", "udp", "sctp"])
@pytest.mark.parametrize("reply", [False, True])
def test_packet_whose_flow_record_was_reused_is_dropped_at_nat_not_leaked(ver, proto, reply):
    client, vip, backend, client2, vip2, backend2 = ADDR[ver]
    ct = Conntrack(4)
    first = run(ct, [pkt(ver, proto, client, vip, 4000, 80, first=True)], now_ns=S,
                spec={"flags": DNAT, "dnat": backend, "dnat_port": 8080})
    fid = int(first.meta[0]["flow_id"])
    # a packet of that flow passes conntrack ...
    p = (pkt(ver, proto, backend, client, 8080, 4000) if reply
         else pkt(ver, proto, client, vip, 4000, 80))
    b = looked_up(ct, p, 2 * S)
    assert int(b.meta[0]["flow_id"]) == fid
    assert CtState(int(b.meta[0]["ct_state"])) in (CtState.ESTABLISHED, CtState.REPLY, CtState.INVALID)
    # ... then the flow goes away and another translated flow takes its record
    ct.flush_all()
    other = run(ct, [pkt(ver, proto, client2, vip2, 5000, 81, first=True)], now_ns=2 * S,
                spec={"flags": DNAT, "dnat": backend2, "dnat_port": 9090})
    assert int(other.meta[0]["flow_id"]) == fid
    nat(ct, b)
    m = b.meta[0]
    assert (m["verdict"], m["stage"], m["reason"]) == (Verdict.DROP, Stage.NAT, Reason.CT_INVALID)
    assert b.packet(0) == raw(p)


@pytest.mark.parametrize("ver", [4, 6])
@pytest.mark.parametrize("proto", ["tcp", "udp", "sctp"])
def test_packets_of_a_live_translated_flow_are_translated_both_ways(ver, proto):
    client, vip, backend = ADDR[ver][:3]
    ct = Conntrack(4)
    out = run(ct, [pkt(ver, proto, client, vip, 4000, 80, first=True)], now_ns=S,
              spec={"flags": DNAT, "dnat": backend, "dnat_port": 8080})
    ipc = IP if ver == 4 else IPv6
    f = Ether(out.packet(0))
    assert (f[ipc].src, f[ipc].dst, f[ipc].payload.sport, f[ipc].payload.dport) == (client, backend, 4000, 8080)
    back = run(ct, [pkt(ver, proto, backend, client, 8080, 4000)], now_ns=2 * S)
    assert back.meta[0]["verdict"] == Verdict.PENDING
    r = Ether(back.packet(0))
    assert (r[ipc].src, r[ipc].dst, r[ipc].payload.sport, r[ipc].payload.dport) == (vip, client, 80, 4000)
    # checksums: scapy recomputes them from scratch when told to forget them
    for frame in (out.packet(0), back.packet(0)):
        ref = Ether(frame)
        layer = ref[ipc].payload
        del layer.chksum
        if ver == 4:
            del ref[IP].chksum
        assert raw(ref) == frame
