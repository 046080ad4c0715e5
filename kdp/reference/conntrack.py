"""Connection tracking as plain Python: the semantics kdp's conntrack implements.

Slow and obvious on purpose: a dict from original tuples to flows, a list for
the order of non-assured flows. Tests drive it and kdp/_fast/conntrack.pyx with
the same packets and compare every packet's outcome and every live flow
(tests/test_conntrack_reference.py). Each batch holds one packet here (the
batch-epoch rules of the fast table never apply).

What it models, from Linux's nf_conntrack (net/netfilter/nf_conntrack_core.c,
nf_conntrack_proto_tcp.c, _udp.c, _icmp.c) without sequence-number tracking:

Tuples and lookup
    A flow has an original tuple (its first packet) and, without NAT, the
    inverse as its reply tuple; a packet matching either belongs to the flow
    in that direction. ICMP echo tuples are (identifier, echo type); the reply
    direction carries the other echo type. A flow whose timeout has passed
    since its last accepted packet is gone: a packet that meets it opens a new
    one.

Opening a flow
    TCP: a SYN (SYN_SENT), or an ACK without SYN/FIN/RST (ESTABLISHED, the
    mid-stream pickup of nf_conntrack_tcp_loose=1); anything else is INVALID
    and opens nothing. UDP: any packet. ICMP: an echo request only.

TCP (nf_conntrack_tcp_packet)
    - The state moves by Linux's transition table (``TCP_TRANSITIONS``) on the
      packet's kind: RST, else SYN or SYN/ACK, else FIN, else ACK, else none.
      Flag sets no stack sends (tcp_valid_flags) fit no state. A packet that
      fits no state is INVALID: nothing changes.
    - Ignored packets ("IG": a SYN mid-connection, a late SYN/ACK, an ACK to a
      half-open SYN) are accepted but neither counted nor refresh the flow.
    - A SYN on a TIME_WAIT or CLOSE flow (either side's SYN in TIME_WAIT, the
      opener's in CLOSE) is a new connection when a FIN moved the flow to
      FIN_WAIT at some point or the last accepted packet from the SYN's side was
      a RST: the flow is deleted and the packet opens a new one, its sender
      being the opener. Otherwise (the peer reset the connection) the SYN is
      ignored.
    - A SYN/ACK that answers an ignored SYN from the other side resynchronises
      the flow to SYN_RECV (Linux also checks the acknowledgment number).
    - Simultaneous open: after SYN_SENT2, the reply ACK in SYN_RECV completes
      the handshake (ESTABLISHED).
    - RFC 5961: after a SYN ignored in LAST_ACK, the reply ACK that follows is a
      challenge ACK: ignored, the flow stays in LAST_ACK.
    - A RST before any reply ends the flow (after this packet).
    - Assured: on an ACK that takes a flow from SYN_RECV or ESTABLISHED to
      ESTABLISHED once a reply has been seen (before this packet).
    - Timeout by state (nf_conntrack_tcp_timeout_*); an ESTABLISHED flow that is
      not assured (a pickup) has the smaller of the established and the
      unacknowledged timeouts.
UDP
    A packet after the first reply makes a stream (udp_timeout_stream) and
    assures the flow. Linux >= 5.16 also waits until 2 s after the flow was
    created (kdp does not: a known difference).
ICMP echo
    Never assured; one timeout.

A full table
    A new flow first evicts the oldest non-assured flow (creation order), live
    or not; with none, every expired flow is reclaimed (kdp's bounded sweep
    covers these small tables whole); with none of those either, the new flow
    is refused (CT_TABLE_FULL). A flow ended by a RST before any reply keeps its
    place until then (it is non-assured: early drop takes it first).
"""
from kdp.reasons import CtState, Reason

S = 1_000_000_000   # ns per second

# nf_conntrack's defaults (seconds); the sysctl names without "nf_conntrack_"
TIMEOUTS = {
    "tcp_timeout_syn_sent": 120, "tcp_timeout_syn_recv": 60, "tcp_timeout_established": 432000,
    "tcp_timeout_fin_wait": 120, "tcp_timeout_close_wait": 60, "tcp_timeout_last_ack": 30,
    "tcp_timeout_time_wait": 120, "tcp_timeout_close": 10, "tcp_timeout_unacknowledged": 300,
    "udp_timeout": 30, "udp_timeout_stream": 120, "icmp_timeout": 30,
}

STATES = {"NO": "NONE", "SS": "SYN_SENT", "SR": "SYN_RECV", "ES": "ESTABLISHED", "FW": "FIN_WAIT",
          "CW": "CLOSE_WAIT", "LA": "LAST_ACK", "TW": "TIME_WAIT", "CL": "CLOSE", "S2": "SYN_SENT2"}
