"""Naive longest-prefix match: a dict of rules, lookups by scanning them all.

Slow and obvious on purpose; tests check kdp._fast.lpm against it.
"""

MISS = 0xFFFFFFFF


class RefLpm:
    """Rules (prefix, length) -> value for addresses of `bits` bits (32 or 128)."""

    def __init__(self, bits=32):
        self.bits = bits
        self.rules = {}

    def _norm(self, prefix, length):
        if not 0 <= length <= self.bits:
            raise ValueError(length)
        mask = ((1 << self.bits) - 1) ^ ((1 << (self.bits - length)) - 1)
        return prefix & mask, length

    def insert(self, prefix, length, value):
        key = self._norm(prefix, length)
        old = self.rules.get(key)
        self.rules[key] = value
        return old

    def delete(self, prefix, length):
        return self.rules.pop(self._norm(prefix, length), None)

    def get(self, prefix, length):
        return self.rules.get(self._norm(prefix, length))

    def lookup(self, addr):
        best_len, best = -1, MISS
        for (prefix, length), value in self.rules.items():
            shift = self.bits - length
            if (addr >> shift) == (prefix >> shift) and length > best_len:
                best_len, best = length, value
        return best
