"""Packet filters in tcpdump's language (`kdp replay --filter`, `kdp trace --filter`).

    flt = PacketFilter("tcp port 80 and not host 10.0.0.1")
    flt.apply(batch, drop_unmatched=True)     # before dp.process(batch)
    flt.match                                 # uint8 per packet: 1 where it matched

The expression is compiled by libpcap (`pcap_compile`, the compiler tcpdump uses) into
classic BPF for each link type a capture holds, and each packet runs libpcap's own
`bpf_filter` from compiled code, without the GIL (kdp/_fast/filter.pyx). So every word
of tcpdump's language works (host, src/dst, net, port, portrange, tcp/udp/sctp/icmp/ip6,
vlan, ether, proto, byte offsets, and/or/not, parentheses) and matches exactly what
`tcpdump -r FILE EXPR` matches, on the packet as it came in (before decapsulation and NAT).
libpcap is found at run time through ctypes (Debian: libpcap0.8, which tcpdump
needs too): no build-time dependency, no Python binding in between.

As `tcpdump -r` does, the expression is compiled with optimisation on and netmask 0
(`ip broadcast` needs a netmask and is refused).
"""
import ctypes
import ctypes.util

from kdp._fast.filter import BPF_INSN_DTYPE, BpfFilter
from kdp._fast.packet import LinkType
from kdp.errors import KdpError

import numpy as np

# LINKTYPE_ values in captures -> libpcap's DLT_ values, where they differ (pcap-common.c)
_DLT_OF_LINKTYPE = {int(LinkType.LT_RAW): 12}
# link types the pipeline parses: packets of others are dropped at rx and never match
PARSED_LINKTYPES = tuple(int(t) for t in LinkType)
SNAPLEN = 262144
# libpcap's message for an expression that can match nothing on a link type ("arp" on raw IP)
REJECTS_ALL = "expression rejects all packets"


class _BpfInsn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint32)]


class _BpfProgram(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(_BpfInsn))]


_lib = None


def _libpcap():
    """libpcap through ctypes (loaded once); KdpError saying what to install when absent."""
    global _lib
    if _lib is not None:
        return _lib
    names = [ctypes.util.find_library("pcap"), "libpcap.so.0.8", "libpcap.so.1", "libpcap.so"]
    for name in names:
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    else:
        raise KdpError("--filter needs libpcap (the library tcpdump uses; Debian/Ubuntu: "
                       "apt-get install libpcap0.8, Fedora: libpcap)")
    lib.pcap_open_dead.restype = ctypes.c_void_p
    lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.pcap_compile.restype = ctypes.c_int
    lib.pcap_compile.argtypes = [ctypes.c_void_p, ctypes.POINTER(_BpfProgram), ctypes.c_char_p,
                                 ctypes.c_int, ctypes.c_uint32]
    lib.pcap_geterr.restype = ctypes.c_char_p
    lib.pcap_geterr.argtypes = [ctypes.c_void_p]
    lib.pcap_freecode.argtypes = [ctypes.POINTER(_BpfProgram)]
    lib.pcap_close.argtypes = [ctypes.c_void_p]
    _lib = lib
    return lib


def compile_bpf(expression, linktype):
    """The BPF program (BPF_INSN_DTYPE array) of `expression` for captures of `linktype`
    (a LINKTYPE_ value); KdpError with libpcap's message when it does not compile."""
    lib = _libpcap()
    handle = lib.pcap_open_dead(_DLT_OF_LINKTYPE.get(int(linktype), int(linktype)), SNAPLEN)
    if not handle:
        raise KdpError(f"libpcap cannot compile filters for link type {linktype}")
    prog = _BpfProgram()
    try:
        if lib.pcap_compile(handle, ctypes.byref(prog), expression.encode(), 1, 0) != 0:
            message = lib.pcap_geterr(handle).decode(errors="replace")
            raise KdpError(f"--filter {expression!r}: {message}")
        try:
            raw = ctypes.string_at(prog.bf_insns, prog.bf_len * ctypes.sizeof(_BpfInsn))
            return np.frombuffer(raw, dtype=BPF_INSN_DTYPE).copy()
        finally:
            lib.pcap_freecode(ctypes.byref(prog))
    finally:
        lib.pcap_close(handle)


def _linktype_name(linktype):
    try:
        return LinkType(linktype).name[3:].lower()
    except ValueError:
        return str(linktype)


class PacketFilter:
    """A tcpdump expression, compiled per link type as captures show them, run on batches.

    Construction checks the expression (compiled for Ethernet, else for the other link
    types kdp parses) and raises KdpError with libpcap's message when it is wrong, or
    when it can match nothing on any of them. Packets of a link type the expression
    cannot match ("arp" on raw IP) simply do not match, where tcpdump, reading one link
    type, refuses the expression.
    `apply(batch, drop_unmatched, mark_trace)` tests every packet (see
    kdp/_fast/filter.pyx); `match` is the last batch's result, `matched` / `seen` the
    totals."""

    def __init__(self, expression):
        if not isinstance(expression, str) or not expression.strip():
            raise KdpError("--filter needs an expression (tcpdump's language, e.g. 'tcp port 80')")
        self.expression = expression
        errors = []
        for linktype in (int(LinkType.LT_ETHERNET),) + PARSED_LINKTYPES:
            try:
                compile_bpf(expression, linktype)
                break
            except KdpError as exc:
                errors.append(exc)
        else:
            raise errors[0]
        self._bpf = BpfFilter(ctypes.cast(_libpcap().bpf_filter, ctypes.c_void_p).value,
                              self._compile)

    def _compile(self, linktype):
        if linktype not in PARSED_LINKTYPES:
            return None             # dropped at rx (unsupported_linktype) whatever it holds
        try:
            return compile_bpf(self.expression, linktype)
        except KdpError as exc:
            if REJECTS_ALL in str(exc):
                return None         # valid for other link types, matches none of this one
            raise KdpError(f"{exc} (for the capture's {_linktype_name(linktype)} packets)") from None

    def apply(self, batch, drop_unmatched=False, mark_trace=False):
        """Test every packet of `batch` (as read, before processing): see the module
        docstring. Returns how many matched."""
        return self._bpf.apply(batch, drop_unmatched, mark_trace)

    @property
    def match(self):
        return self._bpf.match

    @property
    def matched(self):
        return int(self._bpf.matched)

    @property
    def seen(self):
        return int(self._bpf.seen)

    def __repr__(self):
        return f"PacketFilter({self.expression!r})"
