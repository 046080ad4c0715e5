"""The verdict log's line text, byte for byte, against a rendering in plain Python.

The formatter (kdp/_fast/verdictlog.pyx) writes numbers by digit pairs, IPv4 octets from a
table, names by their kept lengths (32 bytes copied at once for short ones) and reuses a
second's digits across packets; the reference here uses str(), ipaddress and json, so
digit-count boundaries, octets of one to three digits, names around 32 bytes and
timestamps crossing seconds are each checked against an independent rendering.
"""
import ipaddress
import json

import numpy as np
from hypothesis import given, settings, strategies as st

from kdp._fast.packet import Batch
from kdp._fast.verdictlog import VerdictLog
from kdp.reasons import Reason

VERDICTS = {1: "forward", 2: "drop", 3: "reject", 4: "local", 5: "reply"}
CT = {0: None, 1: "new", 2: "established", 3: "reply", 4: "related", 5: "invalid"}
PROTOS = {6: "tcp", 17: "udp", 132: "sctp", 1: "icmp", 58: "icmpv6", 4: "ipip"}
# port and service names: short, exactly around the 32-byte copy, long, escaped
NAMES = ["uplink", "bench/pod-31", "p" * 29, "q" * 30, "r" * 31, "s" * 32, "t" * 33,
         "x" * 120, 'quote"back\\slash', "ünïcode/pod"]
SERVICES = ["ns-2/svc-852:http", "a" * 30, "b" * 31, "c" * 40, "d" * 300]
REASON_NAMES = [r.label for r in Reason]

u64_edges = st.sampled_from([0, 1, 9, 10, 99, 100, 999, 1000, 10**9 - 1, 10**9,
                             10**18, 10**19 - 1, 10**19, 2**64 - 1])
u64 = st.one_of(u64_edges, st.integers(0, 2**64 - 1))
octet = st.sampled_from([0, 1, 9, 10, 99, 100, 199, 200, 255])
addr4 = st.one_of(st.builds(lambda a, b, c, d: (a << 24) | (b << 16) | (c << 8) | d,
                            octet, octet, octet, octet),
                  st.integers(0, 2**32 - 1))
port = st.one_of(st.sampled_from([0, 9, 10, 99, 100, 9999, 10000, 65535]), st.integers(0, 65535))
# capture times: seconds that repeat (the formatter keeps the last second's digits) and
# change, fractions with leading zeros
second = st.sampled_from([0, 9, 10, 1_700_000_000, 1_700_000_001, 9_223_372_035])
ts = st.builds(lambda s, f: s * 10**9 + f, second,
               st.one_of(st.sampled_from([0, 1, 999_999_999, 328_000]), st.integers(0, 10**9 - 1)))

packet = st.fixed_dictionaries({
    "ts": ts,
    "verdict": st.sampled_from(sorted(VERDICTS)),
    "reason": st.integers(0, len(REASON_NAMES) - 1),
    "in_port": st.one_of(st.integers(0, len(NAMES) - 1), st.just(0xFFFF)),
    "out_port": st.one_of(st.integers(0, len(NAMES) + 3), st.just(0xFFFF)),
    "proto": st.sampled_from([6, 17, 132, 1, 58, 4, 47, 0, 255]),
    "src4": addr4, "dst4": addr4, "sport": port, "dport": port,
    "ct": st.sampled_from(sorted(CT)),
    "svc": st.one_of(st.integers(0, len(SERVICES) + 2), st.just(0xFFFFFFFF)),
})


def _name(names, i):
    return names[i] if 0 <= i < len(names) else None


