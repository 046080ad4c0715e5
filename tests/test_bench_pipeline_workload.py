"""The pipeline benchmark's workload is what it claims: valid packets (checked by scapy),
TCP flows that start with a handshake, and replies that come from the backend kdp chose
(so the reverse NAT path is what gets measured)."""
import hashlib

import numpy as np
import pytest

from kdp.benchmarks import pipeline as wl
from kdp.control import Cluster, compile as compile_cluster

import scapy.all as scapy_all

PACKETS = 3_000


@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    docs = wl.cluster_docs(100, 1_000)
    tables = compile_cluster(Cluster.from_documents(docs, node=wl.NODE))
    path = str(tmp_path_factory.mktemp("wl") / "c.pcap")
    info = wl.synth_capture(path, PACKETS, tables, wl._targets(docs))
    return docs, tables, path, info


def test_packets_have_valid_ip_and_tcp_checksums_per_scapy(workload):
    _, _, path, _ = workload
    pkts = scapy_all.rdpcap(path, count=500)
    assert len(pkts) == 500
    for pkt in pkts:
        ip = pkt[scapy_all.IP]
        tcp = pkt[scapy_all.TCP]
        fresh = scapy_all.IP(bytes(ip))
        del fresh.chksum
        del fresh[scapy_all.TCP].chksum
        fresh = scapy_all.IP(bytes(fresh))
        assert ip.chksum == fresh.chksum
        assert tcp.chksum == fresh[scapy_all.TCP].chksum
        assert ip.len == len(bytes(ip))


def test_every_flow_starts_with_a_syn_and_replies_reverse_its_translation(workload):
    _, tables, path, info = workload
    batches = wl._load_batches(path)
    dp = wl._fresh_dp(tables)
    wl._time_process(dp, batches)
    states, verdicts = wl._ct_mix(batches)
    # one new flow per generated flow, every reply found its flow in reverse
    assert states["CT_NEW"] == info["flows"]
    assert states["CT_REPLY"] == info["replies"] > PACKETS // 4
    assert verdicts == {"V_FORWARD": PACKETS}
    meta = np.concatenate([b.meta[:b.count] for b in batches])
    new = meta[meta["ct_state"] == 1]
    assert np.all(new["tcp_flags"] == wl.SYN)


def test_same_arguments_give_the_same_capture(workload, tmp_path):
    docs, tables, path, _ = workload
    again = str(tmp_path / "again.pcap")
    wl.synth_capture(again, PACKETS, tables, wl._targets(docs))
    digest = [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in (path, again)]
    assert digest[0] == digest[1]