STATE_TIMEOUT = {"SS": "tcp_timeout_syn_sent", "S2": "tcp_timeout_syn_sent", "SR": "tcp_timeout_syn_recv",
                 "ES": "tcp_timeout_established", "FW": "tcp_timeout_fin_wait",
                 "CW": "tcp_timeout_close_wait", "LA": "tcp_timeout_last_ack",
                 "TW": "tcp_timeout_time_wait", "CL": "tcp_timeout_close"}

# TCP_TRANSITIONS[state][(side, kind)] -> new state; side "o" (opener) or "r"
# (reply); kinds syn, synack, fin, ack, rst, none; "IG" ignored; missing: invalid.
TCP_TRANSITIONS = {s: {} for s in STATES}


def _set(states, side, kind, new):
    for s in states.split():
        TCP_TRANSITIONS[s][(side, kind)] = new


_ALL = "SS SR ES FW CW LA TW CL S2"
# SYN from the opener (re)starts a handshake; mid-connection it is ignored
_set("NO SS TW CL", "o", "syn", "SS")
_set("SR ES FW CW LA", "o", "syn", "IG")
_set("S2", "o", "syn", "S2")
# the responder's SYN: simultaneous open, or a reopen from TIME_WAIT
_set("SS S2", "r", "syn", "S2")
_set("TW", "r", "syn", "SS")
# SYN/ACK: from the responder after a SYN; from the opener only in simultaneous open
_set("SS S2", "r", "synack", "SR")
_set("SR ES FW CW LA TW CL", "r", "synack", "IG")
_set("SR S2", "o", "synack", "SR")
# FIN and RST: both sides alike
for side in "or":
    _set("SR ES", side, "fin", "FW")
    _set("FW CW LA", side, "fin", "LA")
    _set("TW", side, "fin", "TW")
    _set("CL", side, "fin", "CL")
    _set(_ALL, side, "rst", "CL")
# ACK
_set("NO SR ES", "o", "ack", "ES")
_set("SR", "r", "ack", "SR")
_set("ES", "r", "ack", "ES")
_set("SS S2", "r", "ack", "IG")
for side in "or":
    _set("FW CW", side, "ack", "CW")
    _set("LA TW", side, "ack", "TW")
    _set("CL", side, "ack", "CL")

# flag sets a TCP stack sends (Linux tcp_valid_flags; PSH, ECE and CWR do not matter)
VALID_FLAGS = {frozenset(f) for f in ("S", "SU", "SA", "R", "RA", "FA", "FAU", "A", "AU")}


def tcp_kind(flags):
    """The packet kind of a flags string ("SA", "FPA", ...); "bad" when no stack sends it."""
    f = frozenset(flags) - frozenset("PEC")
    if f not in VALID_FLAGS:
        return "bad"
    if "R" in f:
        return "rst"
    if "S" in f:
        return "synack" if "A" in f else "syn"
    if "F" in f:
        return "fin"
    return "ack"


class Flow:
    def __init__(self, orig, state, now):
        self.orig = orig
        self.proto = orig[0]
        self.state = state          # TCP state code ("SS", ...); "" for other protocols
        self.assured = False
        self.seen_reply = False
        self.stream = False
        self.last = now
        self.packets = [1, 0]
        self.dying = False          # ended by a RST before any reply
        # TCP: Linux's last_index/last_dir and the CLOSE_INIT, SIMULTANEOUS_OPEN
        # and CHALLENGE_ACK flags
        self.last_packet = None     # (side, kind)
        self.close_init = False
        self.simopen = False
        self.challenge = False


