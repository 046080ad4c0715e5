"""Captures for the benchmarks, written with numpy (millions of packets in seconds).

One writer, `write_ipv4_pcap`: Ethernet/IPv4 frames of TCP or UDP with zero payload,
valid IPv4 and TCP checksums (UDP checksum 0, which IPv4 allows), as a classic pcap with
microsecond timestamps. Every argument is one value per packet.
"""
from __future__ import annotations

import numpy as np

T0 = 1_700_000_000          # first timestamp, seconds
_STEP = 131072              # packets formatted at once (bounds the scratch memory)
_HDR = 16 + 14 + 20 + 20    # record header + Ethernet + IPv4 + TCP (UDP uses 8 of the 20)


def _be(cols: np.ndarray, start: int, values, width: int) -> None:
    """Write `values` big-endian into byte columns [start, start+width) of cols."""
    v = np.asarray(values, dtype=np.uint64)
    for k in range(width):
        cols[:, start + k] = (v >> np.uint64(8 * (width - 1 - k))) & np.uint64(0xFF)


def _le32(cols: np.ndarray, start: int, values) -> None:
    v = np.asarray(values, dtype=np.uint64)
    for k in range(4):
        cols[:, start + k] = (v >> np.uint64(8 * k)) & np.uint64(0xFF)


def _fold(s: np.ndarray) -> np.ndarray:
    s = s.astype(np.uint64)
    for _ in range(3):
        s = (s & np.uint64(0xFFFF)) + (s >> np.uint64(16))
    return s


def _words(cols: np.ndarray, start: int, n: int) -> np.ndarray:
    """Sum of n/2 big-endian 16-bit words of byte columns [start, start+n)."""
    c = cols[:, start:start + n].astype(np.uint64)
    return (c[:, 0::2] << np.uint64(8)).sum(axis=1) + c[:, 1::2].sum(axis=1)


def write_ipv4_pcap(path, usec, size, proto, src, dst, sport, dport, tcp_flags, seq, ack) -> int:
    """Write the frames (each `size` bytes, >= 54) to `path`; returns the file size.

    usec: microseconds since T0; proto: 6 or 17; src/dst: IPv4 as integers.
    """
    n = len(usec)
    size = np.asarray(size, dtype=np.int64)
    tcp = np.asarray(proto) == 6
    rec = 16 + size
    offs = 24 + np.concatenate(([0], np.cumsum(rec[:-1], dtype=np.int64)))
    total = int(24 + rec.sum())
    buf = np.zeros(total, dtype=np.uint8)
    buf[:24] = np.frombuffer(np.array([0xA1B2C3D4, 0x00040002, 0, 0, 65535, 1],
                                      dtype="<u4").tobytes(), dtype=np.uint8)
    col = np.arange(_HDR, dtype=np.int64)
    for a in range(0, n, _STEP):
        b = min(a + _STEP, n)
        sz = size[a:b]
        h = np.zeros((b - a, _HDR), dtype=np.uint8)
        _le32(h, 0, T0 + usec[a:b] // 1_000_000)
        _le32(h, 4, usec[a:b] % 1_000_000)
        _le32(h, 8, sz)
        _le32(h, 12, sz)
        e = 16                                                    # Ethernet
        h[:, e:e + 6] = (0x02, 0, 0, 0, 0, 0x02)
        h[:, e + 6:e + 12] = (0x02, 0, 0, 0, 0, 0x01)
        h[:, e + 12] = 0x08
        i = e + 14                                                # IPv4
        h[:, i] = 0x45
        _be(h, i + 2, sz - 14, 2)
        _be(h, i + 4, np.arange(a, b) & 0xFFFF, 2)
        h[:, i + 6] = 0x40
        h[:, i + 8] = 64
        h[:, i + 9] = np.where(tcp[a:b], 6, 17)
        _be(h, i + 12, src[a:b], 4)
        _be(h, i + 16, dst[a:b], 4)
        _be(h, i + 10, ~_fold(_words(h, i, 20)) & np.uint64(0xFFFF), 2)
        t = i + 20                                                # TCP / UDP
        _be(h, t, sport[a:b], 2)
        _be(h, t + 2, dport[a:b], 2)
        l4len = (sz - 34).astype(np.uint64)
        is_tcp = tcp[a:b]
        th = h[is_tcp]
        _be(th, t + 4, np.asarray(seq[a:b])[is_tcp], 4)
        _be(th, t + 8, np.asarray(ack[a:b])[is_tcp], 4)
        th[:, t + 12] = 0x50
        th[:, t + 13] = np.asarray(tcp_flags[a:b])[is_tcp]
        _be(th, t + 14, np.full(th.shape[0], 65535), 2)
        pseudo = _words(th, i + 12, 8) + np.uint64(6) + l4len[is_tcp]
        _be(th, t + 16, ~_fold(pseudo + _words(th, t, 20)) & np.uint64(0xFFFF), 2)
        h[is_tcp] = th
        uh = h[~is_tcp]
        _be(uh, t + 4, l4len[~is_tcp], 2)
        uh[:, t + 8:] = 0                                          # payload, not TCP fields
        h[~is_tcp] = uh
        buf[(offs[a:b, None] + col).ravel()] = h.ravel()
    with open(path, "wb") as f:
        buf.tofile(f)
    return total
