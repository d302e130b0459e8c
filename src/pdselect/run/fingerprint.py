"""What a run's input IS, as a small JSON-able digest, so stage fingerprints follow the data and
not only the config (editing the input in place or pointing ``data.path`` elsewhere re-runs).

    input_fingerprint(cfg.data)  ->  {"kind": "files", "digest": "...", "n_files": 2, ...}

Local data: every file under ``data.path`` (a file, or every file in a folder: a superset of
what the readers read, so nothing they read can change unseen), or every bundled copy (the
whole ``bundled/`` folder, whichever source) when ``data.path`` is empty. Each file counts
with its resolved path and size, plus the sha256 of its bytes when it is under
:data:`HASH_LIMIT` (cheap) or its ``mtime_ns`` when larger, unless ``data.always_hash`` is
set (then every file is hashed: an in-place edit that keeps the size and restores the mtime is
seen too). A Hugging Face dataset id
counts by name and split only (the hub's content is not visible offline).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from types import SimpleNamespace

HASH_LIMIT = 64 * 2**20  # bytes; larger files count by size + mtime_ns
BUNDLED_DIR = Path(__file__).resolve().parent.parent / "bundled"

# (resolved path, size, mtime_ns, ctime_ns, inode) -> sha256: hash each file once per process.
# ctime is in the key because it cannot be set back: an edit with the mtime restored (os.utime)
# still changes it, so a long-lived process (select_pairs in a notebook) re-hashes the file
_hash_cache: dict[tuple, str] = {}


def _file_entry(f: Path, always_hash: bool = False) -> list:
    st = f.stat()
    key = (str(f), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    if st.st_size >= HASH_LIMIT and not always_hash:
        return [str(f), st.st_size, f"mtime_ns:{st.st_mtime_ns}"]
    if key not in _hash_cache:
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _hash_cache[key] = "sha256:" + h.hexdigest()
    return [str(f), st.st_size, _hash_cache[key]]


def input_files(path: str | Path) -> list[Path]:
    """Every regular file under ``path`` (itself if it is a file), sorted."""
    p = Path(path).expanduser().resolve()
    if p.is_file():
        return [p]
    out = []
    for dirpath, dirnames, filenames in os.walk(p):
        dirnames.sort()
        out += [Path(dirpath) / n for n in sorted(filenames) if (Path(dirpath) / n).is_file()]
    return out


def input_fingerprint(data_cfg) -> dict:
    """Digest of the data ``data_cfg`` points at (see the module docstring)."""
    if data_cfg.path:
        p = Path(data_cfg.path).expanduser()
        if not p.exists():
            # not a local file: a hub id, or a missing path the reader will report
            return {"kind": "hub", "id": data_cfg.path, "split": data_cfg.hf_split,
                    "digest": hashlib.sha256(f"{data_cfg.path}\0{data_cfg.hf_split}".encode())
                    .hexdigest()[:16]}
        root = p
    else:  # empty path: a bundled copy (a source without one is refused before any stage)
        root = BUNDLED_DIR
    # a second input file some sources read (HelpSteer2's pairwise preference file) counts too
    extra = [Path(x).expanduser() for x in (getattr(data_cfg, "preference_path", "") or "",)
             if x and Path(x).expanduser().exists()]
    full = bool(getattr(data_cfg, "always_hash", False))
    try:
        entries = [_file_entry(f, full) for f in input_files(root)]
        entries += [_file_entry(f, full) for x in extra for f in input_files(x)]
    except OSError as e:  # unreadable input: the reader reports it with file and fix
        return {"kind": "unreadable", "path": str(root), "error": str(e), "digest": ""}
    blob = json.dumps(entries, sort_keys=True)
    return {"kind": "files", "root": str(Path(root).resolve()), "n_files": len(entries),
            "n_bytes": int(sum(e[1] for e in entries)),
            "digest": hashlib.sha256(blob.encode()).hexdigest()[:16]}


def reward_source_fingerprint(proxy_cfg) -> dict:
    """Digests of the files a score-only reward source reads (proxy.scores_path, the reward
    model folders), so editing one in place invalidates the proxy stage like a data edit does.
    Empty for the trained backends (their inputs are the data and the config)."""
    paths = []
    if proxy_cfg.backend == "scores" and proxy_cfg.scores_path:
        paths = [proxy_cfg.scores_path]
    elif proxy_cfg.backend == "reward_model":
        paths = [proxy_cfg.reward_model] if proxy_cfg.reward_model else \
            sorted(set(proxy_cfg.reward_models.values()))
    out = {}
    for p in paths:
        fp = input_fingerprint(SimpleNamespace(path=p, hf_split="", preference_path=""))
        out[f"_reward_source:{p}"] = fp["digest"]
    return out
