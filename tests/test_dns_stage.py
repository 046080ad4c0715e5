"""The DNS stage: queries built with dnspython, answers parsed and checked with
dnspython (records, TTLs, sections, flags, compression) and scapy (addresses,
ports, checksums). The expected records are written out here from the Kubernetes
DNS specification and CoreDNS's behaviour, not taken from kdp's zone model."""
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from scapy.all import IP, UDP, Dot1Q, Ether, IPv6, raw

from kdp._fast.dns import DnsOutcome as O
from kdp._fast.packet import Batch
from kdp.reasons import Reason, Stage, Verdict

from dnstest import (CLIENT, CLIENT6, DNS_IP, DNS_IP6, MAC_A, MAC_B, WEB1, ask,
                     cluster_objects, frame, make_query, run_stage, zone_and_table)

Z = "cluster.local."
SOA = f"{Z} 5 in soa ns.dns.{Z} hostmaster.{Z}"


@pytest.fixture(scope="module")
def zt():
    return zone_and_table()


@pytest.fixture(scope="module")
def table(zt):
    return zt[1]


def soa_line(r):
    """The authority SOA without its serial (a checksum of the zone)."""
    (line,) = r.records("authority")
    f = line.split()
    return " ".join(f[:6] + f[7:])


# ------------------------------------------------------------------ what it answers

def test_a_of_a_clusterip_service_is_its_clusterip_answered_in_place(table):
    r = ask(table, "web.shop.svc.cluster.local", "A")
    assert (r.verdict, r.reason, r.meta["stage"]) == (Verdict.REPLY, Reason.DNS_ANSWERED, Stage.DNS)
    assert r.meta["out_port"] == r.meta["in_port"] == 5
    assert r.records("answer") == [f"web.shop.svc.{Z} 5 in a 10.96.0.10"]
    assert r.msg.rcode() == dns.rcode.NOERROR and r.msg.id == 4242
    assert r.msg.flags & dns.flags.QR and r.msg.flags & dns.flags.AA and r.msg.flags & dns.flags.RD
    assert not r.msg.flags & (dns.flags.RA | dns.flags.TC)
    e = Ether(r.data)
    assert (e.src, e.dst) == (MAC_B, MAC_A)
    assert (e[IP].src, e[IP].dst, e[UDP].sport, e[UDP].dport) == (DNS_IP, CLIENT, 53, 33333)
    again = Ether(raw(e))
    del again[IP].chksum, again[UDP].chksum
    again = Ether(raw(again))
    assert (again[IP].chksum, again[UDP].chksum) == (e[IP].chksum, e[UDP].chksum)
    assert e[IP].len == len(r.data) - 14 and e[UDP].len == len(r.data) - 34


def test_aaaa_gives_the_ipv6_clusterip_and_an_ipv4_only_service_nodata(table):
    r = ask(table, "dual.shop.svc.cluster.local", "AAAA")
    assert r.records("answer") == [f"dual.shop.svc.{Z} 5 in aaaa fd00:96::11"]
    r = ask(table, "web.shop.svc.cluster.local", "AAAA")
    assert r.outcome == O.DNS_NODATA and r.msg.rcode() == dns.rcode.NOERROR
    assert r.msg.answer == [] and soa_line(r) == f"{SOA} 7200 1800 86400 5"
    assert r.msg.flags & dns.flags.AA


def test_srv_of_a_named_port_targets_the_service_with_its_address_additional(table):
    r = ask(table, "_https._tcp.web.shop.svc.cluster.local", "SRV")
    assert r.records("answer") == [f"_https._tcp.web.shop.svc.{Z} 5 in srv 0 100 443 web.shop.svc.{Z}"]
    assert r.records("additional") == [f"web.shop.svc.{Z} 5 in a 10.96.0.10"]
    # CoreDNS takes the port and protocol labels without their underscores too
    r = ask(table, "https.tcp.web.shop.svc.cluster.local", "SRV")
    assert r.records("answer") == [f"https.tcp.web.shop.svc.{Z} 5 in srv 0 100 443 web.shop.svc.{Z}"]
    assert ask(table, "_https._udp.web.shop.svc.cluster.local", "SRV").outcome == O.DNS_NXDOMAIN


