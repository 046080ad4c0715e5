"""A cache of parsed snapshot files: YAML parsed once, read back as JSON.

PyYAML builds Python objects in Python even with libyaml's parser: a 10,000-Service
snapshot takes seconds to parse, and `kdp replay` would pay that at every start. The
cache keeps what the YAML loader returned for a file, keyed by the SHA-256 of the
file's text and kdp's version, as JSON (about ten times faster to load); values JSON
does not have (timestamps, binary, sets) are tagged so they come back as they were (an
entry without them is plain JSON, read without a decoding hook).
Only the parse is cached here, so a cached file means exactly what its text means; a
whole snapshot that validated is kept by kdp.control.snapshotcache, in the same
directory under the same rules.

Where: $KDP_CACHE_DIR, else $XDG_CACHE_HOME/kdp/snapshots, else ~/.cache/kdp/snapshots.
KDP_CACHE_DIR=off turns it off. The directory is made private (0700); a directory or
entry another user owns or others may write is not used (it could say anything). A
cache that cannot be read or written is skipped silently: it only ever saves time.
It keeps the MAX_ENTRIES most recently written entries (older ones are removed when a
new one is written); remove the directory to clear it.
"""
import base64
import datetime
import hashlib
import json
import os
import stat

from kdp import __version__

_TAG = "\u0000kdp"
MAX_ENTRIES = 64


def cache_dir():
    """The cache directory, or None when the cache is off."""
    where = os.environ.get("KDP_CACHE_DIR")
    if where is not None:
        return None if where.strip().lower() in ("", "off", "0", "none") else where
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "kdp", "snapshots")


def _private(path, st):
    return st.st_uid == os.geteuid() and not (st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def _plain(value):
    """True when `value` is JSON as it is (str keys, no timestamps, bytes, sets, NaN...):
    such an entry loads without a decoding hook, several times faster."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    if isinstance(value, float):
        return value == value and value not in (float("inf"), float("-inf"))
    return value is None or isinstance(value, (str, int, bool))


def _encode(value):
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("a mapping with a key that is not a string")   # (such a file is not cached)
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, datetime.datetime):
        return {_TAG: "datetime", "v": value.isoformat()}
    if isinstance(value, datetime.date):
        return {_TAG: "date", "v": value.isoformat()}
    if isinstance(value, bytes):
        return {_TAG: "bytes", "v": base64.b64encode(value).decode()}
    if isinstance(value, (set, frozenset)):
        return {_TAG: "set", "v": [_encode(v) for v in value]}
    if isinstance(value, tuple):
        return {_TAG: "tuple", "v": [_encode(v) for v in value]}
    if isinstance(value, float) and value != value:
        return {_TAG: "nan"}
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return {_TAG: "float", "v": "inf" if value > 0 else "-inf"}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot cache a {type(value).__name__}")


def _decode_hook(obj):
    tag = obj.get(_TAG)
    if tag is None:
        return obj
    v = obj.get("v")
    if tag == "datetime":
        return datetime.datetime.fromisoformat(v)
    if tag == "date":
        return datetime.date.fromisoformat(v)
    if tag == "bytes":
        return base64.b64decode(v)
    if tag == "set":
        return set(v)
    if tag == "tuple":
        return tuple(v)
    if tag == "nan":
        return float("nan")
    if tag == "float":
        return float(v)
    return obj


def _entry(text):
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{digest}-{__version__}.json"


def read_entry(name):
    """The bytes of cache entry `name` (a file in cache_dir()), or None: no cache, no
    such entry, or one that is not a private regular file in a private directory."""
    where = cache_dir()
    if where is None:
        return None
    path = os.path.join(where, name)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or not _private(path, st) or not _private(where, os.stat(where)):
            return None
        with os.fdopen(fd, "rb", closefd=True) as f:
            fd = -1
            return f.read()
    except OSError:
        return None
    finally:
        if fd >= 0:
            os.close(fd)


def write_entry(name, data):
    """Keep `data` as cache entry `name` (silently nothing when it cannot): written
    aside and renamed, so a reader sees all of it or none; the oldest entries beyond
    MAX_ENTRIES are removed."""
    where = cache_dir()
    if where is None:
        return
    tmp = None
    try:
        os.makedirs(where, mode=0o700, exist_ok=True)
        if not _private(where, os.stat(where)):
            return
        path = os.path.join(where, name)
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        tmp = None
        _prune(where)
    except OSError:
        pass
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def load(text):
    """The cached parse of `text` (a list of documents), or None."""
    data = read_entry(_entry(text))
    if data is None:
        return None
    try:
        if data[:1] == b"P":
            docs = json.loads(data[1:])
        elif data[:1] == b"T":
            docs = json.loads(data[1:], object_hook=_decode_hook)
        else:
            return None
        return docs if isinstance(docs, list) else None
    except (ValueError, TypeError, KeyError, IndexError):
        return None


def _prune(where):
    entries = []
    for name in os.listdir(where):
        if name.endswith((".json", ".cluster")):
            try:
                entries.append((os.stat(os.path.join(where, name)).st_mtime, name))
            except OSError:
                pass
    entries.sort()
    for _mtime, name in entries[:max(0, len(entries) - MAX_ENTRIES)]:
        try:
            os.unlink(os.path.join(where, name))
        except OSError:
            pass


def store(text, docs):
    """Keep the parse of `text` for next time (silently nothing when it cannot)."""
    if cache_dir() is None:
        return
    try:
        if _plain(docs):                # the common case: what kubectl prints
            data = b"P" + json.dumps(docs, separators=(",", ":")).encode()
        else:
            data = b"T" + json.dumps(_encode(docs), separators=(",", ":")).encode()
    except (TypeError, ValueError):
        return
    write_entry(_entry(text), data)
