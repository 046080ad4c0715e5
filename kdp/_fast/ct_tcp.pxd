# The TCP state machine of a tracked flow (header only: it runs inline in the
# conntrack stage, once per TCP packet of a known flow).
#
# Transitions are Linux's (nf_conntrack_proto_tcp.c, tcp_conntracks), by the
# packet's direction and kind (the flags as get_conntrack_index classifies
# them: RST, else SYN or SYN/ACK, else FIN, else ACK, else none; flag sets no
# stack sends -- tcp_valid_flags -- are "bad": invalid in every state). Around
# the table, ct_tcp_step applies the rules Linux's nf_conntrack_tcp_packet adds
# (reopen, ignore, resynchronisation, simultaneous open, challenge ACK, RST
# before a reply, assured); kdp/reference/conntrack.py states them in plain
# Python. No sequence numbers: tcp_in_window is not modelled.

from libc.stdint cimport uint8_t, uint32_t

from kdp._fast.ct_table cimport (
    ct_table_t, ct_flow_t, ct_assure,
    TCP_SYN_SENT, TCP_SYN_RECV, TCP_ESTABLISHED, TCP_FIN_WAIT, TCP_LAST_ACK, TCP_TIME_WAIT,
    TCP_SYN_SENT2, FL_SEEN_REPLY, FL_ASSURED,
    TT_LAST_KIND, TT_LAST_REPLY, TT_CLOSE_INIT, TT_SIMOPEN, TT_CHALLENGE,
)

cdef extern from *:
    """
    /* packet kinds (Linux's enum tcp_bit_set, plus "bad") */
    enum { KDP_TK_SYN, KDP_TK_SYNACK, KDP_TK_FIN, KDP_TK_ACK, KDP_TK_RST, KDP_TK_NONE, KDP_TK_BAD,
           KDP_N_TCP_KINDS };
    #define KDP_TS_INVALID 20   /* Linux's sIV */
    #define KDP_TS_IGNORE 21    /* Linux's sIG */

    /* The state after a packet: [direction][kind][state], states in TcpState
       order, as Linux's tcp_conntracks. */
    #define sNO 0
    #define sSS 1
    #define sSR 2
    #define sES 3
    #define sFW 4
    #define sCW 5
    #define sLA 6
    #define sTW 7
    #define sCL 8
    #define sS2 9
    #define sIV KDP_TS_INVALID
    #define sIG KDP_TS_IGNORE
    static const uint8_t kdp_ct_tcp_table[2][KDP_N_TCP_KINDS][10] = {
        {   /* original direction      sNO  sSS  sSR  sES  sFW  sCW  sLA  sTW  sCL  sS2 */
            /* syn    */            { sSS, sSS, sIG, sIG, sIG, sIG, sIG, sSS, sSS, sS2 },
            /* synack */            { sIV, sIV, sSR, sIV, sIV, sIV, sIV, sIV, sIV, sSR },
            /* fin    */            { sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV },
            /* ack    */            { sES, sIV, sES, sES, sCW, sCW, sTW, sTW, sCL, sIV },
            /* rst    */            { sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL },
            /* none   */            { sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV },
            /* bad    */            { sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV },
        },
        {   /* reply direction         sNO  sSS  sSR  sES  sFW  sCW  sLA  sTW  sCL  sS2 */
            /* syn    */            { sIV, sS2, sIV, sIV, sIV, sIV, sIV, sSS, sIV, sS2 },
            /* synack */            { sIV, sSR, sIG, sIG, sIG, sIG, sIG, sIG, sIG, sSR },
            /* fin    */            { sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV },
            /* ack    */            { sIV, sIG, sSR, sES, sCW, sCW, sTW, sTW, sCL, sIG },
            /* rst    */            { sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL },
            /* none   */            { sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV },
            /* bad    */            { sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV },
        },
    };
    #undef sNO
    #undef sSS
    #undef sSR
    #undef sES
    #undef sFW
    #undef sCW
    #undef sLA
    #undef sTW
    #undef sCL
    #undef sS2
    #undef sIV
    #undef sIG

    static inline uint8_t kdp_ct_tcp_next(int dir, int kind, int state) {
        return kdp_ct_tcp_table[dir][kind][state];
    }

    /* The kind of a packet from its flags (FIN 1, SYN 2, RST 4, ACK 16, URG 32;
       PSH, ECE and CWR do not matter): only the sets a TCP stack sends are valid
       (Linux's tcp_valid_flags). The compiler turns the switch into a table. */
    static inline int kdp_ct_tcp_kind(uint8_t flags) {
        switch (flags & 0x37) {
        case 0x02: case 0x22: return KDP_TK_SYN;        /* SYN, SYN|URG */
        case 0x12: return KDP_TK_SYNACK;                /* SYN|ACK */
        case 0x04: case 0x14: return KDP_TK_RST;        /* RST, RST|ACK */
        case 0x11: case 0x31: return KDP_TK_FIN;        /* FIN|ACK, FIN|ACK|URG */
        case 0x10: case 0x30: return KDP_TK_ACK;        /* ACK, ACK|URG */
        default: return KDP_TK_BAD;
        }
    }
    """
    enum:
        TK_SYN "KDP_TK_SYN"
        TK_SYNACK "KDP_TK_SYNACK"
        TK_FIN "KDP_TK_FIN"
        TK_ACK "KDP_TK_ACK"
        TK_RST "KDP_TK_RST"
        TK_NONE "KDP_TK_NONE"
        TK_BAD "KDP_TK_BAD"
        N_TCP_KINDS "KDP_N_TCP_KINDS"
        TS_INVALID "KDP_TS_INVALID"
        TS_IGNORE "KDP_TS_IGNORE"
    uint8_t ct_tcp_next "kdp_ct_tcp_next"(int dir, int kind, int state) nogil
    int ct_tcp_kind "kdp_ct_tcp_kind"(uint8_t flags) nogil