class ConntrackModel:
    def __init__(self, capacity, timeouts=None, tcp_loose=True):
        self.capacity = capacity
        self.timeouts = dict(TIMEOUTS, **(timeouts or {}))
        self.tcp_loose = tcp_loose
        self.flows = {}             # original tuple -> Flow (the flows a packet can find)
        self.ended = []             # flows ended by a RST, holding their place until reclaimed
        self.unassured = []         # non-assured flows (both kinds), oldest first

    # -- time
    def timeout_s(self, f):
        t = self.timeouts
        if f.proto == 6:
            if f.dying:
                return 0
            if f.state == "ES" and not f.assured:
                return min(t["tcp_timeout_established"], t["tcp_timeout_unacknowledged"])
            return t[STATE_TIMEOUT[f.state]]
        if f.proto == 17:
            return t["udp_timeout_stream" if f.stream else "udp_timeout"]
        return t["icmp_timeout"]

    def expired(self, f, now):
        return now - f.last >= self.timeout_s(f) * S

    # -- the table
    def _remove(self, f):
        if f.dying:
            self.ended.remove(f)
        else:
            del self.flows[f.orig]
        if f in self.unassured:
            self.unassured.remove(f)

    def _assure(self, f):
        f.assured = True
        self.unassured.remove(f)

    @staticmethod
    def _reply_of(t):
        proto, src, dst, sport, dport = t
        if proto == 1:                          # echo: same identifier, the other type
            return (proto, dst, src, sport, {8: 0, 0: 8}[dport])
        return (proto, dst, src, dport, sport)

    def _find(self, t):
        if t in self.flows:
            return self.flows[t], "o"
        f = self.flows.get(self._reply_of(t))
        return (f, "r") if f is not None else (None, None)

    # -- packets
    def packet(self, proto, src, dst, sport, dport, flags, now):
        """One packet (ICMP: sport = identifier, dport = echo type); returns
        (CtState, None) or (None, the drop Reason)."""
        t = (proto, src, dst, sport, dport)
        f, side = self._find(t)
        if f is not None and self.expired(f, now):
            self._remove(f)
            f = None
        if f is not None:
            done = CtState.REPLY if side == "r" else CtState.ESTABLISHED
            if proto == 6:
                step = self._tcp_step(f, side, tcp_kind(flags))
                if step == "invalid":
                    return CtState.INVALID, None
                if step == "ignored":
                    return done, None
                if step == "reopen":
                    self._remove(f)
                else:
                    f.last = now
                    f.packets[side == "r"] += 1
                    if step == "end":
                        del self.flows[f.orig]
                        f.dying = True
                        self.ended.append(f)
                    return done, None
            else:
                if f.seen_reply:
                    f.stream = True
                    if proto != 1 and not f.assured:
                        self._assure(f)
                if side == "r":
                    f.seen_reply = True
                f.last = now
                f.packets[side == "r"] += 1
                return done, None
        return self._open(t, flags, now)

    def _tcp_step(self, f, side, kind):
        """The packet's effect on TCP flow f: "ok", "ignored", "invalid", "reopen", "end"."""
        other = "r" if side == "o" else "o"
        old = f.state
        new = TCP_TRANSITIONS[old].get((side, kind), "IV") if kind != "bad" else "IV"
        if new == "IV":
            return "invalid"
        if new == "SS" and old in ("TW", "CL"):
            if f.close_init or f.last_packet == (side, "rst"):
                return "reopen"
            new = "IG"
        elif new == "TW" and old == "LA" and kind == "ack" and f.challenge and f.last_packet == (other, "syn"):
            f.challenge = False                 # a challenge ACK acknowledges nothing
            f.seen_reply |= side == "r"
            return "ignored"
        elif new == "S2":
            f.simopen = True
        elif new == "SR" and side == "r" and kind == "ack" and f.simopen:
            new = "ES"
        if new == "IG":
            if kind == "synack" and f.last_packet == (other, "syn"):
                old, new = "SS", "SR"           # answers the ignored SYN: resynchronise
                f.close_init = f.challenge = False
            else:
                if kind == "syn" and side == "o":
                    f.simopen = False
                    f.challenge = old == "LA"
                f.last_packet = (side, kind)
                f.seen_reply |= side == "r"
                return "ignored"
        f.last_packet = (side, kind)
        f.state = new
        if new == "FW" and old != "FW":
            f.close_init = True
        if not f.seen_reply:
            if kind == "rst":
                return "end"
        elif new == "ES" and old in ("SR", "ES") and not f.assured:
            self._assure(f)
        f.seen_reply |= side == "r"
        return "ok"

    def _open(self, t, flags, now):
        proto = t[0]
        state = ""
        if proto == 6:
            kind = tcp_kind(flags)
            if kind == "syn":
                state = "SS"
            elif kind == "ack" and self.tcp_loose:
                state = "ES"
            else:
                return CtState.INVALID, None
        elif proto == 1 and t[4] != 8:
            return CtState.INVALID, None
        if len(self.flows) + len(self.ended) >= self.capacity:
            if self.unassured:
                self._remove(self.unassured[0])
            else:
                gone = [f for f in self.flows.values() if self.expired(f, now)]
                if not gone:
                    return None, Reason.CT_TABLE_FULL
                for f in gone:
                    self._remove(f)
        f = Flow(t, state, now)
        if proto == 6:
            f.last_packet = ("o", tcp_kind(flags))
        self.flows[t] = f
        self.unassured.append(f)
        return CtState.NEW, None

    def live(self, now):
        """{original tuple: (TCP state name or "", assured, (packets, reply packets))}
        of the flows whose timeout has not passed."""
        return {o: ((STATES[f.state] if f.proto == 6 else ""), f.assured, tuple(f.packets))
                for o, f in self.flows.items() if not self.expired(f, now)}
