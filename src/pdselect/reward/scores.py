"""scores backend: the user's own per-aspect scores (a multi-objective reward model's outputs,
LLM-judge scores, their own RMs), taken as they are. Nothing is trained or loaded.

    proxy:
      backend: scores
      scores_path: my_scores.parquet          # empty: data.path (scores beside the ratings)
      score_columns: {helpfulness: armo_helpfulness, honesty: armo_honesty, unified: armo_score}

Two kinds (``proxy.score_kind``):
- ``response``: one score per response. Rows are matched to the pipeline's responses by
  ``input_id`` + ``response_id`` when the file has both columns (ids as the ingest stage wrote
  them to ``<run>/ingest/rated.parquet``), else by the input and response TEXTS (``input`` or
  ``prompt``, and ``response``; chat message lists rendered as the readers render them,
  surrounding whitespace ignored).
- ``pair``: one gap per pair, score(chosen) - score(rejected), matched by input + chosen +
  rejected texts in either orientation (a pair the pipeline orients the other way gets the
  negated gap).

At the proxy stage the file is read once into a lookup table keyed by a 16-byte digest of the
texts (``<run>/proxy/*/scores.parquet``), which is all the score stage (and every Ray actor)
loads. A response or pair without a score, a duplicate key with two different scores, or a
value that is not a number stops the run with the file, line and column.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import StageError
from .fixed import UNIFIED

logger = logging.getLogger(__name__)
TABLE_FILE, META_FILE = "scores.parquet", "scores.json"
INPUT_KEYS = ("input", "prompt")


# ----------------------------------------------------------------------------- keys
def _text(value) -> str:
    from ..data.rows import to_text

    text, problem = to_text(value)
    if problem:
        raise ValueError(problem)
    return "" if text is None else text.strip()


def text_key(*parts) -> bytes:
    """Digest of the whitespace-stripped texts (chat lists rendered like the readers do)."""
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        b = _text(p).encode("utf-8", "surrogatepass")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.digest()


def keys_of(*columns) -> list[bytes]:
    return [text_key(*row) for row in zip(*columns)]


# ----------------------------------------------------------------------------- reading
def read_score_file(path: str) -> pd.DataFrame:
    """The user's score file as a DataFrame (CSV, TSV, JSON, JSONL, Parquet; .gz allowed)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise StageError(f"proxy.scores_path={path}: no such file. Fix: point proxy.scores_path "
                         "(or data.path, which it defaults to) at your score file.")
    name = p.name.lower().removesuffix(".gz")
    try:
        if name.endswith(".parquet"):
            return pd.read_parquet(p)
        if name.endswith(".jsonl"):
            return pd.read_json(p, lines=True, dtype=False)
        if name.endswith(".json"):
            return pd.read_json(p, dtype=False)
        if name.endswith((".csv", ".tsv")):
            return pd.read_csv(p, sep=None, engine="python", keep_default_na=True)
    except (ValueError, OSError) as e:
        raise StageError(f"{p}: cannot read the score file ({type(e).__name__}: {e}). Fix: "
                         "write it as CSV, JSONL or Parquet with one row per response.") from e
    raise StageError(f"{p}: unsupported score file type. Fix: use .csv, .tsv, .json, .jsonl "
                     "or .parquet.")


def resolve_columns(df: pd.DataFrame, aspects: list[str], mapping: dict[str, str],
                    path: str) -> dict[str, str]:
    """aspect (and 'unified' when available) -> column of ``df``."""
    unknown = sorted(set(mapping) - set(aspects) - {UNIFIED})
    if unknown:
        raise StageError(f"proxy.score_columns names {unknown}, which are not aspects of this "
                         f"run ({aspects}) nor '{UNIFIED}'. Fix: correct or remove them.")
    out = {}
    for a in [*aspects, UNIFIED]:
        col = mapping.get(a)
        if col is None:
            col = next((c for c in (f"score_{a}", f"{a}_score", f"score__{a}")
                        if c in df.columns), None)
        if col is None:
            if a == UNIFIED:
                continue
            raise StageError(
                f"{path}: no score column for aspect {a!r} (columns: {list(df.columns)}). "
                f"Fix: proxy.score_columns={{{a}: <column>}}, or name the column score_{a}.")
        if col not in df.columns:
            raise StageError(f"{path}: proxy.score_columns maps {a!r} to column {col!r}, which "
                             f"the file does not have (columns: {list(df.columns)}). Fix: "
                             "correct the column name in proxy.score_columns.")
        out[a] = col
    return out


