"""The conntrack stage over whole batches, and tables whose memory is reserved up front.

ct_lookup_batch works on a batch in chunks, several passes per chunk (key and
hash, index probe, resolve), with an inline path for IPv4 TCP/UDP/SCTP packets
and the general one for everything else. Whatever the batch boundaries, every
packet must come out as it does when it travels alone: same ct_state, same
verdict, same flows at the end. Hypothesis checks that on random mixes of
IPv4/IPv6 TCP (handshakes, teardowns, reopened tuples), UDP and ICMP echo
traffic split into batches of random sizes.
"""
import functools

import numpy as np
from hypothesis import given, settings, strategies as st
from scapy.all import ICMP, IP, IPv6, ICMPv6EchoReply, ICMPv6EchoRequest, TCP, UDP, raw

from kdp._fast.conntrack import Conntrack, NO_FLOW, PACKET_CLOCK, TCP_STATES
from kdp._fast.packet import Batch
from kdp._fast.parse import parse
from kdp.reasons import CtState, Verdict

from kdptest import eth

MS = 1_000_000

CLIENTS = [("10.0.0.1", "10.0.9.9"), ("10.0.0.2", "10.0.9.9"),
           ("fd00::1", "fd00::99"), ("fd00::2", "fd00::99")]
FLAGS = ["S", "SA", "A", "PA", "FA", "R", "RA", "", "SF", "AU", "F"]
SCRIPTS = [
    [(False, "S"), (True, "SA"), (False, "A")],                      # handshake
    [(False, "FA"), (True, "A"), (True, "FA"), (False, "A")],        # close: TIME_WAIT
    [(False, "S")],                                                  # reopen after close
    [(False, "PA"), (True, "PA"), (False, "A")],
]

one_packet = st.tuples(
    st.sampled_from(["tcp", "tcp", "udp", "icmp"]),
    st.integers(0, len(CLIENTS) - 1),
    st.integers(0, 2),                      # client port choice
    st.booleans(),                          # from the server
    st.sampled_from(FLAGS),
)


@st.composite
def traffic(draw):
    out = []
    for _ in range(draw(st.integers(1, 40))):
        if draw(st.booleans()):
            out.append(draw(one_packet))
        else:
            c, port = draw(st.integers(0, len(CLIENTS) - 1)), draw(st.integers(0, 2))
            out += [("tcp", c, port, back, flags) for back, flags in draw(st.sampled_from(SCRIPTS))]
    return out


@functools.lru_cache(maxsize=None)
def frame(kind, c, port, back, flags):
    cli, srv = CLIENTS[c]
    cport, sport = 40000 + port, 80
    src, dst = (srv, cli) if back else (cli, srv)
    ipc = IPv6 if ":" in cli else IP
    if kind == "tcp":
        l4 = TCP(sport=sport, dport=cport, flags=flags) if back else TCP(sport=cport, dport=sport, flags=flags)
    elif kind == "udp":
        l4 = UDP(sport=sport, dport=cport) if back else UDP(sport=cport, dport=sport)
    elif ipc is IP:
        l4 = ICMP(type=0 if back else 8, id=port + 1)
    else:
        l4 = ICMPv6EchoReply(id=port + 1) if back else ICMPv6EchoRequest(id=port + 1)
    return raw(eth() / ipc(src=src, dst=dst) / l4)


