"""Reading a cluster snapshot: files and directories of YAML or JSON.

Accepts what `kubectl get ... -o yaml|json` prints: single objects, multi-document
YAML, and `kind: List` (its `items`). Directories are read recursively, files
with .yaml, .yml or .json in name order. Yields raw mappings with their Origin;
deciding what the objects mean is kdp.control.validate's job.

Only regular files are read: a FIFO, socket or device (named directly or found in a
directory) is an error naming it, and is never opened for reading in a way that could
block. A mapping that holds one key twice is an error (the API server's strict decoding
refuses it: which value would win is the parser's whim), with its line and column.
A YAML file's parse is cached by its content (kdp.control.parsecache): the same file
loads about ten times faster the next time (and a whole snapshot that validated, by
kdp.control.snapshotcache).
"""
import json
import os
import stat

from kdp.control.model import Origin
from kdp.errors import ConfigError

SUFFIXES = (".yaml", ".yml", ".json")
MAX_FILE_BYTES = 256 << 20      # a snapshot file larger than this is refused, not read

_MERGE = "tag:yaml.org,2002:merge"
_LOADER = []                    # the YAML loader class, made on first use


def _yaml_loader():
    """The safe loader (libyaml's when there), refusing a mapping that holds one key
    twice. PyYAML is imported here, on a parse-cache miss only: ~8 ms of every start."""
    if _LOADER:
        return _LOADER[0]
    import yaml
    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class _Loader(base):
        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                seen = set()
                for key_node, _value in node.value:
                    if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE:
                        continue
                    key = (key_node.tag, key_node.value)
                    if key in seen:
                        mark = key_node.start_mark
                        raise DuplicateKey(f"line {mark.line + 1}, column {mark.column + 1}: the key "
                                           f"{key_node.value!r} appears twice in one mapping "
                                           "(the API server refuses it)")
                    seen.add(key)
            return super().construct_mapping(node, deep=deep)

    _LOADER.append(_Loader)
    return _Loader


class _NotYaml(ValueError):
    """PyYAML's error, carried out of _parse (so that no caller imports yaml to catch it)."""


class DuplicateKey(ValueError):
    """A mapping holds one key twice."""


def _json_object(pairs):
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen = set()
        for k, _v in pairs:
            if k in seen:
                raise DuplicateKey(f"the key {k!r} appears twice in one object "
                                   "(the API server refuses it)")
            seen.add(k)
    return obj


_FILE_TYPES = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory"))


def _not_regular(mode):
    """What a non-regular file is ("a FIFO", ...), None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((what for test, what in _FILE_TYPES if test(mode)), "not a regular file")


def snapshot_files(paths):
    """The files a list of paths names (directories expanded), in a stable order."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files, problems = [], []
    for path in paths:
        path = os.fspath(path)
        if os.path.isdir(path):
            found = []
            for root, dirs, names in os.walk(path):
                dirs.sort()
                found.extend(os.path.join(root, n) for n in sorted(names)
                             if n.endswith(SUFFIXES) and not n.startswith("."))
            files.extend(found)
        elif os.path.lexists(path):
            try:
                what = _not_regular(os.stat(path).st_mode)
            except OSError as exc:
                problems.append(f"{path}: cannot read: {exc.strerror}")
                continue
            if what is None:
                files.append(path)
            else:
                problems.append(f"{path}: is {what}, not a regular file; kdp reads snapshot files only")
        else:
            problems.append(f"{path}: no such file or directory")
    if problems:
        raise ConfigError("cannot read the cluster snapshot:\n  " + "\n  ".join(problems))
    return files


def _parse(path, text):
    if path.endswith(".json"):
        doc = json.loads(text, object_pairs_hook=_json_object)
        return [doc]
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")) and not path.endswith((".yaml", ".yml")):
        return [json.loads(text, object_pairs_hook=_json_object)]
    from kdp.control import parsecache
    docs = parsecache.load(text)
    if docs is None:
        import yaml
        try:
            docs = list(yaml.load_all(text, Loader=_yaml_loader()))
        except yaml.YAMLError as exc:
            raise _NotYaml(str(exc)) from None
        parsecache.store(text, docs)
    return docs


def _read_regular(path):
    """The text of a regular file. Opened without blocking (a FIFO swapped in after the
    directory was listed is refused, not waited on), checked, then read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        what = _not_regular(st.st_mode)
        if what is not None:
            raise _Refused(f"is {what}, not a regular file; kdp reads snapshot files only")
        if st.st_size > MAX_FILE_BYTES:
            raise _Refused(f"file is {st.st_size} bytes, larger than {MAX_FILE_BYTES}")
        with os.fdopen(fd, encoding="utf-8", closefd=True) as f:
            fd = -1
            return f.read()
    finally:
        if fd >= 0:
            os.close(fd)


class _Refused(Exception):
    pass


def read_texts(paths):
    """[(path, text)] of every file of the snapshot, or None when one cannot be listed
    or read (load_documents then says why)."""
    try:
        return [(path, _read_regular(path)) for path in snapshot_files(paths)]
    except (ConfigError, _Refused, OSError, UnicodeDecodeError):
        return None


def load_documents(paths, texts=None):
    """[(Origin, mapping)] for every object in the snapshot; List items are expanded.
    `texts`: what read_texts(paths) returned, so the files are not read twice.

    Raises ConfigError naming every file that cannot be read or parsed."""
    out, problems = [], []
    files = [(path, None) for path in snapshot_files(paths)] if texts is None else texts
    for path, text in files:
        try:
            docs = _parse(path, _read_regular(path) if text is None else text)
        except _Refused as exc:
            problems.append(f"{path}: {exc}")
            continue
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}")
            continue
        except DuplicateKey as exc:
            problems.append(f"{path}: {exc}")
            continue
        except (_NotYaml, json.JSONDecodeError) as exc:
            problems.append(f"{path}: not valid YAML/JSON: {' '.join(str(exc).split())}")
            continue
        multi = len(docs) > 1
        for i, doc in enumerate(docs):
            where = f"#{i}" if multi else ""
            if doc is None:
                continue
            if isinstance(doc, list):      # a bare JSON array of objects
                items, prefix = doc, where
            elif isinstance(doc, dict) and doc.get("kind") == "List" or \
                    isinstance(doc, dict) and str(doc.get("kind", "")).endswith("List") and "items" in doc:
                items = doc.get("items") or []
                prefix = where
                if not isinstance(items, list):
                    problems.append(f"{path}{where}: List: items: must be a list")
                    continue
            else:
                out.append((Origin(path, where), doc))
                continue
            for j, item in enumerate(items):
                out.append((Origin(path, f"{prefix}.items[{j}]"), item))
    if problems:
        raise ConfigError("cannot read the cluster snapshot:\n  " + "\n  ".join(problems))
    return out