def numeric_scores(df: pd.DataFrame, cols: dict[str, str], path: str,
                   line_offset: int) -> np.ndarray:
    """(n, C) float64; a non-number or infinite value is an error naming line and column."""
    out = np.empty((len(df), len(cols)))
    for c, (name, col) in enumerate(cols.items()):
        raw = df[col]
        num = pd.to_numeric(raw, errors="coerce").to_numpy(np.float64)
        bad = (np.isnan(num) & raw.notna().to_numpy()) | np.isinf(num)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise StageError(f"{path}, line {i + line_offset}, column {col!r} ({name}): "
                             f"{raw.iloc[i]!r} is not a finite number ({int(bad.sum())} such "
                             "values). Fix: write numbers (an empty cell means 'no score').")
        out[:, c] = num
    return out


def _line_offset(path: str) -> int:
    """Line of the file's first data row (1-based): CSV/TSV have a header line."""
    return 2 if Path(path).name.lower().removesuffix(".gz").endswith((".csv", ".tsv")) else 1


def detect_kind(df: pd.DataFrame, kind: str) -> str:
    if kind != "auto":
        return kind
    return "pair" if {"chosen", "rejected"} <= set(df.columns) else "response"


def _input_column(df: pd.DataFrame, path: str, need: str) -> str:
    col = next((c for c in INPUT_KEYS if c in df.columns), None)
    if col is None:
        raise StageError(f"{path}: {need} needs an 'input' (or 'prompt') column to match rows "
                         f"to the pipeline's pairs (columns: {list(df.columns)}).")
    return col


def _text_keys(df: pd.DataFrame, cols: list[str], path: str, offset: int) -> list[bytes]:
    out = []
    for i, row in enumerate(zip(*(df[c].tolist() for c in cols))):
        try:
            out.append(text_key(*row))
        except ValueError as e:
            raise StageError(f"{path}, line {i + offset}: a key column ({', '.join(cols)}) is "
                             f"not text ({e}). Fix: write the texts as strings.") from e
    return out


def id_keys(df: pd.DataFrame, rated_path: Path, path: str) -> list[bytes]:
    """Digests of (input_id, response text) for the (input_id, response_id) rows of ``df``,
    via the ingest stage's rated table: the pair table knows a response by its input_id and
    text (unique per input), so identical texts under two inputs keep their own scores."""
    import pyarrow.parquet as pq

    rated = pq.read_table(rated_path, columns=["input_id", "response_id",
                                               "response"]).to_pandas()
    ids = pd.MultiIndex.from_frame(rated[["input_id", "response_id"]].astype(str))
    given = df[["input_id", "response_id"]].astype(str)
    pos = ids.get_indexer(pd.MultiIndex.from_frame(given))
    # readers that make response ids unique per table write them as "<input_id>:<your id>"
    prefixed = given.assign(response_id=given["input_id"] + ":" + given["response_id"])
    pos = np.where(pos >= 0, pos, ids.get_indexer(pd.MultiIndex.from_frame(prefixed)))
    want = pd.MultiIndex.from_frame(given)
    if (pos < 0).any():
        i = int(np.flatnonzero(pos < 0)[0])
        logger.warning("%s: %d score rows name an (input_id, response_id) the data does not "
                       "have (first: line %d, %s); they are not used", path, int((pos < 0).sum()),
                       i + _line_offset(path), tuple(want[i]))
    keys = [None] * len(df)
    for i in np.flatnonzero(pos >= 0):
        keys[i] = text_key(rated["input_id"].iat[pos[i]], rated["response"].iat[pos[i]])
    return keys