def test_srv_of_the_service_name_lists_every_port_with_weights_splitting_100(table):
    r = ask(table, "web.shop.svc.cluster.local", "SRV")
    assert r.records("answer") == [f"web.shop.svc.{Z} 5 in srv 0 50 443 web.shop.svc.{Z}",
                                   f"web.shop.svc.{Z} 5 in srv 0 50 80 web.shop.svc.{Z}"]
    # an unnamed port has no _<port> name but is in the service name's SRV (CoreDNS)
    r = ask(table, "one.shop.svc.cluster.local", "SRV")
    assert r.records("answer") == [f"one.shop.svc.{Z} 5 in srv 0 100 53 one.shop.svc.{Z}"]


def test_headless_a_lists_ready_endpoints_and_leaves_out_not_ready_ones(table):
    r = ask(table, "db.shop.svc.cluster.local", "A")
    assert r.records("answer") == [f"db.shop.svc.{Z} 5 in a 10.244.1.20", f"db.shop.svc.{Z} 5 in a 10.244.2.21",
                                   f"db.shop.svc.{Z} 5 in a 10.244.2.22"]
    assert ask(table, "db.shop.svc.cluster.local", "AAAA").records("answer") == [
        f"db.shop.svc.{Z} 5 in aaaa fd00:244:1::20"]
    # publishNotReadyAddresses: not-ready endpoints too
    assert len(ask(table, "all.shop.svc.cluster.local", "A").msg.answer[0]) == 2
    # no ready endpoint: NXDOMAIN (the specification's words)
    r = ask(table, "empty.shop.svc.cluster.local", "A")
    assert r.outcome == O.DNS_NXDOMAIN and r.msg.rcode() == dns.rcode.NXDOMAIN


def test_headless_endpoints_have_names_by_hostname_or_dashed_address(table):
    assert ask(table, "db-0.db.shop.svc.cluster.local", "A").records("answer") == [
        f"db-0.db.shop.svc.{Z} 5 in a 10.244.1.20"]
    assert ask(table, "db-0.db.shop.svc.cluster.local", "AAAA").records("answer") == [
        f"db-0.db.shop.svc.{Z} 5 in aaaa fd00:244:1::20"]
    assert ask(table, "10-244-2-22.db.shop.svc.cluster.local", "A").records("answer") == [
        f"10-244-2-22.db.shop.svc.{Z} 5 in a 10.244.2.22"]
    assert ask(table, "db-3.db.shop.svc.cluster.local", "A").outcome == O.DNS_NXDOMAIN   # not ready
    # CoreDNS answers endpoint names of ClusterIP Services too
    assert ask(table, "10-244-1-10.web.shop.svc.cluster.local", "A").records("answer") == [
        f"10-244-1-10.web.shop.svc.{Z} 5 in a {WEB1}"]


def test_headless_srv_has_one_record_per_endpoint_and_the_addresses_additional(table):
    r = ask(table, "_pg._tcp.db.shop.svc.cluster.local", "SRV")
    n = f"_pg._tcp.db.shop.svc.{Z} 5 in srv 0 25 5432"
    assert r.records("answer") == [f"{n} 10-244-2-22.db.shop.svc.{Z}", f"{n} db-0.db.shop.svc.{Z}",
                                   f"{n} db-1.db.shop.svc.{Z}"]
    assert r.records("additional") == [f"10-244-2-22.db.shop.svc.{Z} 5 in a 10.244.2.22",
                                       f"db-0.db.shop.svc.{Z} 5 in a 10.244.1.20",
                                       f"db-0.db.shop.svc.{Z} 5 in aaaa fd00:244:1::20",
                                       f"db-1.db.shop.svc.{Z} 5 in a 10.244.2.21"]


def test_externalname_is_a_cname_followed_inside_the_zone_and_passed_on_outside(table):
    r = ask(table, "ext.shop.svc.cluster.local", "CNAME")
    assert r.records("answer") == [f"ext.shop.svc.{Z} 5 in cname www.example.com."]
    # A/AAAA of a name outside the zone need a recursive server: the DNS pods
    for qt in ("A", "AAAA"):
        r = ask(table, "ext.shop.svc.cluster.local", qt)
        assert (r.verdict, r.outcome) == (Verdict.PENDING, O.DNS_PASS_EXTERNAL)
    assert ask(table, "toext.shop.svc.cluster.local", "A").outcome == O.DNS_PASS_EXTERNAL
    r = ask(table, "alias.shop.svc.cluster.local", "A")
    assert r.records("answer") == [f"alias.shop.svc.{Z} 5 in cname web.shop.svc.{Z}",
                                   f"web.shop.svc.{Z} 5 in a 10.96.0.10"]
    # x CNAME x is not followed: NODATA; an ExternalName that is an IP has no record
    assert ask(table, "loop.shop.svc.cluster.local", "A").outcome == O.DNS_NODATA
    assert ask(table, "ipname.shop.svc.cluster.local", "A").outcome == O.DNS_NXDOMAIN