# ct_tcp_step outcomes
cdef enum:
    TCP_STEP_OK = 0         # the state advanced: the caller counts and refreshes the flow
    TCP_STEP_IGNORED = 1    # accepted; no state change, not counted, not refreshed
    TCP_STEP_INVALID = 2    # fits no state: nothing changes
    TCP_STEP_REOPEN = 3     # a new connection on the tuple: the caller ends the flow, the packet opens one
    TCP_STEP_KILL = 4       # as OK, then the flow ends (a RST before any reply)


cdef inline void ct_tcp_note(ct_flow_t* f, int kind, int dir) noexcept nogil:
    """Remember the last accepted packet's kind and direction (Linux's last_index/last_dir)."""
    f.tcp = (f.tcp & ~(TT_LAST_KIND | TT_LAST_REPLY)) | <uint8_t>kind | <uint8_t>(dir << 3)


cdef inline int ct_tcp_step(ct_table_t* t, ct_flow_t* f, uint32_t fid, int dir,
                            uint8_t tcp_flags) noexcept nogil:
    """One TCP packet's effect on its flow, as nf_conntrack_proto_tcp.c decides it
    (without sequence numbers): a TCP_STEP_* outcome. OK: the state advanced (the
    caller counts and refreshes); IGNORED: accepted, no state change, not counted;
    INVALID: fits no state; REOPEN: the caller deletes the flow and the packet
    opens a new one; KILL: as OK, then the flow ends (a RST before any reply).
    Sets FL_SEEN_REPLY after the step (Linux sets it after its TCP handler)
    and assures the flow."""
    cdef int kind = ct_tcp_kind(tcp_flags)
    cdef uint8_t old = f.state
    cdef uint8_t new = ct_tcp_next(dir, kind, old)
    cdef int last
    if new == TCP_ESTABLISHED and old == TCP_ESTABLISHED:
        # the common case, data of an established connection: of the rules
        # below only assuring applies
        ct_tcp_note(f, kind, dir)
        if not (f.flags & FL_ASSURED):
            if f.flags & FL_SEEN_REPLY:
                ct_assure(t, f, fid)
            elif dir == 1:
                f.flags |= FL_SEEN_REPLY
        return TCP_STEP_OK
    if new == TS_INVALID:
        return TCP_STEP_INVALID
    last = f.tcp & (TT_LAST_KIND | TT_LAST_REPLY)
    if new == TCP_SYN_SENT and old >= TCP_TIME_WAIT:
        # a SYN on a closed tuple: a new connection when a FIN closed the old one
        # or this side reset it; otherwise (the peer's RST) the entry may be out
        # of sync with the ends, so the SYN is only let through
        if (f.tcp & TT_CLOSE_INIT) or last == (TK_RST | (dir << 3)):
            return TCP_STEP_REOPEN
        new = TS_IGNORE
    elif new == TCP_TIME_WAIT:
        if (old == TCP_LAST_ACK and kind == TK_ACK and (f.tcp & TT_CHALLENGE)
                and last == (TK_SYN | ((1 - dir) << 3))):
            # RFC 5961: the ACK answering a SYN ignored in LAST_ACK acks nothing
            f.tcp &= ~TT_CHALLENGE
            if dir == 1:
                f.flags |= FL_SEEN_REPLY
            return TCP_STEP_IGNORED
    elif new == TCP_SYN_SENT2:
        f.tcp |= TT_SIMOPEN
    elif new == TCP_SYN_RECV:
        if dir == 1 and kind == TK_ACK and (f.tcp & TT_SIMOPEN):
            new = TCP_ESTABLISHED       # the last ACK of a simultaneous open
    if new == TS_IGNORE:
        if kind == TK_SYNACK and last == (TK_SYN | ((1 - dir) << 3)):
            # a SYN/ACK answering a SYN ignored before: the ends are in sync with
            # each other, not with the entry; resynchronise (Linux also checks the
            # acknowledgment number, which kdp does not track)
            old = TCP_SYN_SENT
            new = TCP_SYN_RECV
            f.tcp &= ~(TT_CLOSE_INIT | TT_CHALLENGE)
        else:
            if kind == TK_SYN and dir == 0:
                f.tcp &= ~(TT_SIMOPEN | TT_CHALLENGE)
                if old == TCP_LAST_ACK:
                    f.tcp |= TT_CHALLENGE
            ct_tcp_note(f, kind, dir)
            if dir == 1:
                f.flags |= FL_SEEN_REPLY
            return TCP_STEP_IGNORED
    ct_tcp_note(f, kind, dir)
    f.state = new
    if new == TCP_FIN_WAIT and old != TCP_FIN_WAIT:
        f.tcp |= TT_CLOSE_INIT
    if not (f.flags & FL_SEEN_REPLY):
        if kind == TK_RST:
            return TCP_STEP_KILL
    elif new == TCP_ESTABLISHED and not (f.flags & FL_ASSURED) and (old == TCP_SYN_RECV
                                                                     or old == TCP_ESTABLISHED):
        ct_assure(t, f, fid)
    if dir == 1:
        f.flags |= FL_SEEN_REPLY
    return TCP_STEP_OK