def run_batches(frames, sizes):
    """Every frame through lookup_batch -> create (CT_NEW) in batches of the given
    sizes, each packet aged by its own timestamp. Returns per-packet outcomes and the
    flows left (without ids: allocation order, and so which freed id a flow reuses,
    may differ between batchings)."""
    ct = Conntrack(4096)
    out = []
    i = 0
    for size in sizes:
        chunk = frames[i:i + size]
        i += size
        b = Batch(len(chunk))
        for j, f in enumerate(chunk):
            b.append(f, ts_ns=(i - size + j + 1) * MS)
        parse(b)
        assert all(b.meta["verdict"][:len(b)] == Verdict.PENDING)
        ct.lookup_batch(b, PACKET_CLOCK)
        for j in range(len(b)):
            m = b.meta[j]
            if m["verdict"] == Verdict.PENDING and m["ct_state"] == CtState.NEW:
                ct.create(b, j, None, PACKET_CLOCK)
        for j in range(len(b)):
            m = b.meta[j]
            out.append((int(m["verdict"]), int(m["reason"]), int(m["ct_state"]),
                        m["flow_id"] != NO_FLOW))
    assert i == len(frames)
    flows = sorted((f["orig"], f["reply"], f["proto"], f["state"], f["assured"], f["packets"], f["bytes"])
                   for f in ct.flows())
    # a packet of a flow that exists is a hit of the stage, or (when an earlier packet
    # of its batch created the flow) a miss the slow path's second look finds: create_hits
    c = ct.counters()
    assert c["lookups"] == c["hits"] + c["misses"] + c["related"] + c["errors_no_flow"]
    return out, flows, c["hits"] + c["create_hits"]


@settings(max_examples=60, deadline=None)
@given(packets=traffic(), cuts=st.lists(st.integers(1, 70), min_size=1, max_size=12))
def test_batch_boundaries_do_not_change_any_packets_outcome(packets, cuts):
    frames = [frame(*p) for p in packets]
    alone, flows_alone, found_alone = run_batches(frames, [1] * len(frames))
    sizes = []
    left = len(frames)
    for c in cuts:
        if left == 0:
            break
        sizes.append(min(c, left))
        left -= sizes[-1]
    if left:
        sizes.append(left)
    batched, flows_batched, found_batched = run_batches(frames, sizes)
    assert batched == alone
    assert flows_batched == flows_alone
    assert found_batched == found_alone


def test_a_full_batch_of_established_packets_hits_every_flow_in_order():
    # 1,000 flows, a batch of 600 ACKs (many chunks, several packets per flow, both
    # directions): every packet finds its own flow, counters add up per direction
    rng = np.random.default_rng(7)
    ct = Conntrack(2048)
    n = 1000
    src = (0x0A000000 + np.arange(n)).astype(np.uint32)
    dst = np.full(n, 0x0A090909, np.uint32)
    sport = (20000 + np.arange(n)).astype(np.uint16)
    dport = np.full(n, 443, np.uint16)
    proto = np.full(n, 6, np.uint8)
    ids = ct.insert4(src, dst, sport, dport, proto, 1, tcp_state=TCP_STATES["ESTABLISHED"])
    pick = rng.integers(0, n, 600)
    back = rng.random(600) < 0.3
    b = Batch(600)
    for k, r in zip(pick, back):
        a, z = "10.%d.%d.%d" % ((src[k] >> 16) & 255, (src[k] >> 8) & 255, src[k] & 255), "10.9.9.9"
        if r:
            b.append(raw(eth() / IP(src=z, dst=a) / TCP(sport=443, dport=int(sport[k]), flags="A")))
        else:
            b.append(raw(eth() / IP(src=a, dst=z) / TCP(sport=int(sport[k]), dport=443, flags="A")))
    parse(b)
    ct.lookup_batch(b, 2)
    m = b.meta[:600]
    assert np.array_equal(m["flow_id"], ids[pick])
    assert np.array_equal(m["ct_state"], np.where(back, CtState.REPLY, CtState.ESTABLISHED))
    for k in np.unique(pick):
        f = ct.flow(int(ids[k]))
        assert f["packets"] == (int(np.sum((pick == k) & ~back)), int(np.sum((pick == k) & back)))
    assert ct.counters()["hits"] == 600 and ct.counters()["lookups"] == 600


