"""A plain DNS responder over the zone model, built on dnspython: `kdp bench dns`'s peer,
and the reference the DNS stage (kdp/_fast/dns.pyx) is compared with in the tests.

The same rules (kdp.control.dns.Zone.lookup) answered the slow, obvious way:
dnspython parses the query, builds the records as RRsets and renders the answer.
Well-formed queries only: malformed ones get the answer dnspython's parser leads to
(the stage's own rules for those are tested against explicit expectations,
tests/test_dns_stage.py).

    r = responder(zone)             # PeerUnavailable without dnspython
    r.respond(query_bytes) -> ("reply", answer bytes) | ("pass", None) | ("drop", None)
    same_answer(a, b)               # two answers, parsed: same rcode, flags and records
"""
from __future__ import annotations

try:
    import dns.edns
except ImportError:                     # the suite reports the peer as not run
    dns = None
else:
    import dns.exception
    import dns.flags
    import dns.message
    import dns.name
    import dns.opcode
    import dns.rcode
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype
    import dns.renderer
    import dns.rrset

from kdp.benchmarks.peers import missing_package
from kdp.control import addr
from kdp.control.dns import (TYPE_A, TYPE_AAAA, TYPE_AXFR, TYPE_CNAME, TYPE_IXFR, TYPE_NS,
                             TYPE_PTR, TYPE_SOA, TYPE_SRV, TYPE_TXT)

MIN_UDP, MAX_UDP = 512, 1232


def _rdata(r):
    t, d = r.type, r.data
    if t in (TYPE_A, TYPE_AAAA):
        text = addr.format_ip(d)
    elif t in (TYPE_CNAME, TYPE_PTR, TYPE_NS):
        text = d
    elif t == TYPE_SRV:
        text = f"{d[0]} {d[1]} {d[2]} {d[3]}"
    elif t == TYPE_TXT:
        text = f'"{d}"'
    elif t == TYPE_SOA:
        text = " ".join(str(x) for x in d)
    else:
        raise ValueError(t)
    return dns.rdata.from_text(dns.rdataclass.IN, t, text)


def rrsets(rrs):
    """kdp.control.dns.RR tuples -> one-record dnspython RRsets, in order."""
    out = []
    for r in rrs:
        s = dns.rrset.RRset(dns.name.from_text(r.name), dns.rdataclass.IN, r.type)
        s.add(_rdata(r), r.ttl)
        out.append(s)
    return out


class Responder:
    def __init__(self, zone, cache=False):
        self.zone = zone
        self.cache = {} if cache else None      # (name, qtype) -> what to answer, built once

    def respond(self, wire):
        if len(wire) < 12:
            return "drop", None
        if wire[2] & 0x80:
            return "drop", None
        if (wire[2] >> 3) & 15:
            return "pass", None
        try:
            q = dns.message.from_wire(wire, ignore_trailing=True)
        except dns.message.BadEDNS:
            return "reply", self._error(wire, dns.rcode.FORMERR)
        except dns.exception.DNSException:
            return "reply", self._error(wire, dns.rcode.FORMERR)
        if len(q.question) != 1:
            return "reply", self._error(wire, dns.rcode.FORMERR)
        if q.answer or q.authority or q.additional or q.had_tsig:
            return "pass", None
        question = q.question[0]
        if question.rdclass != dns.rdataclass.IN:
            return "pass", None
        if question.rdtype in (TYPE_AXFR, TYPE_IXFR):
            return "pass", None
        if q.edns > 0:
            return "reply", self._render(q, dns.rcode.BADVERS, aa=False)
        got = self._decide(question.name.to_text().lower(), question.rdtype)
        if got is None:
            return "pass", None
        rcode, answer, additional, authority = got
        return "reply", self._render(q, rcode, answer, additional, authority)

    def _decide(self, name, qtype):
        """(rcode, answer, additional, authority RRsets), or None to pass the query on."""
        if self.cache is not None:
            got = self.cache.get((name, qtype), self)
            if got is not self:
                return got
        d = self.zone.lookup(name, qtype)
        if d.outcome == "pass":
            got = None
        elif d.outcome == "answer":
            got = (dns.rcode.NOERROR, rrsets(d.answer.answer), rrsets(d.answer.additional), [])
        else:
            got = (dns.rcode.NXDOMAIN if d.outcome == "nxdomain" else dns.rcode.NOERROR, [], [],
                   rrsets([self.zone.soa()]))
        if self.cache is not None:
            self.cache[(name, qtype)] = got
        return got

    def _error(self, wire, rcode):
        """A header-only answer (the question could not be read)."""
        r = dns.renderer.Renderer(int.from_bytes(wire[:2], "big"),
                                  dns.flags.QR | (wire[2] & 0x79) << 8 | (wire[3] & 0x10), 512)
        r.write_header()
        out = bytearray(r.get_wire())
        out[3] = (out[3] & 0xF0) | rcode
        return bytes(out)

    def _render(self, q, rcode, answer=(), additional=(), authority=(), aa=True):
        limit = MIN_UDP
        if q.edns >= 0 and q.payload > MIN_UDP:
            limit = min(q.payload, MAX_UDP)
        flags = dns.flags.QR | (q.flags & (dns.flags.RD | dns.flags.CD)) | (dns.flags.AA if aa else 0)
        flags |= dns.opcode.to_flags(q.opcode())
        r = dns.renderer.Renderer(q.id, flags, limit)
        question = q.question[0]
        r.add_question(question.name, question.rdtype, question.rdclass)
        if q.edns >= 0:
            r.reserve(11)
        truncated = False
        for section, sets in ((dns.renderer.ANSWER, answer), (dns.renderer.AUTHORITY, authority),
                              (dns.renderer.ADDITIONAL, additional)):
            for s in sets:
                if truncated:
                    break
                try:
                    r.add_rrset(section, s)
                except dns.exception.TooBig:
                    truncated = True
        if q.edns >= 0:
            r.release_reserved()
            ext = (rcode >> 4) << 24
            r.add_edns(0, ext | (q.ednsflags & dns.flags.DO), q.payload)
        if truncated:
            r.flags |= dns.flags.TC
        r.flags = (r.flags & ~0xF) | (rcode & 0xF)
        r.write_header()
        return r.get_wire()


def responder(zone):
    """A Responder keeping each name's records (as a server would), or PeerUnavailable."""
    if dns is None:
        raise missing_package("dnspython")
    return Responder(zone, cache=True)


def same_answer(a, b):
    """Two answers carry the same ID, flags, rcode, EDNS and records (order aside)."""
    x, y = dns.message.from_wire(a), dns.message.from_wire(b)

    def flat(m):
        return sorted(line.lower() for sec in (m.answer, m.authority, m.additional)
                      for rrs in sec for line in rrs.to_text().split("\n"))
    return (x.id, x.flags, x.rcode(), x.edns, flat(x)) == (y.id, y.flags, y.rcode(), y.edns, flat(y))
