"""The pipeline as a whole: time, counting, batches."""
from scapy.all import IP, UDP

from kdptest import CLIENT, WEB1, Harness, base_objects, endpoint, endpoint_slice, port, service
from kdp._fast.packet import Batch
from kdp.reasons import CtState, Verdict


def dns_cluster():
    return base_objects() + [service("dns", [port("dns", 53, 53, "UDP")]),
                             endpoint_slice("dns", [("dns", "UDP", 53)], [endpoint(WEB1, "node-1")])]


def query(sport=35000):
    return IP(src=CLIENT, dst="10.96.0.10") / UDP(sport=sport, dport=53) / b"q"


def test_flows_age_by_packet_timestamps(tmp_path):
    h = Harness(tmp_path, dns_cluster())
    assert h.send(query()).ct == CtState.NEW
    assert h.send(query(), advance_s=29).ct == CtState.ESTABLISHED
    # UDP flows live 30 s unreplied: 40 s after the last packet the flow is gone
    assert h.send(query(), advance_s=40).ct == CtState.NEW


def test_last_seen_is_each_packets_own_time_inside_a_batch(tmp_path):
    h = Harness(tmp_path, dns_cluster())
    h.send(query(30001), query(30002), query(30003), advance_s=5)
    last_seen = {f["orig"][2]: f["last_ns"] for f in h.dp.conntrack.flows()}
    assert last_seen == {30001: h.clock - 10 * 10**9, 30002: h.clock - 5 * 10**9, 30003: h.clock}


def test_a_timestamp_going_backwards_does_not_turn_back_the_clock(tmp_path):
    h = Harness(tmp_path, dns_cluster())
    h.send(query(), advance_s=100)
    h.clock -= 90 * 10**9          # an older packet (merged captures)
    out = h.send(query(), advance_s=0)
    assert out.ct == CtState.ESTABLISHED


def test_counters_count_every_packet_once(tmp_path):
    h = Harness(tmp_path, dns_cluster())
    packets = [query(sport) for sport in range(30000, 30050)] + [b"\x00" * 10]
    b = Batch(64)
    for p in packets:
        b.append(bytes(p) if not isinstance(p, bytes) else p)
    h.dp.process(b)
    assert int(h.dp.counters.sum()) == len(packets) == int(h.dp.verdicts.sum())
    assert int(h.dp.verdicts[Verdict.FORWARD]) == 0      # raw IP bytes appended as Ethernet: not IP
