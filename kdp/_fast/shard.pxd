# Flow sharding (replay --workers N): which worker's conntrack a packet belongs to.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from kdp._fast.packet cimport Batch, pkt_meta_t
from kdp._fast.service cimport ServiceTables

cdef enum:
    N_VSHARDS = 64          # virtual shards: a key's low 6 bits
    SHARD_FIRST = 64        # not sharded: worker 0 processes it (non-IP, ND, portless, parse drops)
    SHARD_UNSAFE = 65       # cannot be sharded (an IP fragment): the replay falls back to one worker
    V_ELSEWHERE = 0xFE      # pkt_meta_t.verdict of a packet another worker processes (no stage touches it)

# Why a sharded replay had to start again on one worker (Pipeline.shard_unsafe bits).
cdef enum:
    U_FRAGMENT = 1          # an IP fragment (later fragments carry no ports)
    U_REPLY_SHARD = 2       # a flow whose reply tuple has another key than its first packet
    U_CLOCK = 4             # a packet older than an earlier batch's newest (conntrack's clock)
    U_AFFINITY = 8          # a new flow to a ClientIP-affinity Service whose entry no one worker owns
    U_EXTRA = 16            # kdp made IPv4 fragments or TCP segments (written after their batch)

cdef class ShardPlan:
    cdef readonly ServiceTables services    # None: no Services (every port pair is "neither")
    cdef object ep_arr
    cdef const uint64_t* ep                 # the endpoints' tags (open addressing, 0 empty)
    cdef uint64_t ep_mask
    cdef uint8_t ports[8192]                # bit per port: some frontend or endpoint has it
    cdef readonly int workers
    cdef readonly bint affinity_split       # affinity buckets hold one key's clients (>= 256 slots)
    cdef uint8_t owner[64]                  # virtual shard -> worker

cdef uint8_t shard_key(ShardPlan s, uint8_t ver, uint8_t proto, uint32_t s4, const uint8_t* s6,
                       uint32_t d4, const uint8_t* d6, uint16_t sport, uint16_t dport) noexcept nogil
cdef uint8_t shard_packet(ShardPlan s, const pkt_meta_t* p) noexcept nogil
cdef uint8_t shard_one(ShardPlan plan, const pkt_meta_t* p, uint8_t* vshard, uint32_t* unsafe) noexcept nogil
cdef Py_ssize_t start_view(Batch view, Batch base, int me, int workers, const uint8_t* who,
                           const uint8_t* vshards, uint32_t* index, uint8_t* view_vshards) noexcept nogil
