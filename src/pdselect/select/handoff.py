"""The hand-off folder beyond the train file: the held-out ``test`` split, the LLaMA-Factory
entry and the token-length check (the dataset card is select/card.py).

    select/dpo/train-00000.<ext>   kept pairs, labelled by their ONE aspect (rank_buckets.py)
    select/dpo/test-00000.<ext>    held-out pairs (split == "test"), same columns
    select/dataset_info.json       LLaMA-Factory entries (standard and sharegpt layouts)

Test labels: the held-out pairs are what a trainer evaluates on, so they carry the OVERALL
preference where the data has one (chosen = the overall winner: the pair is flipped when the
overall disagrees with its aspect label). This is the only place outside evaluation that reads
the hidden ``h_overall_delta``, and only for held-out pairs, never for the pairs selected from.
``label_source`` says which label each row has: "overall", "aspect (overall tie)" or
"aspect (no overall)"; train rows say "aspect".
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..data.schema import HIDDEN_PREFIX
from ..run.artifacts import json_line, parquet_appender, write_json
from .formats import apply_layout

TEST_FILE = "test-00000"
OVERALL_COL = HIDDEN_PREFIX + "overall_delta"
LABEL_OVERALL, LABEL_TIE, LABEL_NONE = "overall", "aspect (overall tie)", "aspect (no overall)"


def held_out_labels(delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(flip, label_source) for held-out pairs from overall(chosen) - overall(rejected)."""
    d = np.asarray(delta, dtype=np.float64)
    flip = d < 0
    source = np.where(np.isnan(d), LABEL_NONE, np.where(d == 0, LABEL_TIE, LABEL_OVERALL))
    return flip, source


def _test_frame(df: pd.DataFrame, chat_format: str) -> pd.DataFrame:
    delta = (df[OVERALL_COL].to_numpy(np.float64) if OVERALL_COL in df
             else np.full(len(df), np.nan))
    flip, source = held_out_labels(delta)
    c, r = df["chosen"].to_numpy(), df["rejected"].to_numpy()
    out = pd.DataFrame({"prompt": df["input"].to_numpy(), "chosen": np.where(flip, r, c),
                        "rejected": np.where(flip, c, r), "pair_id": df["pair_id"].to_numpy(),
                        "aspect": df["aspect"].to_numpy(), "label_source": source})
    return apply_layout(out, chat_format)


def write_test_split(pairs_path: Path, folder: Path, train_file: Path, chat_format: str,
                     batch_size: int) -> dict:
    """Held-out pairs -> ``folder/test-00000.<ext>`` with the train file's columns (scores,
    rank: null), streamed in batches. Returns the label counts (n_test 0: no file)."""
    pf = pq.ParquetFile(pairs_path)
    have = set(pf.schema_arrow.names)
    if "split" not in have:
        return {"n_test": 0}
    n_test = int(pc_count(pq.read_table(pairs_path, columns=["split"]).column("split"), "test"))
    if n_test == 0:
        return {"n_test": 0}
    cols = [c for c in ("pair_id", "aspect", "input", "chosen", "rejected", "split",
                        OVERALL_COL) if c in have]
    batches = (b.to_pandas() for b in pf.iter_batches(batch_size=batch_size, columns=cols))
    frames = (_test_frame(b[b["split"] == "test"], chat_format) for b in batches)
    path = folder / (TEST_FILE + train_file.suffix)
    counts = {LABEL_OVERALL: 0, LABEL_TIE: 0, LABEL_NONE: 0}
    if train_file.suffix == ".jsonl":
        _write_jsonl(frames, path, _jsonl_columns(train_file), counts)
    else:
        schema = pq.read_schema(train_file).remove_metadata()  # one DatasetDict: same columns
        with parquet_appender(path) as out:
            for f in frames:
                if len(f):
                    counts.update(_count(f, counts))
                    out.append(pa.Table.from_pandas(_like(f, schema.names), schema=schema,
                                                    preserve_index=False))
    return {"n_test": n_test, "test_file": str(path),
            "test_labels": {k: int(v) for k, v in counts.items()}}


