"""Conntrack against a plain Python model: random packet sequences, same outcomes.

The model below is slow and obvious: a dict from tuples to flows, a list for the
FIFO of non-assured flows, TCP transitions written out per state (from the
semantics nf_conntrack documents: who may send SYN, SYN/ACK, FIN, ACK, RST in
which state). Hypothesis drives both with random TCP/UDP packets over a few
tuples, in both directions, with random time steps (timeouts fire) and tiny
tables (early drop and refusal happen), and compares every packet's ct_state
and verdict and, after each packet, every live flow.
"""
from hypothesis import given, settings, strategies as st
from scapy.all import IP, TCP, UDP

from kdp._fast.conntrack import Conntrack, TIMEOUT_DEFAULTS
from kdp.reasons import CtState, Reason, Verdict

from test_conntrack import S, eth, run

# -- the model's TCP transitions: state -> {(direction, kind): new state}
# kinds: syn, synack, fin, ack, rst, none; "IV" invalid, "IG" ignored
_ALL = ("SS", "SR", "ES", "FW", "CW", "LA", "TW", "CL", "S2")
TCP_MODEL = {s: {} for s in ("NO",) + _ALL}


def _set(states, d, kind, new):
    for s in states.split():
        TCP_MODEL[s][(d, kind)] = new


# a SYN from the opener (re)starts a handshake; mid-connection it is ignored
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
# FIN: both directions alike
for d in "or":
    _set("SR ES", d, "fin", "FW")
    _set("FW CW LA", d, "fin", "LA")
    _set("TW", d, "fin", "TW")
    _set("CL", d, "fin", "CL")
# ACK
_set("NO SR ES", "o", "ack", "ES")
_set("SR", "r", "ack", "SR")
_set("ES", "r", "ack", "ES")
_set("SS S2", "r", "ack", "IG")
for d in "or":
    _set("FW CW", d, "ack", "CW")
    _set("LA TW", d, "ack", "TW")
    _set("CL", d, "ack", "CL")
    _set(" ".join(_ALL), d, "rst", "CL")
NAMES = {"NO": "NONE", "SS": "SYN_SENT", "SR": "SYN_RECV", "ES": "ESTABLISHED", "FW": "FIN_WAIT",
         "CW": "CLOSE_WAIT", "LA": "LAST_ACK", "TW": "TIME_WAIT", "CL": "CLOSE", "S2": "SYN_SENT2"}
TCP_TIMEOUT = {"SS": "tcp_timeout_syn_sent", "S2": "tcp_timeout_syn_sent", "SR": "tcp_timeout_syn_recv",
               "ES": "tcp_timeout_established", "FW": "tcp_timeout_fin_wait",
               "CW": "tcp_timeout_close_wait", "LA": "tcp_timeout_last_ack",
               "TW": "tcp_timeout_time_wait", "CL": "tcp_timeout_close"}
VALID_FLAGS = {"S", "SU", "SA", "R", "RA", "FA", "FAU", "A", "AU"}


def kind_of(flags):
    if "R" in flags:
        return "rst"
    if "S" in flags:
        return "synack" if "A" in flags else "syn"
    if "F" in flags:
        return "fin"
    return "ack" if "A" in flags else "none"


class Model:
    def __init__(self, cap):
        self.cap = cap
        self.flows = {}          # orig tuple -> dict
        self.fifo = []           # orig tuples of non-assured flows, oldest first

    def timeout(self, f):
        if f["proto"] == 6:
            return TIMEOUT_DEFAULTS[TCP_TIMEOUT[f["state"]]]
        return TIMEOUT_DEFAULTS["udp_timeout_stream" if f["stream"] else "udp_timeout"]

    def expired(self, f, now):
        return now - f["last"] >= self.timeout(f) * S

    def delete(self, o):
        del self.flows[o]
        if o in self.fifo:
            self.fifo.remove(o)

    def find(self, t):
        if t in self.flows:
            return t, 0
        inv = (t[0], t[2], t[1], t[4], t[3])
        if inv in self.flows:
            return inv, 1
        return None, None

    def packet(self, proto, src, dst, sport, dport, flags, now):
        """Returns (ct_state, verdict reason or None)."""
        t = (proto, src, dst, sport, dport)
        o, d = self.find(t)
        if o is not None:
            f = self.flows[o]
            if self.expired(f, now):
                self.delete(o)
                o = None
        if o is not None:
            if proto == 6:
                kind = kind_of(flags)
                new = TCP_MODEL[f["state"]].get(("or"[d], kind), "IV") if flags in VALID_FLAGS else "IV"
                if new == "IV":
                    return CtState.INVALID, None
                if new == "SS" and d == 0 and f["state"] in ("TW", "CL"):
                    self.delete(o)           # reopened: a new flow below
                    o = None
                elif new != "IG":
                    f["state"] = new
                    if d == 1:
                        f["seen_reply"] = True
                    if new == "ES" and f["seen_reply"] and not f["assured"]:
                        f["assured"] = True
                        self.fifo.remove(o)
                    f["last"] = now
            else:
                if d == 1:
                    if f["seen_reply"]:
                        f["stream"] = True
                    else:
                        f["seen_reply"] = True
                        f["assured"] = True
                        self.fifo.remove(o)
                elif f["seen_reply"]:
                    f["stream"] = True
                f["last"] = now
            if o is not None:
                f["pkts"][d] += 1
                return (CtState.REPLY if d else CtState.ESTABLISHED), None
        # a new flow
        state = "NO"
        if proto == 6:
            if flags in ("S", "SU"):
                state = "SS"
            elif flags in ("A", "AU"):
                state = "ES"
            else:
                return CtState.INVALID, None
        if len(self.flows) >= self.cap:
            if self.fifo:
                self.delete(self.fifo[0])
            else:
                gone = [k for k, f in self.flows.items() if self.expired(f, now)]
                if not gone:
                    return None, Reason.CT_TABLE_FULL
                self.delete(gone[0])
        self.flows[t] = {"proto": proto, "state": state, "assured": False, "seen_reply": False,
                         "stream": False, "last": now, "pkts": [1, 0]}
        self.fifo.append(t)
        return CtState.NEW, None

    def live(self, now):
        return {o: ((NAMES[f["state"]] if o[0] == 6 else ""), f["assured"], tuple(f["pkts"]))
                for o, f in self.flows.items() if not self.expired(f, now)}


