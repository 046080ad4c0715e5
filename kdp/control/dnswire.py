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
                              answers x (u16 qtype, u8 kind, u8 0, i32 body offset from
                              the record: records are position-independent)
    body (2-byte aligned):    u16 answer, authority, additional counts, u16 records,
                              u16 records left out, u16 length, u16 end of each record,
                              the records

An answer keeps the records that fit DNS_MAX_UDP with the question; the rest
are counted as left out (the stage then always sets TC). SRV targets are
written uncompressed (RFC 2782); other names use pointers. The zone's serial is
the CRC-32 of the blob (with the serial field zero), so the same snapshot gives
the same serial and the same answers, byte for byte.

Endpoint updates (DnsCompiler.update) re-encode only the names that changed into a
small delta blob in front of the whole one (a name gone is a record flagged
gone); the serial then moves on as the CRC-32 of the delta, seeded with the old one.
"""
from __future__ import annotations

import struct
import zlib

from kdp._fast.dns import BLOB_START, FLAGS, KINDS, MAX_UDP, DnsTable
from kdp.control.dns import (TYPE_A, TYPE_AAAA, TYPE_CNAME, TYPE_NS, TYPE_PTR, TYPE_SOA, TYPE_SRV,
                             TYPE_TXT, labels_of)

_MAGIC = b"KDPDNS1\0"
GONE = FLAGS["gone"]
_RR_HEAD = struct.Struct(">HHIH")           # type, class, ttl, rdlength
_BODY_HEAD = struct.Struct("<HHHHHH")
_DESC = struct.Struct("<HBxi")             # body offset: signed, from the record's start


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


class _Blob:
    """The blob being written: records, answer bodies (identical bodies shared)."""

    def __init__(self, share=True):
        self.buf = bytearray(_MAGIC)
        self.offsets = []
        self.shared = {} if share else None     # body bytes -> offset (bodies that do not depend on the name)
        self.serial_at = None
        self.wires = {}                 # parent name -> wire form

    def wire(self, name):
        head, _, parent = name.partition(".")
        tail = self.wires.get(parent)
        if tail is None:
            tail = self.wires[parent] = name_wire(parent) if parent else b"\0"
        h = head.encode("ascii")
        return bytes((len(h),)) + h + tail if h else tail

    def record(self, wire, flags, bodies, shared=()):
        """One name: bodies is [(qtype, kind, body bytes)]; qtypes in `shared` have
        bodies that do not depend on the name (stored once for all names)."""
        buf = self.buf
        buf += b"\0" * (-len(buf) % 8)
        self.offsets.append(len(buf))
        buf += bytes((len(wire), len(bodies), flags, 0, 0, 0, 0, 0)) + wire
        buf += b"\0" * (-len(buf) % 4)
        desc = len(buf)
        buf += b"\0" * (8 * len(bodies))
        for k, (qtype, kind, body) in enumerate(bodies):
            off = self.shared.get(body) if (qtype in shared and self.shared is not None) else None
            if off is None:
                buf += b"\0" * (len(buf) % 2)
                off = len(buf)
                buf += body
                if qtype in shared and self.shared is not None:
                    self.shared[body] = off
            _DESC.pack_into(buf, desc + 8 * k, qtype, kind, off - self.offsets[-1])
        return desc


def _simple_body(records, base):
    """A body of records that are all the same size, owned by the question name."""
    room = MAX_UDP - base
    size = len(records[0]) if records else 0
    keep = min(len(records), room // size) if size else 0
    ends = [size * (i + 1) for i in range(keep)]
    return (_BODY_HEAD.pack(keep, 0, 0, keep, len(records) - keep, size * keep)
            + struct.pack(f"<{keep}H", *ends) + b"".join(records[:keep]))


def _fast_bodies(zone, name, its, qlen, ttl4, wire):
    """Bodies of a name whose items are all addresses (nearly every name): A, AAAA, SRV."""
    base = 12 + qlen + 4
    a, aaaa, seen = [], [], set()
    for _kind, ip, _port, _key in its:
        if ip in seen:
            continue
        seen.add(ip)
        if ip[0] == 4:
            a.append(b"\xc0\x0c\x00\x01\x00\x01" + ttl4 + b"\x00\x04" + ip[1].to_bytes(4, "big"))
        else:
            aaaa.append(b"\xc0\x0c\x00\x1c\x00\x01" + ttl4 + b"\x00\x10" + ip[1].to_bytes(16, "big"))
    out = []
    if a:
        out.append((TYPE_A, _simple_body(a, base)))
    if aaaa:
        out.append((TYPE_AAAA, _simple_body(aaaa, base)))
    if its:
        weight = max(1, 100 // len(its))
        recs, extra, ends, pos, done = bytearray(), [], [], {}, set()
        room = MAX_UDP - base
        omitted = 0
        for _kind, ip, port, target in its:
            if port == -1:
                continue
            if (target, port) not in done:
                done.add((target, port))
                tw = wire(target)
                rr = (b"\xc0\x0c\x00\x21\x00\x01" + ttl4 + (6 + len(tw)).to_bytes(2, "big")
                      + struct.pack(">HHH", 0, weight, port) + tw)
                if omitted or len(recs) + len(rr) > room:
                    omitted += 1
                else:
                    pos.setdefault(target, base + len(recs) + 18)
                    recs += rr
                    ends.append(len(recs))
            if (target, ip) not in done:
                done.add((target, ip))
                extra.append((target, ip))
        n_srv = len(ends)
        for target, ip in extra:
            p = pos.get(target)
            owner = (0xC000 | p).to_bytes(2, "big") if p is not None else wire(target)
            data = ip[1].to_bytes(4 if ip[0] == 4 else 16, "big")
            rr = (owner + (b"\x00\x01" if ip[0] == 4 else b"\x00\x1c") + b"\x00\x01" + ttl4
                  + len(data).to_bytes(2, "big") + data)
            if omitted or len(recs) + len(rr) > room:
                omitted += 1
            else:
                recs += rr
                ends.append(len(recs))
        if n_srv or omitted:
            out.append((TYPE_SRV, _BODY_HEAD.pack(n_srv, 0, len(ends) - n_srv, len(ends), omitted, len(recs))
                        + struct.pack(f"<{len(ends)}H", *ends) + bytes(recs)))
    return out


def _encode_name(bl, zone, name, ttl4):
    """Append one name's record to the blob; a name the zone no longer has becomes a
    record flagged gone (it hides the base table's, in a delta)."""
    from kdp.control.dns import F_EXISTS, F_RECORDS, F_RECORDS_OK, F_REVERSE, IP_ITEM
    answer, passing = KINDS["answer"], KINDS["pass"]
    its = zone.items.get(name)
    if its is not None and name not in zone.fixed and all(k == IP_ITEM for k, _v, _p, _t in its):
        wire = bl.wire(name)
        flags = zone.flags.get(name, 0) | F_EXISTS | F_RECORDS_OK | (F_RECORDS if its else 0)
        bodies = [(qt, answer, body) for qt, body in _fast_bodies(zone, name, its, len(wire), ttl4, bl.wire)]
        bl.record(wire, flags, bodies, shared=(TYPE_A, TYPE_AAAA))
        return
    targets = zone.reverse.get(name)
    if targets is not None:
        # PTR: the owner is the question; targets written whole (no suffix to share with it)
        wire = name_wire(name)
        recs = [b"\xc0\x0c\x00\x0c\x00\x01" + ttl4 + len(tw).to_bytes(2, "big") + tw
                for tw in map(bl.wire, targets)]
        base = 12 + len(wire) + 4
        room, total, keep, ends = MAX_UDP - base, 0, 0, []
        for r in recs:
            if total + len(r) > room:
                break
            total += len(r)
            keep += 1
            ends.append(total)
        body = (_BODY_HEAD.pack(keep, 0, 0, keep, len(recs) - keep, total) + struct.pack(f"<{keep}H", *ends)
                + b"".join(recs[:keep]))
        bl.record(wire, F_REVERSE, [(TYPE_PTR, answer, body)])
        return
    got = zone.answers(name)
    if got is None:
        bl.record(bl.wire(name), GONE, [])
        return
    answers, flags = got
    wire = bl.wire(name)
    qlabels = labels_of(name)
    bodies, serial_k = [], None
    for qtype, ans in sorted(answers.items()):
        if ans.pass_on:
            bodies.append((qtype, passing, _BODY_HEAD.pack(0, 0, 0, 0, 0, 0)))
            continue
        body, at = _body(qlabels, len(wire), ans)
        if at is not None:
            serial_k = (len(bodies), at)
        bodies.append((qtype, answer, body))
    desc = bl.record(wire, flags, bodies)
    if serial_k is not None:
        rel = struct.unpack_from("<i", bl.buf, desc + 8 * serial_k[0] + 4)[0]
        bl.serial_at = bl.offsets[-1] + rel + serial_k[1]


def encode(zone):
    """(blob, record offsets) of the zone; sets zone.serial (a CRC-32 of the blob)."""
    bl = _Blob()
    ttl4 = zone.ttl.to_bytes(4, "big")
    for name in zone.names():
        _encode_name(bl, zone, name, ttl4)
    serial = zlib.crc32(bl.buf) or 1
    if bl.serial_at is not None:
        bl.buf[bl.serial_at:bl.serial_at + 4] = serial.to_bytes(4, "big")
    zone.serial = serial
    return bytes(bl.buf), bl.offsets


def compile_dns(zone):
    """The DnsTable of a zone (None stays None: no DNS stage)."""
    return None if zone is None else DnsCompiler(zone).full()


class DnsCompiler:
    """A zone's tables: compiled whole, then, after endpoint updates, as the whole
    table plus a small delta of the names that changed (DnsTable(..., base=)). The
    delta is recompiled from the names' cached records at each update; past
    max(1024, names / 8) changed names the table is compiled whole again."""

    def __init__(self, zone):
        self.zone = zone
        self.base = None
        self.chunks = {}            # name -> its record (8-byte aligned), changed since base

    def _table(self, blob, offsets, base=None):
        z = self.zone
        listen = [(addr_text(ip), port) for ip, port in z.listen]
        return DnsTable(blob, offsets, name_wire(z.origin), listen, ttl=z.ttl, serial=z.serial,
                        pods_insecure=z.pods == "insecure", base=base)

    def full(self):
        blob, offsets = encode(self.zone)
        self.base = self._table(blob, offsets)
        self.chunks = {}
        return self.base

    def _chunk(self, name):
        bl = _Blob(share=False)
        _encode_name(bl, self.zone, name, self.zone.ttl.to_bytes(4, "big"))
        rec = bytes(bl.buf[len(_MAGIC):])
        return rec + b"\0" * (-len(rec) % 8), (None if bl.serial_at is None else bl.serial_at - len(_MAGIC))

    def update(self, names):
        """The table after the given names changed in the zone (removed ones included)."""
        if self.base is None:
            return self.full()
        origin = self.zone.origin
        for name in names:
            if name != origin:
                self.chunks[name] = self._chunk(name)[0]
        if len(self.chunks) > max(1024, self.base.n_names // 8):
            return self.full()
        body = b"".join(self.chunks.values())
        self.zone.serial = zlib.crc32(body, self.zone.serial) or 1
        apex, at = self._chunk(origin)
        if at is not None:
            apex = apex[:at] + self.zone.serial.to_bytes(4, "big") + apex[at + 4:]
        offsets, pos = [], len(_MAGIC)
        for rec in list(self.chunks.values()) + [apex]:
            offsets.append(pos)
            pos += len(rec)
        return self._table(_MAGIC + body + apex, offsets, base=self.base)


def addr_text(ip):
    from kdp.control.addr import format_ip
    return format_ip(ip)


assert BLOB_START == len(_MAGIC)
