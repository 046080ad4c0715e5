"""Independent cross-checks of replay's views (issue 15), beside test_replay_count_log_only
and test_flow_log: -c against tcpdump -c's own output (frames compared, with and without a
filter), the flow log field by field against the capture as scapy reads it (packets, IP
bytes and times each way, the tuple after NAT as the verdict log saw it leave), and
conntrack's flow-log API (early drop, flush; a property test: every flow conntrack made
is logged once, and the logged packets add up to the packets conntrack counted)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.utils import rdpcap
from scapy.layers.l2 import Ether

ROOT = Path(__file__).resolve().parents[1]
PCAPS = ROOT / "pcaps"
SAMPLE = PCAPS / "sample.pcap"
CLUSTER = PCAPS / "sample-cluster"


def kdp(*args):
    return subprocess.run([sys.executable, "-m", "kdp", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def replay(tmp_path, *extra, capture=SAMPLE):
    log = tmp_path / "log.jsonl"
    run = kdp("replay", capture, "--cluster", CLUSTER, "--node", "node-1", "--log", log,
              "--json", *extra)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout), [json.loads(x) for x in log.read_text().splitlines()]


@pytest.mark.usefixtures("tcpdump")
@pytest.mark.parametrize("n, expression", [(5, None), (1, None), (34, None), (2, "udp"), (3, "tcp and not port 80")])
def test_count_stops_after_n_packets_as_tcpdump_c(tmp_path, n, expression):
    out = tmp_path / "tcpdump.pcap"
    cmd = ["tcpdump", "-r", str(SAMPLE), "-c", str(n), "-w", str(out)] + ([expression] if expression else [])
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    want = [bytes(p) for p in rdpcap(str(out))]
    frames = [bytes(p) for p in rdpcap(str(SAMPLE))]
    extra = ["-c", n] + (["--filter", expression] if expression else [])
    summary, log = replay(tmp_path, *extra)
    assert [frames[line["index"]] for line in log] == want
    # every packet read up to the n-th match is counted, none after it
    last = log[-1]["index"]
    assert summary["packets_in"] == last + 1
    assert sum(c["packets"] for c in summary["counters"]) == last + 1


def _tuple(pkt):
    """(proto, src, dst, sport, dport) of a scapy packet as conntrack keys it (ICMP echo:
    the identifier as both ports), None when not a flow packet."""
    ip = pkt[IP] if IP in pkt else (pkt[IPv6] if IPv6 in pkt else None)
    if ip is None:
        return None
    if TCP in pkt:
        return ("tcp", ip.src, ip.dst, pkt[TCP].sport, pkt[TCP].dport)
    if UDP in pkt:
        return ("udp", ip.src, ip.dst, pkt[UDP].sport, pkt[UDP].dport)
    if ICMP in pkt and pkt[ICMP].type in (0, 8):
        return ("icmp", ip.src, ip.dst, pkt[ICMP].id, pkt[ICMP].id)
    return None


def _key(proto, t, reply=False):
    if proto == "icmp":         # (identifier, echo type) as conntrack keeps them
        return (proto, t["src"], t["dst"], t["sport"], t["sport"])
    return (proto, t["src"], t["dst"], t["sport"], t["dport"])


def _ip_len(pkt):
    return pkt[IP].len if IP in pkt else 40 + pkt[IPv6].plen


def test_flow_log_records_every_flow_field_by_field_against_the_capture(tmp_path):
    flows = tmp_path / "flows.jsonl"
    summary, log = replay(tmp_path, "--flows", flows)
    records = [json.loads(x) for x in flows.read_text().splitlines()]
    assert len(records) == summary["conntrack"]["inserts"] == 12
    pkts = rdpcap(str(SAMPLE))
    # the packets each record's tuples describe, as received (dropped ones before
    # conntrack -- parse errors, DNS answered in place -- have no flow)
    counted = [i for i, line in enumerate(log) if line["ct"] is not None]
    for r in records:
        orig, reply = _key(r["proto"], r["orig"]), _key(r["proto"], r["reply"])
        mine = {0: [], 1: []}
        for i in counted:
            t = _tuple(pkts[i])
            if t == orig:
                mine[0].append(pkts[i])
            elif t == reply:
                mine[1].append(pkts[i])
        assert mine[0], r
        assert r["packets"] == {"orig": len(mine[0]), "reply": len(mine[1])}, r
        assert r["bytes"] == {"orig": sum(map(_ip_len, mine[0])), "reply": sum(map(_ip_len, mine[1]))}, r
        times = [float(p.time) for p in mine[0] + mine[1]]
        assert r["first_ts"] == pytest.approx(min(times), abs=1e-6)
        assert r["last_ts"] == pytest.approx(max(times), abs=1e-6)
        assert r["end"] == "live"
        # after NAT: what the verdict log says the first packet left as
        first = next(line for line in log if line["ct"] == "new" and line["orig"]["src"] == r["orig"]["src"]
                     and line["orig"]["dst"] == r["orig"]["dst"]
                     and (r["proto"] == "icmp" or line["orig"]["sport"] == r["orig"]["sport"]))
        assert first["service"] == r["service"]
        if r["proto"] != "icmp" and first["verdict"] == "forward" and "tunnel" not in first:
            assert (first["src"], first["dst"], first["sport"], first["dport"]) == \
                (r["translated"]["src"], r["translated"]["dst"], r["translated"]["sport"],
                 r["translated"]["dport"])
    by_service = {r["service"]: r for r in records if r["service"]}
    web = by_service["shop/web:http"]
    assert web["backend"] == "10.244.1.10:8080" and web["state"] == "TIME_WAIT" and web["assured"]
    assert web["packets"] == {"orig": 5, "reply": 3}
    api = by_service["shop/api:grpc"]          # NodePort from outside: masqueraded to the node
    assert api["translated"]["src"] == "192.168.56.11" and api["state"] == "SYN_SENT"
    db = next(r for r in records if r["orig"].get("dport") == 5432)
    assert "data/db" in db["policy"]["ingress"]


def test_conntrack_records_flows_evicted_from_a_full_table_and_flushed():
    import numpy as np
    from kdp.conntrack import Conntrack
    ct = Conntrack(capacity=2)
    ct.enable_flow_log()
    for i, now in ((1, 5), (2, 6), (3, 7)):
        ct.insert4(np.array([0x0A000000 + i], np.uint32), np.array([0x0A000009], np.uint32),
                   np.array([1000], np.uint16), np.array([80], np.uint16), np.array([6], np.uint8), now_ns=now)
        ct.expire(now, 0)               # a new batch: the flows may go now
    assert len(ct) == 2
    ended = ct.drain_ended()
    assert [(f["orig"][0], f["end"]) for f in ended] == [("10.0.0.1", "evicted")]
    assert ended[0]["first_ns"] == 5                  # its first packet's time
    assert ct.flush_all() == 2
    assert sorted((f["orig"][0], f["end"]) for f in ct.drain_ended()) == \
        [("10.0.0.2", "flushed"), ("10.0.0.3", "flushed")]
    assert ct.drain_ended() == [] and ct.flow_log_lost == 0


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(flows=st.lists(st.tuples(st.integers(0, 11), st.booleans(), st.integers(0, 3)), min_size=1, max_size=120),
       capacity=st.sampled_from([4, 8, 64]), batch=st.sampled_from([1, 7, 64]))
def test_flow_log_accounts_for_every_flow_once_and_every_packet(flows, capacity, batch):
    """UDP packets among 12 client ports (either direction, gaps of 0 / 1 / 40 / 400 s
    against UDP's 30 s and 120 s timeouts) through a small table: every flow conntrack made
    ends in the log exactly once (ended, or live at the end), with why matching conntrack's
    counters, and the log's packets add up to the packets conntrack counted."""
    import numpy as np
    from kdp import Batch
    from kdp._fast.pipeline import Pipeline
    from kdp._fast.route import RouteTable
    from kdp.control.node import PLAIN_ROUTES
    from kdp.conntrack import Conntrack
    ct = Conntrack(capacity=capacity)
    ct.enable_flow_log()
    pl = Pipeline(RouteTable(PLAIN_ROUTES), conntrack=ct)
    t = 1_763_700_000 * 10**9
    frames = []
    for port, reply, gap in flows:
        t += (0, 1, 40, 400)[gap] * 10**9
        a, b = ("10.0.0.1", 10000 + port), ("10.0.0.2", 53)
        (s, sp), (d, dp) = (b, a) if reply else (a, b)
        frames.append((bytes(Ether() / IP(src=s, dst=d) / UDP(sport=sp, dport=dp) / b"q"), t))
    ended, counted = [], 0
    for i in range(0, len(frames), batch):
        bt = Batch(batch)
        for data, ts in frames[i:i + batch]:
            bt.append(data, ts_ns=ts)
        pl.run(bt)
        m = bt.meta[:len(bt)]
        # packets of a flow (a refused new flow -- table full -- has none)
        counted += int((np.isin(m["ct_state"], (1, 2, 3)) & (m["flow_id"] != 0xFFFFFFFF)).sum())
        ended += ct.drain_ended()
    live = ct.live_flows()
    c = ct.counters()
    assert len(ended) + len(live) == c["inserts"]
    whys = [f["end"] for f in ended]
    assert whys.count("evicted") == c["evictions"] and whys.count("expired") == c["expiries"]
    assert set(whys) <= {"evicted", "expired"}
    total = sum(sum(f["packets"]) for f in ended + live)
    assert total == counted
    assert all(f["first_ns"] <= f["last_ns"] for f in ended + live) and ct.flow_log_lost == 0