ENDS = [("10.0.0.1", 1000), ("10.0.0.2", 1000)]
SERVER = ("10.0.9.9", 80)
# what each side plausibly sends (so handshakes and teardowns happen), plus junk
CLIENT_FLAGS = ["S", "S", "A", "PA", "FA", "R", "SA", "", "SF", "AU"]
SERVER_FLAGS = ["SA", "SA", "A", "PA", "FA", "RA", "S", "R", ""]
# seconds since the previous packet: mostly none, some exactly at timeouts
STEPS = [0, 0, 0, 0, 1, 10, 29, 30, 60, 119, 120, 125]

packet_st = st.tuples(
    st.sampled_from([6, 6, 6, 17]),
    st.integers(0, len(ENDS) - 1),
    st.booleans(),                                  # from the server
    st.integers(0, 99),                             # flags choice
    st.sampled_from(STEPS),
)
# scripted exchanges (direction from the server?, flags), so that whole handshakes,
# teardowns and simultaneous opens occur often, interleaved with random packets
SCRIPTS = [
    [(False, "S"), (True, "SA"), (False, "A")],
    [(False, "FA"), (True, "A"), (True, "FA"), (False, "A")],
    [(True, "FA"), (False, "A"), (False, "FA"), (True, "A")],
    [(False, "S"), (True, "S"), (False, "SA"), (True, "SA"), (False, "A"), (True, "A")],
    [(False, "PA"), (True, "PA")],
    [(True, "RA")],
]


@st.composite
def sequences(draw):
    out = []
    for _ in range(draw(st.integers(1, 12))):
        if draw(st.booleans()):
            out.append(draw(packet_st))
        else:
            e = draw(st.integers(0, len(ENDS) - 1))
            for back, flags in draw(st.sampled_from(SCRIPTS)):
                out.append((6, e, back, flags, draw(st.sampled_from(STEPS))))
    return out


@settings(max_examples=200, deadline=None)
@given(cap=st.integers(1, 4), packets=sequences())
def test_conntrack_matches_the_plain_model_on_random_packet_sequences(cap, packets):
    ct = Conntrack(cap)
    model = Model(cap)
    now = 1000 * S
    for proto, e, back, fi, dt in packets:   # fi: a flags choice, or the flags of a script
        if isinstance(fi, int):
            flags = SERVER_FLAGS[fi % len(SERVER_FLAGS)] if back else CLIENT_FLAGS[fi % len(CLIENT_FLAGS)]
        else:
            flags = fi
        now += dt * S
        (c, cp), (s, sp) = ENDS[e], SERVER
        if back:
            (c, cp), (s, sp) = (s, sp), (c, cp)
        l4 = TCP(sport=cp, dport=sp, flags=flags) if proto == 6 else UDP(sport=cp, dport=sp)
        b = run(ct, [eth() / IP(src=c, dst=s) / l4], now_ns=now)
        want_state, want_reason = model.packet(proto, c, s, cp, sp, flags.replace("P", ""), now)
        m = b.meta[0]
        if want_reason is not None:
            assert (m["verdict"], m["reason"]) == (Verdict.DROP, want_reason)
        else:
            assert m["verdict"] == Verdict.PENDING
            assert CtState(int(m["ct_state"])) == want_state, (proto, c, s, flags)
        got = {}
        for f in ct.flows():
            if now - f["last_ns"] < f["timeout_s"] * S:
                o = f["orig"]
                got[(f["proto"], o[0], o[1], o[2], o[3])] = (f["state"], f["assured"], f["packets"])
        assert got == model.live(now)
