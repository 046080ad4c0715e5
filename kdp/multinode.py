"""Several nodes' data planes joined by a simulated underlay: `kdp replay --node a,b`.

    result = replay_nodes("in.pcap", cluster=["snap/"], nodes=["node-1", "node-2"],
                          output="out.pcapng", log="verdicts.jsonl")

Every node of the list gets its own Dataplane compiled from the same snapshot (each
seeing the cluster as that node). The capture is read in order; each packet enters
the node it belongs to:

  * its source is a pod's address -> that pod's node, on the pod's port;
  * its source is a node's address -> that node, from the host;
  * otherwise (a client outside the cluster) -> the node whose address is its
    destination, else the node whose pod block holds its destination, else the
    first node of the list; on the uplink.

The underlay: a packet a node transmits on its uplink goes to another node when its
route's next hop (the tunnel endpoint, the native next hop) or else its (outer)
destination is one of that node's addresses; that node gets it as input on its
uplink, as the wire would hand it over: tunnels are decapsulated there, replies find
the flows there. Everything else a node transmits (to its pods, to its host, out of
the cluster) stays where it is. Packets travel in order: the packets of the capture
that enter one node one after another are one batch there, and everything they send
to other nodes is processed, hop by hop, before the next packet of the capture is.
A packet that crosses MAX_HOPS nodes is dropped by the underlay with reason
underlay_hop_limit (a routing loop between nodes cannot hang a replay).

Output: everything any node transmits (including what crosses the underlay: it is on
the wire), in processing order; in pcapng each interface is named "node/port". The
verdict log has one line per packet per node it crossed, with `node` and `hop` (0 at
the node it entered first); `index` is the packet's position in the capture.

Counters: `counters` counts each packet of the capture once, where it ended: at the
last node it reached, or, when a node answered it (ICMP error, echo reply, reject),
where the answer was made (the answer still travels back, and is logged). `nodes`
holds each node's own counters: everything it processed, arrivals from the underlay
included.
"""
import json
import time

import numpy as np

from kdp._fast.packet import Batch
from kdp._fast.parse import parse
from kdp._fast.route import RouteKind
from kdp._fast.transit import copy as transit_copy
from kdp.control import Cluster, compile as compile_cluster
from kdp.control import addr
from kdp.control.loader import load_documents
from kdp.dataplane import Dataplane
from kdp.errors import ConfigError
from kdp.io.capture import (CaptureWriter, LogFile, open_capture, refuse_same_file,
                            unlink_for_replacement)
from kdp.ports import HOST, UPLINK, PortTable
from kdp.reasons import Reason, Stage, Verdict
from kdp.summary import RunResult

MAX_HOPS = 8
TRANSMITTED = (Verdict.FORWARD, Verdict.REJECT, Verdict.REPLY)


def node_names(paths, requested):
    """The nodes a replay runs: the requested names, or every NodeConfig / Node of the
    snapshot for "all" (sorted). ConfigError for a name the snapshot does not have."""
    docs = load_documents(paths)
    known = sorted({(d.get("metadata") or {}).get("name") for _o, d in docs
                    if isinstance(d, dict) and d.get("kind") in ("Node", "NodeConfig")
                    and isinstance(d.get("metadata"), dict)} - {None})
    if requested in (["all"], "all"):
        if not known:
            raise ConfigError("--nodes all: the snapshot has no Node or NodeConfig object")
        return docs, known
    missing = [n for n in requested if n not in known]
    if missing:
        raise ConfigError(f"--node: no Node or NodeConfig object names {', '.join(missing)} "
                          f"(the snapshot has: {', '.join(known) or 'none'})")
    if len(set(requested)) != len(requested):
        raise ConfigError("--node: a node is named twice")
    return docs, list(requested)