def build_table(df: pd.DataFrame, aspects: list[str], mapping: dict[str, str], kind: str,
                path: str, rated_path: Path | None) -> tuple[pd.DataFrame, dict]:
    """The lookup table (key, one float column per aspect [+ unified]) and its meta."""
    kind = detect_kind(df, kind)
    cols = resolve_columns(df, aspects, mapping, path)
    offset = _line_offset(path)
    values = numeric_scores(df, cols, path, offset)
    if kind == "pair":
        inp = _input_column(df, path, "score_kind=pair")
        fwd = _text_keys(df, [inp, "chosen", "rejected"], path, offset)
        rev = _text_keys(df, [inp, "rejected", "chosen"], path, offset)
        keys, values, lines = fwd + rev, np.vstack([values, -values]), \
            np.tile(np.arange(len(df)) + offset, 2)
        how = "input + chosen + rejected texts (either orientation)"
    elif {"input_id", "response_id"} <= set(df.columns) and rated_path is not None:
        keys, lines = id_keys(df, rated_path, path), np.arange(len(df)) + offset
        how = "input_id + response_id"
    else:
        inp = _input_column(df, path, "score_kind=response")
        if "response" not in df.columns:
            raise StageError(f"{path}: no 'response' column to match scores to responses "
                             f"(columns: {list(df.columns)}). Fix: add it, or input_id + "
                             "response_id, or use score_kind=pair with chosen/rejected.")
        keys, lines = _text_keys(df, [inp, "response"], path, offset), np.arange(len(df)) + offset
        how = "input + response texts"
    keep = np.array([k is not None for k in keys], dtype=bool)
    table = pd.DataFrame(values[keep], columns=list(cols))
    table.insert(0, "key", [k for k in keys if k is not None])
    _check_duplicates(table, lines[keep], path)
    table = table.drop_duplicates("key").reset_index(drop=True)
    meta = {"kind": kind, "by": "id" if how.startswith("input_id") else "text",
            "columns": cols, "names": list(cols), "path": str(path),
            "matched_by": how, "n_rows": int(len(df)), "n_keys": int(len(table))}
    return table, meta


def _check_duplicates(table: pd.DataFrame, lines: np.ndarray, path: str) -> None:
    """The same response (or pair) twice is fine with the same scores, an error otherwise."""
    dup = table.duplicated("key", keep=False).to_numpy()
    if not dup.any():
        return
    sub = table[dup]
    vals = sub.drop(columns="key")
    spread = vals.groupby(sub["key"], sort=False).agg(lambda s: s.nunique(dropna=False))
    bad_keys = spread.index[(spread > 1).any(axis=1)]
    if len(bad_keys):
        where = lines[dup][sub["key"].isin(bad_keys[:1]).to_numpy()]
        raise StageError(f"{path}: the same response (or pair) has different scores on lines "
                         f"{where.tolist()[:4]} ({len(bad_keys)} such keys). Fix: keep one "
                         "score per response, e.g. average your raters first.")


