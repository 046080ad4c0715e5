"""The zone (kdp/control/dns.py) in wire form: the blob kdp._fast.dns.DnsTable answers from.

    table = compile_dns(zone)           # a DnsTable (sets zone.serial)

Every answer is prepared whole: the records of an answer to a query for that
name, in wire form, with compression pointers into the question (at offset 12
of every answer: the name as the client asked it, only its case may differ)
and into earlier records, so the stage copies them after the client's question
unchanged. Layout (little-endian integers):

    "KDPDNS1\\0"
    record (8-byte aligned):  u8 name length, u8 answers, u8 flags, u8 0, u32 0,
                              name (wire form, lowercase), pad to 4,
                              answers x (u16 qtype, u8 kind, u8 0, u32 body offset)
    body (2-byte aligned):    u16 answer, authority, additional counts, u16 records,
                              u16 records left out, u16 length, u16 end of each record,
                              the records

An answer keeps the records that fit DNS_MAX_UDP with the question; the rest
are counted as left out (the stage then always sets TC). SRV targets are
written uncompressed (RFC 2782); other names use pointers. The zone's serial is
the CRC-32 of the blob (with the serial field zero), so the same snapshot gives
the same serial and the same answers, byte for byte.
"""
from __future__ import annotations

import struct
import zlib

from kdp._fast.dns import BLOB_START, KINDS, MAX_UDP, DnsTable
from kdp.control.dns import (TYPE_A, TYPE_AAAA, TYPE_CNAME, TYPE_NS, TYPE_PTR, TYPE_SOA, TYPE_SRV,
                             TYPE_TXT, labels_of)

_MAGIC = b"KDPDNS1\0"
_RR_HEAD = struct.Struct(">HHIH")           # type, class, ttl, rdlength
_BODY_HEAD = struct.Struct("<HHHHHH")
_DESC = struct.Struct("<HBxI")


def name_wire(name):
    """Absolute name -> wire form (labels, root)."""
    out = bytearray()
    for label in labels_of(name):
        b = label.encode("ascii")
        out.append(len(b))
        out += b
    out.append(0)
    return bytes(out)


class _Message:
    """The records section of one answer, compressed against the question."""
    __slots__ = ("buf", "base", "ptrs", "soa_serial_at")

    def __init__(self, qlabels, qlen):
        self.buf = bytearray()
        self.base = 12 + qlen + 4           # where the records start in the answer
        self.ptrs = {}
        off = 12
        for i in range(len(qlabels)):
            self.ptrs[tuple(qlabels[i:])] = off
            off += 1 + len(qlabels[i])
        self.soa_serial_at = None

    def name(self, name, compress=True):
        labels = labels_of(name)
        n = len(labels)
        for i in range(n + 1):
            ptr = self.ptrs.get(tuple(labels[i:])) if (compress and i < n) else None
            if ptr is not None or i == n:
                for j in range(i):
                    pos = self.base + len(self.buf)
                    if pos < 0x4000:
                        self.ptrs.setdefault(tuple(labels[j:]), pos)
                    b = labels[j].encode("ascii")
                    self.buf.append(len(b))
                    self.buf += b
                if ptr is not None:
                    self.buf += (0xC000 | ptr).to_bytes(2, "big")
                else:
                    self.buf.append(0)
                return

    def rr(self, r):
        self.name(r.name)
        at = len(self.buf)
        self.buf += b"\0" * 10
        start = len(self.buf)
        t, d = r.type, r.data
        if t == TYPE_A:
            self.buf += d[1].to_bytes(4, "big")
        elif t == TYPE_AAAA:
            self.buf += d[1].to_bytes(16, "big")
        elif t in (TYPE_CNAME, TYPE_PTR, TYPE_NS):
            self.name(d)
        elif t == TYPE_SRV:
            self.buf += struct.pack(">HHH", d[0], d[1], d[2])
            self.name(d[3], compress=False)         # RFC 2782: no compression in the target
        elif t == TYPE_TXT:
            b = d.encode()
            self.buf.append(len(b))
            self.buf += b
        elif t == TYPE_SOA:
            self.name(d[0])
            self.name(d[1])
            self.soa_serial_at = len(self.buf)
            self.buf += struct.pack(">IIIII", 0, d[3], d[4], d[5], d[6])
        else:
            raise ValueError(f"no wire form for record type {t}")
        _RR_HEAD.pack_into(self.buf, at, t, 1, r.ttl, len(self.buf) - start)


def _body(qlabels, qlen, answer):
    """(body bytes, offset of an SOA serial inside them or None)."""
    m = _Message(qlabels, qlen)
    ends = []
    counts = [0, 0, 0]
    room = MAX_UDP - m.base
    omitted = 0
    for sec, rrs in ((0, answer.answer), (2, answer.additional)):
        for r in rrs:
            if omitted:
                omitted += 1
                continue
            before = len(m.buf)
            m.rr(r)
            if len(m.buf) > room:           # never sent: the rest is counted, not stored
                del m.buf[before:]
                omitted = 1
                continue
            ends.append(len(m.buf))
            counts[sec] += 1
    head = _BODY_HEAD.pack(counts[0], counts[1], counts[2], len(ends), omitted, len(m.buf))
    head += struct.pack(f"<{len(ends)}H", *ends)
    serial_at = None if m.soa_serial_at is None else len(head) + m.soa_serial_at
    return head + bytes(m.buf), serial_at


def encode(zone):
    """(blob, record offsets) of the zone; sets zone.serial."""
    blob = bytearray(_MAGIC)
    offsets = []
    serial_at = None
    for name in zone.names():
        got = zone.answers(name)
        if got is None:
            continue
        answers, flags = got
        wire = name_wire(name)
        qlabels = labels_of(name)
        blob += b"\0" * (-len(blob) % 8)
        rec = len(blob)
        offsets.append(rec)
        blob += bytes((len(wire), len(answers), flags, 0, 0, 0, 0, 0)) + wire
        blob += b"\0" * (-len(blob) % 4)
        desc = len(blob)
        blob += b"\0" * (8 * len(answers))
        for k, (qtype, ans) in enumerate(sorted(answers.items())):
            blob += b"\0" * (len(blob) % 2)
            body_off = len(blob)
            if ans.pass_on:
                body = _BODY_HEAD.pack(0, 0, 0, 0, 0, 0)
                kind = KINDS["pass"]
            else:
                body, at = _body(qlabels, len(wire), ans)
                kind = KINDS["answer"]
                if at is not None:
                    serial_at = body_off + at
            blob += body
            _DESC.pack_into(blob, desc + 8 * k, qtype, kind, body_off)
    serial = zlib.crc32(blob) or 1
    if serial_at is not None:
        blob[serial_at:serial_at + 4] = serial.to_bytes(4, "big")
    zone.serial = serial
    return bytes(blob), offsets


def compile_dns(zone):
    """The DnsTable of a zone (None stays None: no DNS stage)."""
    if zone is None:
        return None
    blob, offsets = encode(zone)
    listen = [(addr_text(ip), port) for ip, port in zone.listen]
    return DnsTable(blob, offsets, name_wire(zone.origin), listen, ttl=zone.ttl, serial=zone.serial,
                    pods_insecure=zone.pods == "insecure")


def addr_text(ip):
    from kdp.control.addr import format_ip
    return format_ip(ip)


assert BLOB_START == len(_MAGIC)