class _Node:
    """One node of the simulation: its Dataplane and what the underlay needs of it."""

    def __init__(self, name, docs):
        self.name = name
        cluster = Cluster.from_documents(docs, node=name)
        self.dp = Dataplane(compile_cluster(cluster))
        self.cluster = cluster
        routes = self.dp.pipeline.routes.routes
        self.via4 = np.zeros(max(1, len(routes)), dtype=np.uint32)
        self.via6 = {}
        for i, r in enumerate(routes):
            if r.via is not None:
                if r.via.version == 4:
                    self.via4[i] = int(r.via)
                else:
                    self.via6[i] = (6, int(r.via))
        self.log = None
        self.remap = {}


class Underlay:
    """The nodes and the wire between them (see the module docstring)."""

    def __init__(self, paths, nodes):
        docs, names = node_names(paths, nodes)
        self.order = names
        self.nodes = {n: _Node(n, docs) for n in names}
        self.owner = {}                 # node address -> node
        self.pods = {}                  # pod address -> (node, port id)
        self.blocks = []                # (prefix, node)
        for name, nd in self.nodes.items():
            for ip in nd.dp.pipeline.routes.node_addresses:
                self.owner.setdefault((ip.version, int(ip)), name)
            for r in nd.dp.pipeline.routes.routes:
                key = (r.prefix.version, int(r.prefix.network_address))
                if r.kind == RouteKind.RT_LOCAL_POD and r.prefix.prefixlen == r.prefix.max_prefixlen:
                    self.pods.setdefault(key, (name, r.port))
                elif r.kind == RouteKind.RT_BLACKHOLE:
                    self.blocks.append(((r.prefix.version, int(r.prefix.network_address), r.prefix.prefixlen), name))
        self.ports = PortTable()        # output interface names: "node/port"
        self.transits = 0
        self.hop_limited = 0

    # -------------------------------------------------------------- where packets go

    def _entry(self, m):
        """(node, in_port) a parsed input packet enters."""
        ver = int(m["ip_ver"])
        if ver not in (4, 6):
            return self.order[0], UPLINK
        if ver == 4:
            src, dst = (4, int(m["src4"])), (4, int(m["dst4"]))
        else:
            src = (6, int.from_bytes(bytes(m["src6"]), "big"))
            dst = (6, int.from_bytes(bytes(m["dst6"]), "big"))
        if src in self.pods:
            return self.pods[src]
        if src in self.owner:
            return self.owner[src], HOST
        if dst in self.owner:
            return self.owner[dst], UPLINK
        for prefix, name in self.blocks:
            if addr.prefix_contains(prefix, dst):
                return name, UPLINK
        return self.order[0], UPLINK

    def _next_node(self, nd, m):
        """The node a packet nd transmitted on its uplink goes to, or None."""
        rid = int(m["route_id"])
        ver = int(m["ip_ver"])
        hop = None
        if rid != 0xFFFFFFFF and rid < len(nd.via4):
            if nd.via4[rid]:
                hop = (4, int(nd.via4[rid]))
            elif rid in nd.via6:
                hop = nd.via6[rid]
        if hop is not None and hop in self.owner and self.owner[hop] != nd.name:
            return self.owner[hop]
        if ver == 4:
            dst = (4, int(m["dst4"]))
        elif ver == 6:
            dst = (6, int.from_bytes(bytes(m["dst6"]), "big"))
        else:
            return None
        name = self.owner.get(dst)
        return name if name is not None and name != nd.name else None

    # -------------------------------------------------------------- output

    def _write(self, writer, nd, batch):
        if writer is None or not len(batch):
            return
        ports = batch.meta["out_port"][:len(batch)]
        saved = ports.copy()
        for local in np.unique(saved):
            local = int(local)
            if local not in nd.remap:
                name = "none" if local == 0xFFFF else nd.dp.ports.name_of(local)
                nd.remap[local] = self.ports.id_of(f"{nd.name}/{name}")
            ports[saved == local] = nd.remap[local]
        try:
            writer.write(batch)
        finally:
            ports[:] = saved

    # -------------------------------------------------------------- the run

    def run(self, capture, output=None, log=None, batch_size=256):
        refuse_same_file(input=capture, output=output, log=log)
        started = time.perf_counter()
        reader = open_capture(capture, ports=PortTable())
        batch = Batch(batch_size)
        self.chunk = batch_size         # the most packets one node processes (and logs) at once
        final = np.zeros((len(Stage), len(Reason)), dtype=np.uint64)
        verdicts = np.zeros(len(Verdict), dtype=np.uint64)
        writer = None
        unlink_for_replacement(log)             # outputs are created anew (kdp/replay.py)
        log_file = LogFile(log) if log else None
        base = 0
        try:
            if output is not None:
                unlink_for_replacement(output)
                writer = CaptureWriter(output, linktype=1 if reader.linktype in (1, None) else 101,
                                       ports=self.ports)
            if log_file is not None:
                for nd in self.nodes.values():
                    nd.log = nd.dp.verdict_log(log_file, max(batch_size, 1), node=nd.name)
            while True:
                n = reader.fill(batch)
                if n == 0:
                    break
                self._run_batch(batch, base, writer, log_file, final, verdicts)
                base += n
        finally:
            if writer is not None:
                writer.close()
            if log_file is not None:
                log_file.close()
            reader.close()
        notices = []
        for name, nd in self.nodes.items():
            notices += [f"{name}: {x}" for x in nd.dp.notices + nd.dp.traffic_notices()]
        if self.hop_limited:
            notices.append(f"{self.hop_limited} packet{'s' * (self.hop_limited != 1)} crossed "
                           f"{MAX_HOPS} nodes and were dropped by the underlay (underlay_hop_limit): "
                           "a routing loop between nodes")
        return MultiRunResult(
            packets_in=int(reader.packets), counters=final, verdicts=verdicts,
            packets_out=int(writer.packets) if writer is not None else 0,
            input_path=str(capture), output_path=str(output) if output else None,
            warnings=list(reader.warnings), notices=list(dict.fromkeys(notices)),
            seconds=time.perf_counter() - started,
            nodes={n: {"packets": int(nd.dp.counters.sum()), "counters": nd.dp.counters.copy(),
                       "verdicts": nd.dp.verdicts.copy(),
                       "conntrack": nd.dp.flow_counters(),
                       "services": nd.dp.service_counts()}
                   for n, nd in self.nodes.items()},
            transits=self.transits, hop_limited=self.hop_limited)

    def _run_batch(self, batch, base, writer, log_file, final, verdicts):
        """One input batch: runs of packets entering one node, each followed by what it
        sends to other nodes, hop by hop."""
        n = len(batch)
        parse(batch)                    # to read addresses; each node parses again
        meta = batch.meta
        entries = [self._entry(meta[i]) for i in range(n)]
        outcome = np.zeros((n, 3), dtype=np.int64)      # verdict, stage, reason
        decided = np.zeros(n, dtype=bool)
        start = 0
        while start < n:
            name = entries[start][0]
            stop = start
            while stop < n and entries[stop][0] == name:
                stop += 1
            idx = np.arange(start, stop, dtype=np.uint32)
            ports = np.array([entries[i][1] for i in range(start, stop)], dtype=np.uint16)
            pending = [(name, batch, idx, ports, idx.astype(np.uint64), np.zeros(len(idx), np.uint8),
                        np.ones(len(idx), dtype=bool))]
            while pending:
                pending = self._hop(pending, writer, log_file, outcome, decided)
            start = stop
        for i in range(n):
            v, s, r = outcome[i]
            final[s, r] += 1
            verdicts[v] += 1

    def _hop(self, pending, writer, log_file, outcome, decided):
        """Process every (node, packets) of one hop; returns the next hop's."""
        following = []
        chunked = []
        for name, src, idx, ports, indices, hops, primary in pending:
            for a in range(0, len(idx), self.chunk):
                b = slice(a, a + self.chunk)
                chunked.append((name, src, idx[b], ports[b], indices[b], hops[b], primary[b]))
        for name, src, idx, ports, indices, hops, primary in chunked:
            nd = self.nodes[name]
            work = Batch(max(1, len(idx)))
            transit_copy(src, idx, work, UPLINK)
            count = len(work)
            work.meta["in_port"][:count] = ports[:count]
            nd.dp.process(work, nd.log)
            if nd.log is not None:
                nd.log.write(work, indices=indices[:count], hops=hops[:count])
            self._write(writer, nd, work)
            self._write(writer, nd, nd.dp.extra)
            m = work.meta
            out_idx, out_src, out_primary = [], [], []
            for k in range(count):
                v = int(m["verdict"][k])
                goes_on = None
                if v in TRANSMITTED and int(m["out_port"][k]) == UPLINK:
                    goes_on = self._next_node(nd, m[k])
                if primary[k] and not decided[indices[k]]:
                    if goes_on is None or v != Verdict.FORWARD:
                        outcome[indices[k]] = (v, int(m["stage"][k]), int(m["reason"][k]))
                        decided[indices[k]] = True
                    else:
                        outcome[indices[k]] = (v, int(m["stage"][k]), int(m["reason"][k]))
                if goes_on is not None:
                    out_idx.append((goes_on, k, bool(primary[k]) and v == Verdict.FORWARD))
            extra = nd.dp.extra
            extra_moves = []
            em = extra.meta
            parent = {}
            for j in range(len(extra)):
                if int(em["verdict"][j]) in TRANSMITTED and int(em["out_port"][j]) == UPLINK:
                    goes_on = self._next_node(nd, em[j])
                    if goes_on is not None:
                        extra_moves.append((goes_on, j))
            # group by destination, in order
            for dest in dict.fromkeys([d for d, *_ in out_idx] + [d for d, _ in extra_moves]):
                ks = [k for d, k, _p in out_idx if d == dest]
                prim = [p for d, _k, p in out_idx if d == dest]
                js = [j for d, j in extra_moves if d == dest]
                self._forward(following, dest, work, ks, prim, indices, hops, log_file, outcome, decided)
                if js:
                    # fragments after the first: the index of the packet they came from
                    frag_parent = self._fragment_parents(work, extra, js, indices)
                    extra_copy = Batch(max(1, len(js)))
                    transit_copy(extra, np.array(js, dtype=np.uint32), extra_copy, UPLINK)
                    self._forward(following, dest, extra_copy, list(range(len(js))), [False] * len(js),
                                  frag_parent, np.full(len(js), hops.max() if len(hops) else 0, np.uint8),
                                  log_file, outcome, decided)
        return following

    @staticmethod
    def _fragment_parents(work, extra, js, indices):
        """Input indices of fragments: the packet of `work` with the same IPv4 identification
        and addresses (fragments carry no pointer back)."""
        wm, em = work.meta, extra.meta
        out = np.zeros(len(js), dtype=np.uint64)
        for t, j in enumerate(js):
            for k in range(len(work)):
                if (wm["frag_id"][k], wm["src4"][k], wm["dst4"][k]) == (em["frag_id"][j], em["src4"][j], em["dst4"][j]):
                    out[t] = indices[k]
                    break
        return out

    def _forward(self, following, dest, src, ks, prim, indices, hops, log_file, outcome, decided):
        """Hand packets ks of src to node dest (one hop later), or drop them at the hop limit."""
        if not ks:
            return
        ks = np.array(ks, dtype=np.uint32)
        new_hops = hops[ks].astype(np.int64) + 1
        over = new_hops >= MAX_HOPS
        for t in np.nonzero(over)[0]:
            k = int(ks[t])
            self.hop_limited += 1
            i = int(indices[k])
            if prim[t] and not decided[i]:
                outcome[i] = (Verdict.DROP, Stage.TX, Reason.UNDERLAY_HOP_LIMIT)
                decided[i] = True
            if log_file is not None:
                log_file.write(_hop_limit_line(src, k, i, dest, int(new_hops[t])))
        keep = ~over
        if keep.any():
            self.transits += int(keep.sum())
            following.append((dest, src, ks[keep], np.full(int(keep.sum()), UPLINK, np.uint16),
                              indices[ks[keep]].astype(np.uint64), new_hops[keep].astype(np.uint8),
                              np.array(prim, dtype=bool)[keep]))