def test_ptr_names_clusterips_and_endpoint_addresses_and_passes_the_rest_on(table):
    assert ask(table, "10.0.96.10.in-addr.arpa", "PTR").records("answer") == [
        f"10.0.96.10.in-addr.arpa. 5 in ptr web.shop.svc.{Z}"]
    assert ask(table, "20.1.244.10.in-addr.arpa", "PTR").records("answer") == [
        f"20.1.244.10.in-addr.arpa. 5 in ptr db-0.db.shop.svc.{Z}"]
    v6 = "1.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.0.d.f.ip6.arpa"
    assert ask(table, v6, "PTR").records("answer") == [f"{v6}. 5 in ptr dual.shop.svc.{Z}"]
    for name, qt in (("9.9.9.9.in-addr.arpa", "PTR"), ("10.0.96.10.in-addr.arpa", "A"),
                     ("in-addr.arpa", "PTR")):
        r = ask(table, name, qt)
        assert (r.verdict, r.outcome) == (Verdict.PENDING, O.DNS_PASS_REVERSE)


def test_pod_names_answer_the_address_they_spell_in_existing_namespaces(table):
    assert ask(table, "10-244-1-77.shop.pod.cluster.local", "A").records("answer") == [
        f"10-244-1-77.shop.pod.{Z} 5 in a 10.244.1.77"]
    assert ask(table, "fd00-244-1--77.shop.pod.cluster.local", "AAAA").records("answer") == [
        f"fd00-244-1--77.shop.pod.{Z} 5 in aaaa fd00:244:1::77"]
    assert ask(table, "x.10-244-1-77.shop.pod.cluster.local", "A").records("answer") == [
        f"x.10-244-1-77.shop.pod.{Z} 5 in a 10.244.1.77"]                # CoreDNS ignores it
    assert ask(table, "10-244-1-77.shop.pod.cluster.local", "AAAA").outcome == O.DNS_NODATA
    for bad in ("10-244-1-777", "10-244-01-7", "not-an-ip", "1-2-3", "1-2-3-4-5"):
        assert ask(table, f"{bad}.shop.pod.cluster.local", "A").outcome == O.DNS_NXDOMAIN, bad
    assert ask(table, "10-244-1-77.nosuchns.pod.cluster.local", "A").outcome == O.DNS_NXDOMAIN
    assert ask(table, "shop.pod.cluster.local", "A").outcome == O.DNS_NODATA


def test_pods_disabled_makes_every_pod_name_nxdomain():
    _, t = zone_and_table(cluster_objects(dns={"pods": "disabled"}))
    assert ask(t, "10-244-1-77.shop.pod.cluster.local", "A").outcome == O.DNS_NXDOMAIN
    assert ask(t, "shop.pod.cluster.local", "A").outcome == O.DNS_NXDOMAIN
    assert ask(t, "pod.cluster.local", "A").outcome == O.DNS_NODATA


def test_schema_version_apex_soa_and_ns(table):
    assert ask(table, "dns-version.cluster.local", "TXT").records("answer") == [
        f"dns-version.{Z} 28800 in txt \"1.1.0\""]
    assert ask(table, "dns-version.cluster.local", "A").outcome == O.DNS_NXDOMAIN   # as CoreDNS
    r = ask(table, "cluster.local", "SOA")
    (line,) = r.records("answer")
    assert line.startswith(f"{SOA} ") and line.endswith(" 7200 1800 86400 5")
    r = ask(table, "cluster.local", "NS")
    assert r.records("answer") == [f"{Z} 5 in ns ns.dns.{Z}"]
    assert r.records("additional") == [f"ns.dns.{Z} 5 in a {DNS_IP}", f"ns.dns.{Z} 5 in aaaa {DNS_IP6}"]
    assert ask(table, "ns.dns.cluster.local", "A").records("answer") == [f"ns.dns.{Z} 5 in a {DNS_IP}"]


