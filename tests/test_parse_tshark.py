"""The link layers and tuples as tshark (Wireshark's dissectors) reads them.

A second, independent reference beside scapy: random TCP/UDP packets on every
link type (stacked VLAN tags on Ethernet, the BSD null header in both byte
orders) are written to one capture per link type and dissected by tshark.
"""
import ipaddress
import struct
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Dot1Q, Ether
from scapy.packet import Raw

from kdp._fast import packet, parse
from kdp.reasons import Verdict

pytestmark = pytest.mark.usefixtures("tshark")     # fails when tshark is missing

FIELDS = ["ip.src", "ip.dst", "ip.ttl", "ipv6.src", "ipv6.dst", "ipv6.hlim", "vlan.id",
          "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport"]


@st.composite
def packet_on(draw, lt):
    ver = 4 if lt == 228 else 6 if lt == 229 else draw(st.sampled_from([4, 6]))
    if ver == 4:
        ip = IP(src=str(ipaddress.IPv4Address(draw(st.integers(1, 2**32 - 2)))),
                dst=str(ipaddress.IPv4Address(draw(st.integers(1, 2**32 - 2)))),
                ttl=draw(st.integers(1, 255)))
    else:
        ip = IPv6(src=str(ipaddress.IPv6Address(draw(st.binary(min_size=16, max_size=16)))),
                  dst=str(ipaddress.IPv6Address(draw(st.binary(min_size=16, max_size=16)))),
                  hlim=draw(st.integers(1, 255)))
    l4 = draw(st.sampled_from([TCP, UDP]))(sport=draw(st.integers(1, 65535)),
                                           dport=draw(st.integers(1, 4000)))
    raw = bytes(ip / l4 / Raw(draw(st.binary(max_size=20))))
    et = 0x0800 if ver == 4 else 0x86DD
    if lt == 1:
        vids = draw(st.lists(st.integers(1, 4094), max_size=2))
        hdr = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", type=0x8100 if vids else et)
        for k, vid in enumerate(vids):
            hdr = hdr / Dot1Q(vlan=vid, type=0x8100 if k + 1 < len(vids) else et)
        return bytes(hdr) + raw
    if lt == 0:
        return struct.pack(draw(st.sampled_from(["<I", ">I"])), 2 if ver == 4 else 30) + raw
    if lt == 108:
        return struct.pack(">I", 2 if ver == 4 else 24) + raw
    if lt == 113:
        return bytes(CookedLinux(proto=et)) + raw
    if lt == 276:
        return bytes(CookedLinuxV2(proto=et)) + raw
    return raw


def write_pcap(path, frames, lt):
    """A classic pcap, written directly (scapy's writer takes linktype 0 for "unset")."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, lt))
        for k, data in enumerate(frames):
            f.write(struct.pack("<IIII", 1_700_000_000 + k, 0, len(data), len(data)))
            f.write(data)


def tshark_rows(path):
    cmd = ["tshark", "-r", str(path), "-T", "fields", "-E", "occurrence=f", "-E", "separator=|"]
    for f in FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout
    return [dict(zip(FIELDS, line.split("|"))) for line in out.splitlines()]


def ours(rec):
    v = {"ttl": int(rec["ttl"]), "vlan": None if rec["vlan"] == packet.NO_PORT_ID else int(rec["vlan"])}
    if rec["ip_ver"] == 4:
        v["src"] = str(ipaddress.IPv4Address(int(rec["src4"])))
        v["dst"] = str(ipaddress.IPv4Address(int(rec["dst4"])))
    else:
        v["src"] = str(ipaddress.IPv6Address(bytes(rec["src6"])))
        v["dst"] = str(ipaddress.IPv6Address(bytes(rec["dst6"])))
    v["ports"] = (int(rec["sport"]), int(rec["dport"]))
    return v


def theirs(row):
    v4 = bool(row["ip.src"])
    return {
        "ttl": int(row["ip.ttl"] if v4 else row["ipv6.hlim"]),
        "vlan": int(row["vlan.id"]) if row["vlan.id"] else None,
        "src": str(ipaddress.ip_address(row["ip.src"] if v4 else row["ipv6.src"])),
        "dst": str(ipaddress.ip_address(row["ip.dst"] if v4 else row["ipv6.dst"])),
        "ports": (int(row["tcp.srcport"] or row["udp.srcport"]),
                  int(row["tcp.dstport"] or row["udp.dstport"])),
    }


@pytest.mark.parametrize("lt", [0, 1, 101, 108, 113, 228, 229, 276])
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_tuples_and_vlan_agree_with_tshark(lt, data, tmp_path):
    frames = data.draw(st.lists(packet_on(lt), min_size=1, max_size=40))
    path = tmp_path / f"lt{lt}.pcap"
    write_pcap(path, frames, lt)
    rows = tshark_rows(path)
    assert len(rows) == len(frames)
    b = packet.Batch(len(frames))
    for f in frames:
        b.append(f, linktype=lt)
    parse.parse(b)
    for i, row in enumerate(rows):
        assert b.meta[i]["verdict"] == Verdict.PENDING
        assert ours(b.meta[i]) == theirs(row)