def _hop_limit_line(batch, k, index, node, hop):
    m = batch.meta[k]
    ver = int(m["ip_ver"])
    if ver == 4:
        src, dst = addr.format_ip((4, int(m["src4"]))), addr.format_ip((4, int(m["dst4"])))
    elif ver == 6:
        src = addr.format_ip((6, int.from_bytes(bytes(m["src6"]), "big")))
        dst = addr.format_ip((6, int.from_bytes(bytes(m["dst6"]), "big")))
    else:
        src = dst = None
    line = {"index": index, "verdict": "drop", "reason": Reason.UNDERLAY_HOP_LIMIT.label,
            "in_port": "uplink", "out_port": None, "proto": None, "src": src, "dst": dst,
            "sport": None, "dport": None, "ct": None, "service": None, "orig": None,
            "node": node, "hop": hop}
    return (json.dumps(line, separators=(",", ":")) + "\n").encode()


class MultiRunResult(RunResult):
    """A multi-node replay: RunResult (counters: where each packet ended) plus each
    node's own counters."""

    def __init__(self, nodes, transits, hop_limited, **kw):
        super().__init__(**kw)
        self.nodes = nodes
        self.transits = transits
        self.hop_limited = hop_limited

    def to_json(self):
        out = super().to_json()
        out["underlay"] = {"transits": self.transits, "hop_limited": self.hop_limited}
        out["nodes"] = {}
        for name, n in self.nodes.items():
            rows = [{"stage": Stage(int(s)).label, "reason": Reason(int(r)).label, "packets": int(n["counters"][s, r])}
                    for s, r in zip(*np.nonzero(n["counters"]))]
            out["nodes"][name] = {"packets": n["packets"], "counters": rows,
                                  "verdicts": {v.label: int(n["verdicts"][v]) for v in Verdict if v != Verdict.PENDING},
                                  "conntrack": n["conntrack"],
                                  "services": [{"service": k, **c} for k, c in sorted(n["services"].items())]}
        return out


def replay_nodes(capture, output=None, cluster=(), nodes=(), log=None, batch_size=256):
    """Run `capture` through the nodes of `cluster` joined by the simulated underlay."""
    return Underlay(cluster, "all" if nodes == "all" else list(nodes)).run(
        capture, output=output, log=log, batch_size=batch_size)


def print_multi_summary(result, console=None):
    from rich.console import Console
    from rich.table import Table

    from kdp.summary import print_summary, service_table
    console = console or Console(stderr=False)
    print_summary(result, console)
    for name, n in result.nodes.items():
        ct = n["conntrack"]
        table = Table(title=f"node {name}: {n['packets']} packets processed"
                      + (f", {ct['flows']} flows live" if ct else ""))
        table.add_column("stage")
        table.add_column("reason")
        table.add_column("packets", justify="right")
        for s, r in zip(*np.nonzero(n["counters"])):
            table.add_row(Stage(int(s)).label, Reason(int(r)).label, str(int(n["counters"][s, r])))
        console.print(table)
        if n["services"]:
            console.print(service_table(n["services"]))
    console.print(f"underlay: {result.transits} packets crossed between nodes, "
                  f"{result.hop_limited} dropped at the hop limit ({MAX_HOPS})")