def _expected_line(pk, index, frame):
    """The line as the log's format defines it, rendered with str(), ipaddress and json."""
    proto = pk["proto"]
    has_ports = proto in (6, 17, 132)
    tup = {"src": str(ipaddress.IPv4Address(pk["src4"])),
           "dst": str(ipaddress.IPv4Address(pk["dst4"])),
           "sport": pk["sport"] if has_ports else None,
           "dport": pk["dport"] if has_ports else None}
    rest = {
        "frame": frame,
        "verdict": VERDICTS[pk["verdict"]],
        "reason": REASON_NAMES[pk["reason"]],
        "in_port": _name(NAMES, -1 if pk["in_port"] == 0xFFFF else pk["in_port"]),
        "out_port": _name(NAMES, -1 if pk["out_port"] == 0xFFFF else pk["out_port"]),
        "proto": PROTOS.get(proto, str(proto)),
        **tup,
        "ct": CT[pk["ct"]],
        "service": _name(SERVICES, -1 if pk["svc"] == 0xFFFFFFFF else pk["svc"]),
        "policy": None,
        "orig": tup,
        "dns": None,
    }
    sec, frac = divmod(pk["ts"], 10**9)
    return (f'{{"index":{index},"ts":{sec}.{frac:09d},'
            + json.dumps(rest, separators=(",", ":"))[1:] + "\n")


class _Sink:
    def __init__(self):
        self.data = bytearray()

    def write(self, data):
        self.data += data
        return len(data)


def _log_text(packets, indices, first_frame):
    batch = Batch(len(packets))
    frame = b"\x00" * 64
    for _ in packets:
        batch.append(frame)
    m = batch.meta
    for i, pk in enumerate(packets):
        m["ts_ns"][i] = pk["ts"]
        m["verdict"][i] = pk["verdict"]
        m["reason"][i] = pk["reason"]
        m["in_port"][i] = pk["in_port"]
        m["out_port"][i] = pk["out_port"]
        m["ip_ver"][i] = 4
        m["proto"][i] = pk["proto"]
        m["src4"][i] = pk["src4"]
        m["dst4"][i] = pk["dst4"]
        m["sport"][i] = pk["sport"]
        m["dport"][i] = pk["dport"]
        m["ct_state"][i] = pk["ct"]
        m["svc_port"][i] = pk["svc"]
    sink = _Sink()
    log = VerdictLog(sink, NAMES, SERVICES, REASON_NAMES, len(packets))
    log.capture_orig(batch)
    log.write(batch, indices=np.array(indices, dtype=np.uint64), first_frame=first_frame)
    # format (what kdp/shards.py writes itself, in place) gives the bytes write wrote
    assert bytes(log.format(batch, indices=np.array(indices, dtype=np.uint64), first_frame=first_frame)) \
        == sink.data
    return sink.data.decode("utf-8")


@settings(max_examples=150)
@given(st.lists(packet, min_size=1, max_size=40), st.data())
def test_each_line_is_the_reference_rendering_of_its_packet(packets, data):
    indices = data.draw(st.lists(u64, min_size=len(packets), max_size=len(packets)))
    first_frame = data.draw(st.one_of(st.sampled_from([0, 8, 9, 98, 99, 999_999]),
                                      st.integers(0, 2**40)))
    got = _log_text(packets, indices, first_frame).splitlines(keepends=True)
    frame = first_frame
    want = []
    for pk, index in zip(packets, indices):
        if pk["verdict"] in (1, 3, 5):          # transmitted: the next frame of the output
            frame += 1
            want.append(_expected_line(pk, index, frame))
        else:
            want.append(_expected_line(pk, index, None))
    assert got == want


def test_every_octet_and_every_two_digit_boundary_renders_as_python_does():
    packets = []
    for k in range(256):
        packets.append({"ts": k * 10**9 + k, "verdict": 2, "reason": 0, "in_port": 0,
                        "out_port": 0xFFFF, "proto": 17,
                        "src4": (k << 24) | (k << 16) | (k << 8) | k,
                        "dst4": (255 - k) | (k << 8), "sport": k * 257, "dport": 65535 - k,
                        "ct": 0, "svc": 0xFFFFFFFF})
    indices = [10**(k % 20) - (k % 2) for k in range(256)]
    got = _log_text(packets, indices, None).splitlines(keepends=True)
    want = [_expected_line(pk, i, None) for pk, i in zip(packets, indices)]
    assert got == want