def test_missing_names_and_search_path_expansions_are_nxdomain_at_once(table):
    for name in ("nope.shop.svc.cluster.local", "web.shop.svc.cluster.local.shop.svc.cluster.local",
                 "web.shop.svc.cluster.local.svc.cluster.local", "www.example.com.shop.svc.cluster.local",
                 "web.nosuchns.svc.cluster.local", "foo.cluster.local", "noports.shop.svc.cluster.local"):
        r = ask(table, name, "A")
        assert (r.outcome, r.msg.rcode()) == (O.DNS_NXDOMAIN, dns.rcode.NXDOMAIN), name
        assert soa_line(r) == f"{SOA} 7200 1800 86400 5" and r.msg.flags & dns.flags.AA
    # existing names without that type: NODATA
    for name, qt in (("shop.svc.cluster.local", "A"), ("svc.cluster.local", "A"), ("cluster.local", "A"),
                     ("quiet.svc.cluster.local", "AAAA"), ("web.shop.svc.cluster.local", "HTTPS"),
                     ("web.shop.svc.cluster.local", "MX"), ("web.shop.svc.cluster.local", "TXT"),
                     ("nope.shop.svc.cluster.local", "SOA")):
        r = ask(table, name, qt)
        assert (r.outcome, r.msg.rcode(), r.msg.answer) == (O.DNS_NODATA, dns.rcode.NOERROR, []), (name, qt)


def test_names_are_compared_without_case_and_the_question_keeps_the_clients_case(table):
    r = ask(table, "WeB.ShOp.SVC.Cluster.LOCAL", "A")
    assert r.msg.question[0].name.to_text() == "WeB.ShOp.SVC.Cluster.LOCAL."
    assert r.records("answer") == [f"web.shop.svc.{Z} 5 in a 10.96.0.10"]
    payload = bytes(Ether(r.data)[UDP].payload)
    assert b"\x03WeB\x04ShOp\x03SVC\x07Cluster\x05LOCAL\x00" in payload


def test_ttl_comes_from_the_node_config():
    _, t = zone_and_table(cluster_objects(dns={"ttl": 30}))
    r = ask(t, "web.shop.svc.cluster.local", "A")
    assert r.records("answer") == [f"web.shop.svc.{Z} 30 in a 10.96.0.10"]
    r = ask(t, "nope.shop.svc.cluster.local", "A")
    f = r.records("authority")[0].split()
    assert f[1] == "30" and f[-1] == "30"           # SOA TTL min(ttl, 300), MINIMUM = ttl


def test_another_cluster_domain_and_listen_address():
    _, t = zone_and_table(cluster_objects(dns={"clusterDomain": "Corp.Example", "listen": ["169.254.20.10"]}))
    r = ask(t, "web.shop.svc.corp.example", "A", dst="169.254.20.10")
    assert r.records("answer") == ["web.shop.svc.corp.example. 5 in a 10.96.0.10"]
    assert Ether(r.data)[IP].src == "169.254.20.10"
    r = ask(t, "web.shop.svc.cluster.local", "A", dst="169.254.20.10")
    assert r.outcome == O.DNS_PASS_OUT_OF_ZONE
    assert ask(t, "web.shop.svc.corp.example", "A").outcome == O.DNS_NONE   # kube-dns not listened on


# ------------------------------------------------------------------ protocol

def test_edns_opt_is_echoed_with_the_clients_size_and_do_bit(table):
    r = ask(table, "web.shop.svc.cluster.local", "A", edns=0, payload=4000, do=True)
    assert r.msg.edns == 0 and r.msg.payload == 4000 and r.msg.ednsflags & dns.flags.DO
    assert r.msg.options == ()
    r = ask(table, "web.shop.svc.cluster.local", "A")
    assert r.msg.edns == -1


def test_edns_version_other_than_0_gets_badvers(table):
    r = ask(table, "web.shop.svc.cluster.local", "A", edns=1)
    assert (r.reason, r.outcome) == (Reason.DNS_FORMERR, O.DNS_BADVERS)
    assert r.msg.rcode() == dns.rcode.BADVERS and r.msg.edns == 0 and r.msg.answer == []