def pc_count(column: pa.ChunkedArray, value: str) -> int:
    import pyarrow.compute as pc

    return int(pc.sum(pc.equal(column, value)).as_py() or 0)


def _count(f: pd.DataFrame, counts: dict) -> dict:
    vc = f["label_source"].value_counts()
    return {k: counts[k] + int(vc.get(k, 0)) for k in counts}


def _like(f: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """``f`` with exactly ``names`` as columns, in order; a column the test rows lack (rank, pd,
    gap__*: held-out pairs are not scored) is null."""
    return pd.DataFrame({c: f[c] if c in f else pd.Series([None] * len(f), dtype=object)
                         for c in names})


def _jsonl_columns(train_file: Path) -> list[str] | None:
    with open(train_file, encoding="utf-8") as fh:
        first = fh.readline()
    return list(json.loads(first)) if first.strip() else None


def _write_jsonl(frames, path: Path, names: list[str] | None, counts: dict) -> None:
    from ..run.artifacts import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for f in frames:
            if len(f):
                counts.update(_count(f, counts))
                f = _like(f, names or list(f.columns))
                for r in f.to_dict("records"):
                    fh.write(json_line({k: (None if _is_nan(v) else v) for k, v in r.items()}))


def _is_nan(v) -> bool:
    return isinstance(v, float) and np.isnan(v)


# ----------------------------------------------------------------------------- LLaMA-Factory
def llamafactory_entries(select_dir: Path, files: dict[str, Path], chat_format: str,
                         name: str = "pdselect") -> dict | None:
    """``dataset_info.json`` entries for LLaMA-Factory (dataset_dir = ``select_dir``): one per
    split, ``name`` and ``name_test``. standard -> its alpaca preference format, sharegpt -> its
    sharegpt preference format; None for the message-list layouts, which it does not read
    (its chosen / rejected must be ONE message object)."""
    if chat_format == "standard":
        base = {"ranking": True,
                "columns": {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"}}
    elif chat_format == "sharegpt":
        base = {"formatting": "sharegpt", "ranking": True,
                "columns": {"messages": "conversations", "chosen": "chosen",
                            "rejected": "rejected"}}
    else:
        return None
    out = {}
    for split, f in files.items():
        key = name if split == "train" else f"{name}_{split}"
        out[key] = {"file_name": str(Path(f).relative_to(select_dir)), **base}
    write_json(select_dir / "dataset_info.json", out)
    return out


# ----------------------------------------------------------------------------- the folder
def write_handoff(cfg, root: Path, data_file: Path, summary: dict, tok, why_no_tok) -> dict:
    """After the train file: the test split, dataset_info.json, the token-length check (with
    ``tok``, the policy's tokenizer, or skipped for the reason ``why_no_tok``) and the card.
    Returns the select meta's hand-off keys."""
    from .card import write_card
    from .tokens import token_check

    s, out = cfg.select, Path(root) / "select"
    test = write_test_split(Path(root) / "aggregate" / "pairs.parquet", out / "dpo",
                            Path(data_file), s.chat_format, cfg.score.shard_size)
    files = {"train": Path(data_file),
             **({"test": Path(test["test_file"])} if test["n_test"] else {})}
    lf = llamafactory_entries(out, files, s.chat_format)
    check = (token_check(files, tok, cfg.align.max_length, s.chat_format, cfg.align.policy)
             if tok is not None else None)
    write_card(out / "dpo", {"source": cfg.data.source,
                             "files": files, "method": s.method, "chat_format": s.chat_format,
                             "counts": {"n_pool": summary["n_pool"],
                                        "n_selected": summary["n_selected"], **test},
                             "version": _version(), "config": cfg.to_dict(),
                             "token_check": check, "reason_no_token_check": why_no_tok})
    return {"n_test": test["n_test"], "test_labels": test.get("test_labels", {}),
            "llamafactory": str(out / "dataset_info.json") if lf else None,
            "token_check": check, "token_check_skipped": why_no_tok,
            "card": str(out / "dpo" / "README.md")}


def _version() -> str:
    """pdselect's installed version (importing the package here would be an import circle)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pdselect")
    except PackageNotFoundError:
        return "unknown (not installed)"