def test_second_packets_of_every_kind_of_flow_are_found_by_the_stage_itself():
    # IPv4 and IPv6, TCP/UDP/ICMP echo: the first batch creates the flows, a second
    # batch (reversed, so chunk boundaries fall elsewhere) carries a packet of each
    # in the other direction: each is a hit of the fast path, not of the slow path
    firsts, seconds = [], []
    for c in range(len(CLIENTS)):
        for port in range(3):
            for kind, f1, f2 in (("tcp", "S", "SA"), ("udp", "", ""), ("icmp", "", "")):
                firsts.append(frame(kind, c, port, False, f1))
                seconds.append(frame(kind, c, port, True, f2))
    ct = Conntrack(1024)
    b1 = Batch(len(firsts))
    for f in firsts:
        b1.append(f)
    parse(b1)
    ct.lookup_batch(b1, 1)
    assert ct.create_all(b1, 1) == len(firsts)
    ids = b1.meta["flow_id"][:len(b1)].copy()
    b2 = Batch(len(seconds))
    for f in reversed(seconds):
        b2.append(f)
    parse(b2)
    before = ct.counters()
    ct.lookup_batch(b2, 2)
    assert np.array_equal(b2.meta["flow_id"][:len(b2)], ids[::-1])
    assert np.all(b2.meta["ct_state"][:len(b2)] == CtState.REPLY)
    after = ct.counters()
    assert after["hits"] - before["hits"] == len(seconds)
    assert after["misses"] == before["misses"]


# ---------------------------------------------------------------- prefault

def _rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_prefaulted_table_is_resident_from_construction():
    cap = 1 << 16                                    # 8 MiB of records
    r0 = _rss_bytes()
    lazy = Conntrack(cap)
    r1 = _rss_bytes()
    eager = Conntrack(cap, prefault=True)
    r2 = _rss_bytes()
    records_and_links = cap * (128 + 8)
    assert (r2 - r1) - (r1 - r0) >= 0.9 * records_and_links
    assert eager.settings["prefault"] is True and lazy.settings["prefault"] is False


def test_prefaulted_table_keeps_the_same_flows_as_a_lazy_one():
    rng = np.random.default_rng(3)
    n = 5000
    tup = ((0x0A000000 + rng.integers(0, 1 << 24, n)).astype(np.uint32),
           (0x0AF40000 + rng.integers(0, 4096, n)).astype(np.uint32),
           rng.integers(1024, 65536, n).astype(np.uint16),
           np.full(n, 80, np.uint16), np.full(n, 6, np.uint8))
    got = []
    for prefault in (False, True):
        ct = Conntrack(4096, prefault=prefault)            # smaller than n: evictions too
        ids = ct.insert4(*tup, 1)
        got.append((ids.tolist(), ct.lookup4(*tup).tolist(), ct.counters(), ct.flows()))
    assert got[0] == got[1]


def test_dataplane_reserves_its_flow_memory_up_front(tmp_path):
    from kdptest import Harness, base_objects
    h = Harness(tmp_path, base_objects())
    ct = h.dp.pipeline.conntrack
    assert ct.settings["prefault"] is True
    assert ct.capacity == ct.settings["capacity"]


@settings(max_examples=40, deadline=None)
@given(cap=st.integers(4, 300), seed=st.integers(0, 2**32 - 1), rounds=st.integers(1, 4))
def test_index_finds_every_live_flow_in_both_directions_after_random_deletions(cap, seed, rounds):
    # a full table (index at its highest load, runs wrapping past the end) loses random
    # flows (backward-shift deletion) and gains new ones, several times: every live flow
    # is found from either direction, every deleted one from neither
    rng = np.random.default_rng(seed)
    ct = Conntrack(cap, seed=seed)
    live, gone = {}, []
    next_src = 0x0A000000
    for _ in range(rounds):
        k = cap - len(live)
        src = np.arange(next_src, next_src + k, dtype=np.uint32)
        next_src += k
        tup = (src, np.full(k, 0x0A090909, np.uint32), rng.integers(1, 65536, k).astype(np.uint16),
               np.full(k, 80, np.uint16), np.full(k, 6, np.uint8))
        ids = ct.insert4(*tup, 1)
        assert not np.any(ids == NO_FLOW) and len(ct) == cap
        for j in range(k):
            live[int(ids[j])] = tuple(int(a[j]) for a in tup)
        for fid in rng.choice(sorted(live), size=int(rng.integers(1, len(live) + 1)), replace=False):
            gone.append(live.pop(int(fid)))
            s = gone[-1][0]
            assert ct.flush_address(".".join(str((s >> sh) & 255) for sh in (24, 16, 8, 0))) == 1
        allt = [live[f] for f in sorted(live)]
        if allt:
            cols = [np.array(c) for c in zip(*allt)]
            assert ct.lookup4(*cols).tolist() == sorted(live)
            assert ct.lookup4(cols[1], cols[0], cols[3], cols[2], cols[4]).tolist() == sorted(live)
        cols = [np.array(c) for c in zip(*gone)]
        assert np.all(ct.lookup4(*cols) == NO_FLOW)
        assert len(ct) == len(live)


