"""Kubernetes label selectors: validation, one-object matching, and bulk matching.

A selector is what metav1.LabelSelector holds: ``matchLabels`` (key -> value,
all must be equal) and ``matchExpressions`` (key, operator, values) with the
operators In, NotIn, Exists and DoesNotExist. Every requirement must hold; an
empty selector matches everything. NotIn also matches objects without the key
(apimachinery's labels.Requirement.Matches).

``parse_selector`` validates a raw mapping as the API server does (label key and
value syntax, operators, values present for In/NotIn and absent for the others)
and reports problems through the caller's field context. ``LabelIndex`` answers
"which of these N label sets does a selector match?" as a numpy bool array, with
an inverted index (key -> value -> members), so evaluating a selector costs a
few array operations whatever N is.
"""
from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np

OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
_NAME = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?")
_DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(_DNS_LABEL + r"(?:\." + _DNS_LABEL + r")*")


class Selector(NamedTuple):
    """A validated label selector. `labels`: ((key, value), ...) sorted;
    `exprs`: ((key, operator, (values...)), ...) in the given order."""
    labels: tuple = ()
    exprs: tuple = ()

    @property
    def empty(self):
        return not self.labels and not self.exprs

    def matches(self, labels):
        """Does a single label mapping match (the plain definition)?"""
        for k, v in self.labels:
            if labels.get(k) != v:
                return False
        for k, op, values in self.exprs:
            has = k in labels
            if op == "In" and not (has and labels[k] in values):
                return False
            if op == "NotIn" and has and labels[k] in values:
                return False
            if op == "Exists" and not has:
                return False
            if op == "DoesNotExist" and has:
                return False
        return True

    def describe(self):
        """Short text, as kubectl prints selectors: "app=web,tier in (a,b)", or "{}" (all)."""
        parts = [f"{k}={v}" for k, v in self.labels]
        for k, op, values in self.exprs:
            if op == "Exists":
                parts.append(k)
            elif op == "DoesNotExist":
                parts.append(f"!{k}")
            else:
                parts.append(f"{k} {'in' if op == 'In' else 'notin'} ({','.join(values)})")
        return ",".join(parts) if parts else "{}"


ALL = Selector()


def label_key_error(key):
    """Why `key` is not a valid label key (None when it is)."""
    if not isinstance(key, str) or not key:
        return "a label key must be a non-empty string"
    prefix, sep, name = key.rpartition("/")
    if sep:
        if not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix):
            return f"label key prefix {prefix!r} must be a DNS subdomain (lower case, <= 253 characters)"
    if len(name) > 63 or not _NAME.fullmatch(name):
        return (f"label key name {name!r} must be 1-63 characters of A-Z, a-z, 0-9, '-', '_', '.', "
                "starting and ending with a letter or digit")
    return None


def label_value_error(value):
    """Why `value` is not a valid label value (None when it is)."""
    if not isinstance(value, str):
        return f"a label value must be a string (got {value!r})"
    if value and (len(value) > 63 or not _NAME.fullmatch(value)):
        return (f"label value {value!r} must be empty or 1-63 characters of A-Z, a-z, 0-9, '-', '_', "
                "'.', starting and ending with a letter or digit")
    return None


def parse_selector(c, raw, field):
    """A Selector from a raw mapping; problems go to c.err(field, message).

    None (absent) is the empty selector. Unknown keys are errors (a typo such as
    `matchLabel` would otherwise silently select everything)."""
    if raw is None:
        return ALL
    if not isinstance(raw, dict):
        c.err(field, "must be a label selector (a mapping with matchLabels / matchExpressions)")
        return ALL
    for k in raw:
        if k not in ("matchLabels", "matchExpressions"):
            c.err(f"{field}.{k}", "unknown field (a label selector has matchLabels and matchExpressions)")
    labels = {}
    ml = raw.get("matchLabels")
    if ml is not None:
        if not isinstance(ml, dict):
            c.err(f"{field}.matchLabels", "must be a mapping of label keys to values")
        else:
            for k, v in ml.items():
                why = label_key_error(k) or label_value_error(v)
                if why:
                    c.err(f"{field}.matchLabels[{k}]", why)
                else:
                    labels[k] = v
    exprs = []
    me = raw.get("matchExpressions")
    if me is not None and not isinstance(me, list):
        c.err(f"{field}.matchExpressions", "must be a list")
        me = None
    for i, e in enumerate(me or ()):
        f = f"{field}.matchExpressions[{i}]"
        if not isinstance(e, dict):
            c.err(f, "must be a mapping with key, operator and values")
            continue
        for k in e:
            if k not in ("key", "operator", "values"):
                c.err(f"{f}.{k}", "unknown field (known: key, operator, values)")
        key, op, values = e.get("key"), e.get("operator"), e.get("values")
        ok = True
        why = label_key_error(key)
        if why:
            c.err(f"{f}.key", why)
            ok = False
        if op not in OPERATORS:
            c.err(f"{f}.operator", f"must be one of {', '.join(OPERATORS)} (got {op!r})")
            ok = False
        if values is not None and not isinstance(values, list):
            c.err(f"{f}.values", "must be a list of label values")
            ok = False
            values = None
        values = values or []
        if op in ("In", "NotIn") and not values:
            c.err(f"{f}.values", f"must be non-empty when the operator is {op}")
            ok = False
        if op in ("Exists", "DoesNotExist") and values:
            c.err(f"{f}.values", f"must be empty when the operator is {op}")
            ok = False
        for j, v in enumerate(values):
            why = label_value_error(v)
            if why:
                c.err(f"{f}.values[{j}]", why)
                ok = False
        if ok:
            exprs.append((key, op, tuple(dict.fromkeys(values))))
    return Selector(tuple(sorted(labels.items())), tuple(exprs))


class LabelIndex:
    """Bulk selector matching over a fixed list of label mappings."""

    def __init__(self, label_sets):
        self.n = len(label_sets)
        self._by_key = {}                   # key -> {value: [member, ...]}
        for i, labels in enumerate(label_sets):
            for k, v in labels.items():
                self._by_key.setdefault(k, {}).setdefault(v, []).append(i)
        self._eq = {}
        self._has = {}
        self._cache = {}

    def _mask(self, members):
        m = np.zeros(self.n, dtype=bool)
        if members:
            m[np.asarray(members, dtype=np.intp)] = True
        return m

    def has(self, key):
        m = self._has.get(key)
        if m is None:
            vals = self._by_key.get(key, {})
            m = self._mask([i for members in vals.values() for i in members])
            self._has[key] = m
        return m

    def eq(self, key, value):
        m = self._eq.get((key, value))
        if m is None:
            m = self._mask(self._by_key.get(key, {}).get(value, ()))
            self._eq[(key, value)] = m
        return m

    def match(self, sel):
        """bool[n]: which members `sel` selects (a cached array: do not modify it)."""
        m = self._cache.get(sel)
        if m is not None:
            return m
        m = np.ones(self.n, dtype=bool)
        for k, v in sel.labels:
            m &= self.eq(k, v)
        for k, op, values in sel.exprs:
            if op == "Exists":
                m &= self.has(k)
            elif op == "DoesNotExist":
                m &= ~self.has(k)
            else:
                anyv = np.zeros(self.n, dtype=bool)
                for v in values:
                    anyv |= self.eq(k, v)
                m &= anyv if op == "In" else ~anyv
        m.flags.writeable = False
        self._cache[sel] = m
        return m
