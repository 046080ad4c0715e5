"""Reading a cluster snapshot: files and directories of YAML or JSON.

Accepts what `kubectl get ... -o yaml|json` prints: single objects, multi-document
YAML, and `kind: List` (its `items`). Directories are read recursively, files
with .yaml, .yml or .json in name order. Yields raw mappings with their Origin;
deciding what the objects mean is kdp.control.validate's job.
"""
import json
import os

import yaml

from kdp.control.model import Origin
from kdp.errors import ConfigError

SUFFIXES = (".yaml", ".yml", ".json")
MAX_FILE_BYTES = 256 << 20      # a snapshot file larger than this is refused, not read

try:
    _Loader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - libyaml missing
    _Loader = yaml.SafeLoader


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
        elif os.path.isfile(path):
            files.append(path)
        else:
            problems.append(f"{path}: no such file or directory")
    if problems:
        raise ConfigError("cannot read the cluster snapshot:\n  " + "\n  ".join(problems))
    return files


def _parse(path, text):
    if path.endswith(".json"):
        doc = json.loads(text)
        return [doc]
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")) and not path.endswith((".yaml", ".yml")):
        return [json.loads(text)]
    return list(yaml.load_all(text, Loader=_Loader))


def load_documents(paths):
    """[(Origin, mapping)] for every object in the snapshot; List items are expanded.

    Raises ConfigError naming every file that cannot be read or parsed."""
    out, problems = [], []
    for path in snapshot_files(paths):
        try:
            size = os.path.getsize(path)
            if size > MAX_FILE_BYTES:
                problems.append(f"{path}: file is {size} bytes, larger than {MAX_FILE_BYTES}")
                continue
            with open(path, encoding="utf-8") as f:
                docs = _parse(path, f.read())
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{path}: cannot read: {exc}")
            continue
        except (yaml.YAMLError, json.JSONDecodeError) as exc:
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
