"""The DNS stage against the reference responder (kdp/benchmarks/peers/dnspython_responder.py:
the same zone answered with dnspython's renderer), on names from the zone, their
case variants, search-path expansions, pod and reverse names, and every qtype
the stage distinguishes. Both answers are parsed with dnspython and compared
record by record; the expected records themselves are pinned by
tests/test_dns_stage.py."""
import ipaddress

import dns.flags
import dns.message
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kdp.benchmarks.peers.dnspython_responder import Responder

from dnstest import make_query, frame, run_stage, zone_and_table

QTYPES = ["A", "AAAA", "SRV", "PTR", "TXT", "CNAME", "SOA", "NS", "MX", "HTTPS", "ANY", "TYPE99"]
SUFFIXES = ["", "shop.svc.cluster.local", "svc.cluster.local", "cluster.local", "quiet.svc.cluster.local"]


@pytest.fixture(scope="module")
def setup():
    zone, table = zone_and_table()
    return zone, table, Responder(zone), sorted(zone.names())


def _mixcase(name, mask):
    return "".join(c.upper() if (mask >> (i % 60)) & 1 else c for i, c in enumerate(name))


def _flat(msg):
    return {sec: sorted(line.lower() for rrs in getattr(msg, sec) for line in rrs.to_text().split("\n"))
            for sec in ("answer", "authority", "additional")}


def compare(table, responder, wire):
    r = run_stage(table, [frame(wire)])[0][0]
    kind, ref = responder.respond(wire)
    got = {5: "reply", 2: "drop", 0: "pass"}[r.verdict]
    assert got == kind, (r.outcome, dns.message.from_wire(wire).question)
    if kind != "reply":
        return r
    ref = dns.message.from_wire(ref)
    mine = r.msg
    assert (mine.id, mine.flags, mine.rcode(), mine.edns, mine.payload, mine.ednsflags) == \
           (ref.id, ref.flags, ref.rcode(), ref.edns, ref.payload, ref.ednsflags)
    assert [q.to_text() for q in mine.question] == [q.to_text() for q in ref.question]   # case kept
    if not mine.flags & dns.flags.TC:
        assert _flat(mine) == _flat(ref)
    return r


@st.composite
def queries(draw, names):
    base = draw(st.sampled_from(names))
    how = draw(st.integers(0, 5))
    if how == 1:
        base = base.rstrip(".") + "." + draw(st.sampled_from(SUFFIXES[1:]))
    elif how == 2:
        base = draw(st.sampled_from(["x", "_http._tcp", "a.b", "web", "db-0", "10-244-1-10"])) + "." + base
    elif how == 3:
        ip = draw(st.one_of(st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address),
                            st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)))
        base = (f"{str(ip).replace('.', '-').replace(':', '-')}."
                f"{draw(st.sampled_from(['shop', 'quiet', 'nosuch']))}.pod.cluster.local")
    elif how == 4:
        base = draw(st.sampled_from(["10.96.0.10", "10.244.1.20", "10.244.9.9", "fd00:96::11", "fd00::1"]))
        base = ipaddress.ip_address(base).reverse_pointer
    base = _mixcase(base, draw(st.integers(0, 2**60)))
    edns = draw(st.sampled_from([None, 0, 0, 1]))
    return make_query(base, draw(st.sampled_from(QTYPES)), edns=edns,
                      payload=draw(st.sampled_from([512, 1232, 4096, 900])), do=draw(st.booleans()),
                      qid=draw(st.integers(0, 65535)), rd=draw(st.booleans()), cd=draw(st.booleans()))


@settings(max_examples=600, deadline=None)
@given(st.data())
def test_the_stage_answers_what_the_reference_responder_answers(setup, data):
    zone, table, responder, names = setup
    compare(table, responder, data.draw(queries(names)))


def test_every_name_and_qtype_of_the_zone_matches_the_reference(setup):
    zone, table, responder, names = setup
    outcomes = set()
    for name in names:
        for qt in QTYPES:
            outcomes.add(compare(table, responder, make_query(name, qt, edns=0)).outcome)
    assert len(outcomes) >= 5           # answer, nodata, nxdomain, passes: the comparison is not vacuous