@settings(max_examples=30, deadline=None)
@given(cap=st.integers(3, 200), seed=st.integers(0, 2**32 - 1),
       steps=st.lists(st.tuples(st.booleans(), st.integers(1, 50)), min_size=1, max_size=12))
def test_evictions_interleaved_with_flushes_keep_the_index_exact(cap, seed, steps):
    # early drop warms (and remembers the index tags of) the victims two ahead; flows
    # flushed meanwhile free their ids, which new flows reuse and which may be evicted
    # in turn: after every step each live flow is found from both directions and each
    # gone one from neither
    rng = np.random.default_rng(seed)
    ct = Conntrack(cap)
    live, gone = {}, []
    nxt = [0x0A000000]

    def insert(k):
        src = np.arange(nxt[0], nxt[0] + k, dtype=np.uint32)
        nxt[0] += k
        tup = (src, np.full(k, 0x0A090909, np.uint32), rng.integers(1, 65536, k).astype(np.uint16),
               np.full(k, 443, np.uint16), np.full(k, 17, np.uint8))
        before = {f: live[f] for f in live}
        ids = ct.insert4(*tup, 1)
        assert not np.any(ids == NO_FLOW)
        now_live = {f["id"] for f in ct.flows()}
        for f in before:
            if f not in now_live or ct.flow(f)["orig"][0] != addr(before[f][0]):
                gone.append(live.pop(f))          # evicted (its id may be reused already)
        for j in range(k):
            live[int(ids[j])] = tuple(int(a[j]) for a in tup)

    def addr(s):
        return ".".join(str((s >> sh) & 255) for sh in (24, 16, 8, 0))

    insert(cap)
    for flush, k in steps:
        if flush and live:
            for fid in rng.choice(sorted(live), size=min(k, len(live)), replace=False):
                gone.append(live.pop(int(fid)))
                assert ct.flush_address(addr(gone[-1][0])) == 1
        else:
            insert(min(k, cap))
        assert len(ct) == len(live)
        if live:
            cols = [np.array(c) for c in zip(*(live[f] for f in sorted(live)))]
            assert ct.lookup4(*cols).tolist() == sorted(live)
            assert ct.lookup4(cols[1], cols[0], cols[3], cols[2], cols[4]).tolist() == sorted(live)
        if gone:
            cols = [np.array(c) for c in zip(*gone)]
            assert np.all(ct.lookup4(*cols) == NO_FLOW)
            assert np.all(ct.lookup4(cols[1], cols[0], cols[3], cols[2], cols[4]) == NO_FLOW)



def test_prefault_beyond_available_memory_is_a_clear_error(monkeypatch):
    import pytest
    import kdp._fast.conntrack as ctmod
    monkeypatch.setattr(ctmod, "_mem_available", lambda: 1 << 20)
    with pytest.raises(MemoryError, match="prefault"):
        Conntrack(1 << 16, prefault=True)
    assert Conntrack(1 << 16).capacity == 1 << 16        # lazy tables are not refused