def test_cd_and_rd_are_copied(table):
    r = ask(table, "web.shop.svc.cluster.local", "A", rd=False, cd=True)
    assert r.msg.flags & dns.flags.CD and not r.msg.flags & dns.flags.RD


def _compare_prefix(small, full):
    """The records of `small` are the first records of `full`, in order."""
    def flat(m):
        return [(sec, line) for sec in ("answer", "authority", "additional")
                for rrs in getattr(m, sec) for line in rrs.to_text().split("\n")]
    a, b = flat(small), flat(full)
    assert a == b[:len(a)]


def test_an_answer_over_512_bytes_without_edns_is_truncated_with_tc(table):
    small = ask(table, "big.shop.svc.cluster.local", "A")
    full = ask(table, "big.shop.svc.cluster.local", "A", edns=0, payload=1232)
    assert small.msg.flags & dns.flags.TC and not full.msg.flags & dns.flags.TC
    assert len(full.msg.answer[0]) == 40
    assert len(Ether(small.data)[UDP].payload) <= 512
    _compare_prefix(small.msg, full.msg)
    # it keeps every record that fits: one more would not
    n = len(small.msg.answer[0])
    question = len(b"\x03big\x04shop\x03svc\x07cluster\x05local\x00") + 4
    assert 12 + question + 16 * (n + 1) > 512 >= 12 + question + 16 * n


def test_the_clients_edns_size_is_honoured_within_1232_bytes():
    _, t = zone_and_table(cluster_objects(big=100))
    for payload, expect_tc in ((600, True), (1232, True), (4096, True)):
        r = ask(t, "big.shop.svc.cluster.local", "A", edns=0, payload=payload)
        size = len(Ether(r.data)[UDP].payload)
        assert size <= min(max(payload, 512), 1232)
        assert bool(r.msg.flags & dns.flags.TC) == expect_tc
    r = ask(t, "big.shop.svc.cluster.local", "A", edns=0, payload=100)    # below 512: 512
    assert 500 < len(Ether(r.data)[UDP].payload) <= 512


def test_ipv6_and_vlan_tagged_queries_are_answered_the_same_way(table):
    r = ask(table, "web.shop.svc.cluster.local", "A", v6=True)
    e = Ether(r.data)
    assert (e[IPv6].src, e[IPv6].dst, e[UDP].dport) == (DNS_IP6, CLIENT6, 33333)
    assert r.records("answer") == [f"web.shop.svc.{Z} 5 in a 10.96.0.10"]
    again = Ether(raw(e))
    del again[UDP].chksum
    assert Ether(raw(again))[UDP].chksum == e[UDP].chksum
    r = ask(table, "web.shop.svc.cluster.local", "A", vlan=42)
    e = Ether(r.data)
    assert e[Dot1Q].vlan == 42 and e[IP].src == DNS_IP and r.msg.answer


# ------------------------------------------------------------------ malformed and passed on

def _header(qid=7, flags=0x0100, qd=1, an=0, ns=0, ar=0):
    return (qid.to_bytes(2, "big") + flags.to_bytes(2, "big") + qd.to_bytes(2, "big")
            + an.to_bytes(2, "big") + ns.to_bytes(2, "big") + ar.to_bytes(2, "big"))


QNAME = b"\x03web\x04shop\x03svc\x07cluster\x05local\x00"
OPT = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"


@pytest.mark.parametrize("payload, with_question", [
    (_header(qd=0), False),
    (_header(qd=2) + QNAME + b"\x00\x01\x00\x01" + QNAME + b"\x00\x01\x00\x01", False),
    (_header() + b"\x03web\xc0\x0c\x00\x01\x00\x01", False),                 # pointer (to itself)
    (_header() + b"\x03web\x44shop\x00\x00\x01\x00\x01", False),             # extended label type
    (_header() + b"\x3f" + b"a" * 63 + b"\x3f" + b"b" * 63 + b"\x3f" + b"c" * 63 + b"\x3f" + b"d" * 63
     + b"\x00\x00\x01\x00\x01", False),                                       # 257 bytes
    (_header() + QNAME + b"\x00\x01", False),                                  # no class
    (_header() + b"\x03web\x04sh", False),                                     # name cut
    (_header(ar=2) + QNAME + b"\x00\x01\x00\x01" + OPT + OPT, True),            # two OPT
    (_header(ar=1) + QNAME + b"\x00\x01\x00\x01" + b"\x01a\x00\x00\x29\x02\x00\x00\x00\x00\x00\x00\x00",
     True),                                                                     # OPT not at the root
    (_header(ar=1) + QNAME + b"\x00\x01\x00\x01" + OPT[:-2] + b"\x00\x05", True),   # rdata cut
])
def test_malformed_queries_get_formerr(table, payload, with_question):
    r = run_stage(table, [frame(payload)])[0][0]
    assert (r.verdict, r.reason, r.outcome) == (Verdict.REPLY, Reason.DNS_FORMERR, O.DNS_FORMERR)
    assert r.msg.rcode() == dns.rcode.FORMERR and r.msg.id == 7 and r.msg.flags & dns.flags.QR
    assert r.msg.flags & dns.flags.RD and not r.msg.flags & dns.flags.AA
    assert len(r.msg.question) == (1 if with_question else 0) and r.msg.edns == -1


