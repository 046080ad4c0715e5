# Cluster DNS in the data plane: the compiled zone (DnsTable) and the stage that
# answers queries in place. kdp/_fast/dns.pyx has the contract; kdp/control/dns.py
# builds the zone and kdp/control/dnswire.py the blob this table is made from.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from kdp._fast.packet cimport Batch

cdef enum:
    DNS_HEADER = 12
    DNS_MAX_NAME = 255          # wire length of a name, root label included
    DNS_MAX_LABELS = 128
    DNS_MIN_UDP = 512           # answer size without EDNS (RFC 1035 4.2.1)
    DNS_MAX_UDP = 1232          # largest UDP answer kdp sends, whatever EDNS offers (DNS flag day 2020)
    DNS_MAX_LISTEN = 16         # listen addresses per family
    DNS_FRONT_ROOM = 64         # headroom an answer written in place leaves free (a later encap)
    DNS_MAX_L2 = 64             # link headers longer than this: the query is passed on
    DNS_SOA_LEN = 54            # the runtime SOA record (owner and names compressed)

# What became of a packet addressed to a DNS listen address and port: one per
# such packet (counters[outcome]); DNS_C_TRUNCATED counts answers sent with TC
# on top. The log names them (kdp/control/dns.py OUTCOMES).
cpdef enum DnsOutcome:
    DNS_NONE = 0                # not for the DNS stage
    # answered in place: verdict V_REPLY, reason R_DNS_ANSWERED / R_DNS_FORMERR
    DNS_ANSWER = 1              # NOERROR with records
    DNS_NODATA = 2              # NOERROR, no answer records, SOA in authority
    DNS_NXDOMAIN = 3
    DNS_FORMERR = 4             # malformed question or additional section
    DNS_BADVERS = 5             # EDNS version other than 0
    # dropped: R_DNS_MALFORMED
    DNS_SHORT = 6               # shorter than the 12-byte header
    DNS_RESPONSE = 7            # QR set: a response sent to the server's address
    # passed on untouched to conntrack / the DNS Service's backends
    DNS_PASS_OUT_OF_ZONE = 8    # not in the cluster zone, not a reverse name kdp knows
    DNS_PASS_REVERSE = 9        # a reverse name kdp has no PTR for (CoreDNS: fallthrough)
    DNS_PASS_TCP = 10
    DNS_PASS_OPCODE = 11        # opcode other than QUERY
    DNS_PASS_CLASS = 12         # class other than IN
    DNS_PASS_XFR = 13           # AXFR / IXFR
    DNS_PASS_EXTERNAL = 14      # A/AAAA of an ExternalName outside the zone: needs a recursive server
    DNS_PASS_SECTIONS = 15      # answer/authority records, or additional records other than OPT (TSIG...)
    DNS_PASS_FRAGMENT = 16
    DNS_PASS_CUT = 17           # the capture cut the datagram short
    DNS_PASS_OTHER = 18         # SRV of a pod name; a link header longer than DNS_MAX_L2
    N_DNS_OUTCOMES = 19
    DNS_C_TRUNCATED = 19        # counter index: answers sent with TC set
    N_DNS_COUNTERS = 20

# Per packet of a batch, for the verdict log (outcome DNS_NONE: not a DNS packet).
ctypedef struct dns_note_t:
    uint8_t outcome
    uint8_t rcode               # of the answer (outcomes 1..5)
    uint16_t qtype
    uint8_t name_len            # 0: no name (header-only FORMERR, short, ...)
    uint8_t tc
    uint8_t _pad[2]
    uint8_t name[256]           # the question name, wire form, lowercased

# Per packet of a batch: the parsed query between the stage's passes.
ctypedef struct dns_q_t:
    uint64_t hash
    uint32_t msg                # the DNS message: absolute offset in the batch buffer
    uint32_t rec                # record in the table's blob, 0: none
    uint16_t msg_len            # UDP payload length
    uint16_t qtype
    uint16_t edns_size          # the client's EDNS payload size, 0: no OPT
    uint8_t edns_do
    uint8_t state               # parse outcome / pending
    uint8_t name_len
    uint8_t n_labels
    uint8_t zone                # Z_* in dns.pyx
    uint8_t has_opt             # the query has an OPT record
    uint8_t labels[128]         # offset of each label in the name

cdef class DnsTable:
    cdef readonly object blob           # numpy uint8: name records and answers (dnswire.py)
    cdef const uint8_t* b
    cdef object slots_arr
    cdef uint64_t* slots                # (hash tag << 32) | record offset / 8; 0: empty
    cdef uint64_t mask
    cdef readonly Py_ssize_t n_names
    cdef readonly object delta          # numpy uint8: records changed since the blob (updates)
    cdef const uint8_t* d
    cdef object dslots_arr
    cdef uint64_t* dslots
    cdef uint64_t dmask
    cdef readonly Py_ssize_t n_delta
    cdef readonly uint32_t serial
    cdef uint32_t listen4[16]
    cdef uint16_t lport4[16]
    cdef uint8_t listen6[16][16]
    cdef uint16_t lport6[16]
    cdef int n4, n6
    cdef uint8_t zone[256]              # the cluster zone, wire form, lowercase
    cdef readonly int zone_len
    cdef int zone_labels
    cdef uint8_t soa[54]                # the runtime SOA record, pointers patched per answer
    cdef readonly uint32_t ttl
    cdef readonly bint pods_insecure

    cdef uint32_t find(self, const uint8_t* key, uint32_t n, uint64_t h) noexcept nogil

cdef void dns_batch(DnsTable t, Batch b, uint64_t* ctr, dns_note_t* notes,
                    dns_q_t* qs) noexcept nogil

# The verdict log's "dns" value of a packet: {"name", "type", "rcode", "outcome"} or
# null; writes at most DNS_NOTE_JSON_MAX bytes (NUL included), returns the length.
cdef enum:
    DNS_NOTE_JSON_MAX = 1400
cdef int dns_note_json(const dns_note_t* n, char* out) noexcept nogil
