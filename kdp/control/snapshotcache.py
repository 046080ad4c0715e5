"""A cache of validated snapshots: the Cluster read back instead of validated again.

Validating a 10,000-Service snapshot (20,000 objects) takes most of kdp's start-up,
and the result depends on nothing but the snapshot's files, the node and kdp itself.
So a snapshot that validated is kept, keyed by the SHA-256 of kdp's version, the node,
and every file's path and text (paths are part of the result: they name each object's
origin), and read back on the next load with that same key: a file changed, added,
removed or renamed is another key, and its snapshot is validated afresh.

Only snapshots that validated are kept; an invalid one is validated, and its problems
reported, on every load. The entry is Python's pickle of the Cluster: loading it runs
kdp's own classes, and pickle can name other code, so an entry is read only from the
private cache directory kdp.control.parsecache keeps (0700, owned by this user, no
entry others may write: the trust Python gives its own __pycache__). A damaged entry
is ignored and replaced. KDP_CACHE_DIR=off turns it off with the parse cache.
"""
import gc
import hashlib
import pickle

from kdp import __version__
from kdp.control import parsecache

SUFFIX = ".cluster"


def key(texts, node):
    """The key of a snapshot: texts as kdp.control.loader.read_texts gives them."""
    h = hashlib.sha256(f"kdp {__version__}\0node {node}\0".encode())
    for path, text in texts:
        h.update(path.encode("utf-8", "surrogatepass") + b"\0")
        h.update(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest())
    return h.hexdigest()


def load(snapshot_key):
    """The validated Cluster kept under snapshot_key, or None."""
    from kdp.control.cluster import Cluster
    data = parsecache.read_entry(snapshot_key + SUFFIX)
    if data is None:
        return None
    enabled = gc.isenabled()
    gc.disable()                        # (many small objects: the collector only slows it)
    try:
        cluster = pickle.loads(data)
    except Exception:                   # a damaged entry is no entry  # noqa: BLE001
        return None
    finally:
        if enabled:
            gc.enable()
    return cluster if type(cluster) is Cluster else None


def store(snapshot_key, cluster):
    """Keep a Cluster that validated (silently nothing when it cannot)."""
    if parsecache.cache_dir() is None:
        return
    enabled = gc.isenabled()
    gc.disable()
    try:
        data = pickle.dumps(cluster, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError, RecursionError):
        return
    finally:
        if enabled:
            gc.enable()
    parsecache.write_entry(snapshot_key + SUFFIX, data)