@pytest.mark.parametrize("payload", [b"", b"\x00\x07\x01", _header()[:11],
                                     _header(flags=0x8180) + QNAME + b"\x00\x01\x00\x01"])
def test_short_messages_and_responses_are_dropped_with_a_reason(table, payload):
    r = run_stage(table, [frame(payload)])[0][0]
    assert (r.verdict, r.reason, r.meta["stage"]) == (Verdict.DROP, Reason.DNS_MALFORMED, Stage.DNS)
    assert r.outcome in (O.DNS_SHORT, O.DNS_RESPONSE)


TSIG = (b"\x03key\x00\x00\xfa\x00\xff\x00\x00\x00\x00\x00\x1a" + b"\x08hmac-md5\x00" + b"\x00" * 16)


@pytest.mark.parametrize("make, outcome", [
    (lambda: frame(make_query("web.shop.svc.cluster.local"), tcp=True), O.DNS_PASS_TCP),
    (lambda: frame(_header(flags=0x2100) + QNAME + b"\x00\x06\x00\x01"), O.DNS_PASS_OPCODE),
    (lambda: frame(_header() + QNAME + b"\x00\x10\x00\x03"), O.DNS_PASS_CLASS),
    (lambda: frame(_header() + QNAME + b"\x00\xfc\x00\x01"), O.DNS_PASS_XFR),
    (lambda: frame(_header(ar=1) + QNAME + b"\x00\x01\x00\x01" + TSIG), O.DNS_PASS_SECTIONS),
    (lambda: frame(_header(an=1) + QNAME + b"\x00\x01\x00\x01"), O.DNS_PASS_SECTIONS),
    (lambda: frame(make_query("www.example.com")), O.DNS_PASS_OUT_OF_ZONE),
    (lambda: frame(make_query("cluster.localx")), O.DNS_PASS_OUT_OF_ZONE),
    (lambda: frame(make_query("xcluster.local")), O.DNS_PASS_OUT_OF_ZONE),
    (lambda: Ether(src=MAC_A, dst=MAC_B) / IP(src=CLIENT, dst=DNS_IP, flags="MF")
     / UDP(sport=1, dport=53) / make_query("web.shop.svc.cluster.local"), O.DNS_PASS_FRAGMENT),
])
def test_what_kdp_does_not_answer_passes_on_untouched(table, make, outcome):
    f = make()
    r = run_stage(table, [f])[0][0]
    assert (r.verdict, r.outcome) == (Verdict.PENDING, outcome)
    assert r.data == raw(f)


def test_a_capture_cut_short_passes_on(table):
    data = raw(frame(make_query("web.shop.svc.cluster.local")))
    b = Batch(1)
    b.append(data[:-6], wire_len=len(data), in_port=5)
    from kdp._fast.parse import parse
    from kdp._fast.dns import dns_stage
    parse(b)
    _, notes = dns_stage(b, table)
    assert notes[0]["outcome"] == O.DNS_PASS_CUT and b.meta[0]["verdict"] == Verdict.PENDING


def test_other_addresses_and_ports_are_not_the_dns_stages(table):
    for f in (frame(make_query("web.shop.svc.cluster.local"), dst="10.96.0.10"),
              frame(make_query("web.shop.svc.cluster.local"), dport=5353)):
        r = run_stage(table, [f])[0][0]
        assert (r.verdict, r.outcome) == (Verdict.PENDING, O.DNS_NONE)


# ------------------------------------------------------------------ room in the batch