# ----------------------------------------------------------------------------- scoring
class ScoreLookup:
    """Gaps of pairs from the lookup table; ``names`` picks and orders the columns served.

    ``scale`` (the margin baseline without a mapped unified score): the one served column is
    mean_k(gap_k / scale_k), scale_k the std of aspect k's scores over the score file's rows
    (of its gaps, for per-pair gaps): the gap of the mean of standardised scores."""

    backend = "scores"

    def __init__(self, table: pd.DataFrame, meta: dict, names: list[str]):
        self.table, self.meta, self.names = table, meta, list(names)
        self.index = pd.Index(table["key"].to_numpy())
        self.values = table[list(names)].to_numpy(np.float64)
        self.scale = None if meta.get("scale") is None else np.asarray(meta["scale"], float)

    def _take(self, keys: list[bytes], what: str, examples) -> np.ndarray:
        pos = self.index.get_indexer(keys)
        out = np.full((len(keys), len(self.names)), np.nan)
        found = pos >= 0
        out[found] = self.values[pos[found]]
        missing = ~np.isfinite(out).all(1)
        if missing.any():
            i = int(np.flatnonzero(missing)[0])
            cols = [n for n, v in zip(self.names, out[i]) if not np.isfinite(v)]
            shown = " / ".join(repr(str(t)[:60]) for t in examples(i))
            raise StageError(
                f"{self.meta['path']}: {int(missing.sum())} of {len(keys)} {what} have no score "
                f"(matched by {self.meta['matched_by']}); first: {shown}, no {cols}. PD needs "
                "every aspect's score for every train pair. Fix: score those responses too, "
                "or check that the texts (or ids) in the score file are the data's.")
        return out

    def _side(self, pairs: pd.DataFrame, col: str) -> np.ndarray:
        first = pairs["input_id" if self.meta.get("by") == "id" else "input"]
        keys = keys_of(first, pairs[col])
        return self._take(keys, "responses", lambda i: (first.iat[i], pairs[col].iat[i]))

    def rewards(self, inputs, responses, progress: bool = False) -> np.ndarray:
        raise StageError("the scores backend serves the gaps of PAIRS (a response is known by "
                         "its input_id or input text); call gaps(pairs).")

    def pair_gaps(self, pairs: pd.DataFrame, progress: bool = False) -> np.ndarray:
        if self.meta["kind"] == "pair":
            keys = keys_of(pairs["input"], pairs["chosen"], pairs["rejected"])
            g = self._take(keys, "pairs", lambda i: (pairs["input"].iat[i],
                                                     pairs["chosen"].iat[i],
                                                     pairs["rejected"].iat[i]))
        else:
            g = self._side(pairs, "chosen") - self._side(pairs, "rejected")
        return g if self.scale is None else (g / self.scale).mean(1, keepdims=True)

    def spread(self) -> list[float]:
        """Per served column: the std of its values (scores, or gaps for per-pair gaps)."""
        sd = self.values.std(0)
        return np.where(sd > 0, sd, 1.0).tolist()

    def save(self, out_dir: Path) -> None:
        from ..run.artifacts import write_parquet

        write_parquet(Path(out_dir) / TABLE_FILE, self.table)
        (Path(out_dir) / META_FILE).write_text(json.dumps(
            {**self.meta, "names": self.names,
             "scale": None if self.scale is None else self.scale.tolist()}, indent=2))

    @classmethod
    def load(cls, out_dir: Path, cfg=None) -> "ScoreLookup":
        meta = json.loads((Path(out_dir) / META_FILE).read_text())
        return cls(pd.read_parquet(Path(out_dir) / TABLE_FILE), meta, meta["names"])


def scores_models(train: pd.DataFrame, aspects: list[str], cfg, seed: int, data_path: str,
                  rated_path: Path | None, unified: bool):
    """(aspect models, unified model or None) over the user's score file."""
    from .fixed import char_dlen, score_only_models

    path = cfg.scores_path or data_path
    if not path:
        raise StageError("proxy.backend=scores needs a score file: set proxy.scores_path (the "
                         "bundled data sets carry no scores of yours; their texts and ids are "
                         "in <run>/ingest/rated.parquet to score them).")
    table, meta = build_table(read_score_file(path), aspects, dict(cfg.score_columns),
                              cfg.score_kind, path, rated_path)
    logger.info("scores: %d keyed scores from %s (%s kind, matched by %s; columns %s)",
                meta["n_keys"], path, meta["kind"], meta["matched_by"], meta["columns"])
    lookup = ScoreLookup(table, meta, aspects)
    models = score_only_models(train, aspects, lookup, cfg, seed, char_dlen)
    if not unified:
        return models, None
    if UNIFIED in meta["columns"]:
        u = ScoreLookup(table, meta, [UNIFIED])
    else:
        u = ScoreLookup(table, {**meta, "scale": lookup.spread()}, aspects)
    return models, score_only_models(train.assign(aspect=UNIFIED), [UNIFIED], u, cfg, seed)
