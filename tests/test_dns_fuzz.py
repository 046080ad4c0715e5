"""The DNS parser and stage on hostile input (hypothesis).

Random bytes and mutated queries must never crash, must end with one outcome,
must never read past the datagram (the parser runs flush against an unreadable
page: dns.parse_guarded; and the stage gives the same result whatever bytes
follow the packet in the batch), must never write outside the packet's slot or
the batch tail, and whatever kdp answers must be a DNS message dnspython reads.
The parser's name is checked against a plain Python walk of the question.
"""
import ipaddress

import dns.message
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.all import UDP, Ether, raw

from kdp._fast import dns as fdns
from kdp._fast.dns import DnsOutcome as O
from kdp._fast.packet import Batch
from kdp._fast.parse import parse
from kdp.control.dns import pod_address
from kdp.reasons import Reason, Verdict

from dnstest import frame, make_query, zone_and_table

VALID = set(O)
SEEDS = [make_query(n, t, edns=e) for n, t, e in (
    ("web.shop.svc.cluster.local", "A", None), ("_pg._tcp.db.shop.svc.cluster.local", "SRV", 0),
    ("nope.shop.svc.cluster.local", "AAAA", 0), ("10-1-2-3.shop.pod.cluster.local", "A", None),
    ("20.1.244.10.in-addr.arpa", "PTR", 0), ("big.shop.svc.cluster.local", "A", None),
    ("example.com", "A", 0))]


@pytest.fixture(scope="module")
def table():
    return zone_and_table()[1]


def plain_question(data):
    """(name, qtype) of a well-formed single question, walked in Python; None otherwise."""
    if len(data) < 12 or int.from_bytes(data[4:6], "big") != 1:
        return None
    pos, name = 12, b""
    while True:
        if pos >= len(data):
            return None
        n = data[pos]
        if n == 0:
            name += b"\0"
            pos += 1
            break
        if n > 63 or len(name) + n + 2 > 255:
            return None
        name += data[pos:pos + n + 1]
        pos += n + 1
    if pos + 4 > len(data):
        return None
    return name.lower(), int.from_bytes(data[pos:pos + 2], "big")


def check_parse(data):
    out, name_len, qtype, name, has_opt, size, do = fdns.parse_guarded(data)
    assert out in VALID
    pq = plain_question(data)
    if len(data) >= 12 and not data[2] & 0x80 and not (data[2] >> 3) & 15:
        if pq is None:
            assert out == O.DNS_FORMERR
        else:
            assert (name, qtype) == pq and name_len == len(pq[0])
    return out


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash_or_read_past_the_message(data):
    check_parse(data)


def _mutate(draw, data):
    b = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.integers(0, 3))
        if op == 0 and b:
            b[draw(st.integers(0, len(b) - 1))] = draw(st.integers(0, 255))
        elif op == 1 and b:
            del b[draw(st.integers(0, len(b) - 1)):][:draw(st.integers(1, 8))]
        elif op == 2:
            at = draw(st.integers(0, len(b)))
            b[at:at] = draw(st.binary(min_size=1, max_size=12))
        else:
            b = b[:draw(st.integers(0, len(b)))]
    return bytes(b)


@settings(max_examples=800, deadline=None)
@given(st.data())
def test_mutated_queries_never_crash_or_read_past_the_message(data):
    check_parse(_mutate(data.draw, data.draw(st.sampled_from(SEEDS))))


def _run(table, frames, fill):
    b = Batch(len(frames))
    for f in frames:
        b.append(f, in_port=3)
    used = b.used
    b.buffer[used:] = fill[:b.buf_size - used] if isinstance(fill, np.ndarray) else fill
    slots = [(int(b.meta[i]["off"]) - 128, (int(b.meta[i]["off"] + b.meta[i]["len"]) + 63) // 64 * 64)
             for i in range(len(b))]
    before = bytes(b.buffer)
    parse(b)
    fdns.dns_stage(b, table)
    return b, before, slots, used


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_the_stage_on_mutated_queries_writes_only_its_slot_and_answers_valid_messages(table, data):
    n = data.draw(st.integers(1, 4))
    frames = [raw(frame(_mutate(data.draw, data.draw(st.sampled_from(SEEDS))), v6=data.draw(st.booleans())))
              for _ in range(n)]
    rng = np.random.default_rng(n)
    runs = [_run(table, frames, fill) for fill in (0x00, 0xFF, rng.integers(0, 256, 4_000_000, dtype=np.uint8))]
    # the bytes after the packets do not change the outcome: nothing past them was read
    for b, _, _, _ in runs[1:]:
        assert (b.meta == runs[0][0].meta).all()
        assert [b.packet(i) for i in range(n)] == [runs[0][0].packet(i) for i in range(n)]
    b, before, slots, used = runs[0]
    after = bytes(b.buffer)
    written = np.frombuffer(after, np.uint8) != np.frombuffer(before, np.uint8)
    allowed = np.zeros(len(after), bool)
    for i, (lo, hi) in enumerate(slots):
        allowed[lo + 64:hi] = True          # in place keeps 64 bytes of headroom
    allowed[used:] = True                   # the tail
    assert not (written & ~allowed).any()
    for i in range(n):
        m = b.meta[i]
        assert m["verdict"] in (Verdict.PENDING, Verdict.REPLY, Verdict.DROP)
        if m["verdict"] == Verdict.REPLY:
            assert m["reason"] in (Reason.DNS_ANSWERED, Reason.DNS_FORMERR)
            msg = dns.message.from_wire(bytes(Ether(b.packet(i))[UDP].payload))
            assert msg.flags & 0x8000 and len(msg.question) <= 1


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=80))
def test_case_folding_is_ascii_lowercase_of_every_byte(data):
    assert fdns.fold_name(data) == data.lower()


@settings(max_examples=800, deadline=None)
@given(st.one_of(
    st.integers(0, 2**32 - 1).map(lambda v: str(ipaddress.IPv4Address(v)).replace(".", "-")),
    st.integers(0, 2**128 - 1).map(lambda v: str(ipaddress.IPv6Address(v)).replace(":", "-")),
    st.integers(0, 2**128 - 1).map(lambda v: ipaddress.IPv6Address(v).exploded.replace(":", "-")),
    st.text("0123456789abcdefABCDEF-.x", max_size=45)))
def test_pod_labels_read_the_same_in_the_stage_and_the_model(label):
    b = label.encode()
    assert fdns.pod_address(b) == pod_address(label)


def test_an_ipv4_mapped_pod_label_is_an_ipv4_address_as_go_reads_it():
    # found with a random seed: the stage answered ::ffff:0:0 where Go's net.IP.To4
    # (and so CoreDNS) gives the A record 0.0.0.0
    for label, want in (("--ffff-0-0", "0.0.0.0"), ("--ffff-a00-1", "10.0.0.1"),
                        ("0-0-0-0-0-ffff-a00-1", "10.0.0.1"), ("--fffe-a00-1", "::fffe:a00:1")):
        assert str(fdns.pod_address(label.encode())) == want == str(pod_address(label))