def test_answers_never_write_outside_their_slot_and_big_ones_move_to_the_batch_tail():
    _, t = zone_and_table(cluster_objects(big=70))
    frames = [frame(make_query("big.shop.svc.cluster.local", edns=0)),           # 1,1xx bytes: tail
              frame(b"\xee" * 40, dport=9999),                                    # not DNS
              frame(make_query("web.shop.svc.cluster.local", edns=0)),            # fits in place
              frame(make_query("nope.shop.svc.cluster.local")),                   # SOA: in place
              frame(b"\xdd" * 60, dport=9999)]
    b = Batch(len(frames))
    for f in frames:
        b.append(raw(f), in_port=5)
    before = bytes(b.buffer)
    starts = [int(b.meta[i]["off"]) for i in range(len(b))]
    ends = [int(b.meta[i]["off"] + b.meta[i]["len"]) for i in range(len(b))]
    used = b.used
    from kdp._fast.parse import parse
    from kdp._fast.dns import dns_stage
    parse(b)
    counters, notes = dns_stage(b, t)
    after = bytes(b.buffer)
    # the other packets are byte for byte what they were
    for i in (1, 4):
        assert after[starts[i] - 128:ends[i]] == before[starts[i] - 128:ends[i]]
    # answers 2 and 3 stayed inside [their start - HEADROOM + 64, their aligned end)
    for i in (2, 3):
        m = b.meta[i]
        assert starts[i] - 64 <= m["off"] and m["off"] + m["len"] <= (ends[i] + 63) // 64 * 64
    # answer 0 went to the tail, after everything the batch held
    assert b.meta[0]["off"] >= used + 128 and b.used > used
    assert after[used:int(b.meta[0]["off"])] == before[used:int(b.meta[0]["off"])]
    msg = dns.message.from_wire(bytes(Ether(b.packet(0))[UDP].payload))
    assert len(msg.answer[0]) == 70 and not msg.flags & dns.flags.TC
    assert counters[O.DNS_ANSWER] == 2 and counters[O.DNS_NXDOMAIN] == 1


def test_counters_add_up_to_the_dns_packets_and_count_truncation(table):
    frames = [frame(make_query("web.shop.svc.cluster.local")), frame(make_query("nope.shop.svc.cluster.local")),
              frame(make_query("big.shop.svc.cluster.local")), frame(make_query("example.org")),
              frame(b"\x01"), frame(b"x" * 20, dport=80)]
    replies, counters, _ = run_stage(table, frames)
    assert int(counters[:19].sum()) == 5
    assert counters[O.DNS_ANSWER] == 2 and counters[O.DNS_NXDOMAIN] == 1
    assert counters[O.DNS_PASS_OUT_OF_ZONE] == 1 and counters[O.DNS_SHORT] == 1
    assert counters[19] == 1                # big: TC
    assert [bool(r.note["tc"]) for r in replies] == [False, False, True, False, False, False]


def test_notes_carry_the_lowercased_name_qtype_and_rcode_for_the_log(table):
    replies, _, _ = run_stage(table, [frame(make_query("NoPe.shop.svc.cluster.local", "AAAA"))])
    n = replies[0].note
    assert bytes(n["name"][:n["name_len"]]) == b"\x04nope\x04shop\x03svc\x07cluster\x05local\x00"
    assert (n["qtype"], n["rcode"], n["outcome"]) == (28, 3, O.DNS_NXDOMAIN)


def test_ipv4_options_are_not_echoed_the_answer_has_a_plain_header(table):
    from scapy.all import IPOption_RR
    f = Ether(src=MAC_A, dst=MAC_B) / IP(src=CLIENT, dst=DNS_IP, options=[IPOption_RR(length=11)]) \
        / UDP(sport=4000, dport=53) / make_query("web.shop.svc.cluster.local")
    r = run_stage(table, [f])[0][0]
    e = Ether(r.data)
    assert e[IP].ihl == 5 and not e[IP].options and e[UDP].dport == 4000
    assert r.records("answer") == [f"web.shop.svc.{Z} 5 in a 10.96.0.10"]
    again = Ether(raw(e))
    del again[IP].chksum, again[UDP].chksum
    again = Ether(raw(again))
    assert (again[IP].chksum, again[UDP].chksum) == (e[IP].chksum, e[UDP].chksum)
