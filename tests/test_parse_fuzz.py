"""The parser on hostile input: arbitrary and mutated bytes on every link type.

It must never crash, must end each packet with a parse outcome, must keep
every offset inside the captured bytes, and must never read past ``len``:
the same packet followed by different garbage in the buffer parses to the
same metadata, and the same packet laid flush against an unreadable page
(parse.parse_guarded) parses to the same metadata instead of faulting. The
parser reads through raw pointers, which Cython's bounds checks do not see:
the guard page is the out-of-bounds check (run it on the KDP_DEBUG=1 build
as well).
"""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdp._fast import packet, parse
from kdp.reasons import Reason, Stage, Verdict

from kdptest import frame

LINKTYPES = [0, 1, 101, 108, 113, 228, 229, 276, 147]
PARSE_REASONS = {r for r in Reason if Reason.TRUNCATED_L2 <= r <= Reason.TRUNCATED_TUNNEL} | {
    Reason.BAD_IPV4_CHECKSUM, Reason.BAD_ICMP_QUOTE, Reason.UNSUPPORTED_LINKTYPE}
PARSE_REASONS.discard(Reason.ARP)


def parse_with_tail(data, lt, wire_len, fill):
    """Parse one packet whose buffer is followed by `fill` bytes."""
    b = packet.Batch(1)
    b.append(data, linktype=lt, wire_len=wire_len)
    end = int(b.meta[0]["off"]) + len(data)
    b.buffer[end:end + 1024] = fill
    parse.parse(b)
    return b


def check_one(data, lt, extra):
    wire = len(data) + extra
    a = parse_with_tail(data, lt, wire, 0x00)
    z = parse_with_tail(data, lt, wire, 0xFF)
    r = np.random.default_rng(len(data)).integers(0, 256, 1024, dtype=np.uint8)
    m = parse_with_tail(data, lt, wire, r)
    assert a.meta[0] == z.meta[0] and a.meta[0] == m.meta[0], "read past the captured bytes"
    rec = a.meta[0]
    g = parse.parse_guarded(data, lt, wire_len=wire)
    for name in rec.dtype.names:
        if name != "off":
            assert np.array_equal(g[name], rec[name]), name
    check_outcome(rec, len(data))


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(LINKTYPES), st.binary(max_size=200), st.integers(0, 3000))
def test_arbitrary_bytes_never_crash_or_read_past_the_capture(lt, data, extra):
    check_one(data, lt, extra)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame(), st.data())
def test_mutated_packets_never_crash_or_read_past_the_capture(f, data):
    lt, raw = f
    raw = bytearray(raw[: data.draw(st.integers(0, len(raw)))])
    for _ in range(data.draw(st.integers(0, 4))):
        if raw:
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    check_one(bytes(raw), lt, data.draw(st.sampled_from([0, 0, 1, 100, 5000])))


def check_outcome(rec, n):
    v, s, reason = Verdict(int(rec["verdict"])), Stage(int(rec["stage"])), Reason(int(rec["reason"]))
    if v == Verdict.PENDING:
        assert reason == Reason.FORWARDED and rec["ip_ver"] in (4, 6)
    elif v == Verdict.LOCAL:
        assert (s, reason) == (Stage.PARSE, Reason.ARP)
    else:
        assert v == Verdict.DROP and s == Stage.PARSE and reason in PARSE_REASONS
    for f in ("l3_off", "l4_off", "inner_off", "quote_off"):
        assert rec[f] <= n


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame(), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=3))
def test_every_truncation_of_a_packet_stays_within_the_capture(f, flips):
    """Cut at every byte, as a snaplen cut (wire length kept) and as a short
    packet; the guard page faults on any read past the cut."""
    lt, raw = f
    raw = bytearray(raw)
    for pos, val in flips:
        raw[pos % len(raw)] = val
    raw = bytes(raw)
    for cut in range(len(raw) + 1):
        for wire in (len(raw), cut):
            check_outcome(parse.parse_guarded(raw[:cut], lt, wire_len=wire), cut)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(LINKTYPES), st.binary(max_size=120)), min_size=1, max_size=40))
def test_every_packet_of_a_batch_gets_an_outcome(pkts):
    b = packet.Batch(len(pkts))
    for lt, d in pkts:
        b.append(d, linktype=lt)
    parse.parse(b)
    for i in range(len(b)):
        rec = b.meta[i]
        if rec["verdict"] == Verdict.PENDING:
            assert rec["ip_ver"] in (4, 6) and rec["reason"] == Reason.FORWARDED
        else:
            assert rec["stage"] == Stage.PARSE and rec["reason"] != Reason.FORWARDED
