"""WMT MQM human evaluation (google/wmt-mqm-human-evaluation): expert error annotations per
translation, turned into per-category scores. Sources ``mqm`` (data.path) and ``mqm_ted_zhen`` /
``mqm_ted_ende`` (the bundled TED talks 2021 files).

Input: tab-separated, header on line 1, no quoting (csv.QUOTE_NONE), UTF-8; plain, ``.gz``,
``.tar.gz``/``.tgz``/``.tar`` (every ``.tsv``/``.tsv.gz`` member) or a folder of those. One
row = one error (or one ``No-error`` row) of one rater on one translation. Two upstream layouts,
recognised by their header (column order does not matter):

    TED / newstest: system doc doc_id seg_id rater source target category severity [comment]
    general MT:     system doc docSegId globalSegId rater source target category severity metadata

Item = (doc, segment, system): input = the source segment (``input_id`` = ``doc:seg``, with
seg = ``seg_id`` or ``docSegId``; prefixed ``<file stem>/`` when several files are read),
response = the target, ``<v>``/``</v>`` error-span tags stripped (the same translation appears
once per error). Per rater, an aspect's score is minus the summed weights of that rater's errors
in that top-level category (the part of ``category`` before ``/``), so higher = better and an
item with no error there scores 0; several raters of one item are AVERAGED. overall = minus the
sum of all weights (the upstream MQM score).

Choices:
  * aspects: accuracy, fluency, style, terminology, locale (``Locale convention``); by default
    only those with at least one error in the data (a category nobody used is constant and
    cannot train a proxy; ``data.aspects`` overrides).
  * weights (``data.mqm_weights``, merged over the upstream defaults): Major 5, Minor 1,
    Neutral 0, Minor Fluency/Punctuation 0.1, Non-translation 25 (whatever its severity).
  * ``Non-translation`` (a segment too garbled to mark single errors) counts once in overall and
    in EVERY aspect: leaving aspects at 0 would rate a garbled segment perfect on them.
  * ``Other`` and unknown top-level categories count in overall only; ``Source error`` rows
    count nowhere (not the translation's fault); ``HOTW-test`` rows (rater attention checks)
    are skipped and counted in the rejects.
  * human references (``ref``, ``refA``, ``ref-A``, ``ref.B``, ``Human-B``) are kept or dropped
    by ``data.mqm_references``; dropped ones are counted in the rejects.
  * a bad row (wrong column count, unknown severity, empty field) is rejected, and so is the
    rest of that rater's annotation of the item, since its score would be incomplete.
Scales: every aspect and overall on [-max(25, 5 x largest weight, observed), 0] (upstream
annotation caps five errors per segment, so -25 with the default weights).
"""

from __future__ import annotations

import gzip
import logging
import math
import re
import tarfile
import zlib
from collections import Counter, defaultdict
from pathlib import Path

from ..config import DataConfig
from ..errors import InputError
from .rejects import RejectLog
from .schema import RatedTable
from .loading import resolve_path
from .rows import STRICT_FIX, TableBuilder, select_aspects

log = logging.getLogger(__name__)

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "bundled" / "wmt_mqm_ted"
BUNDLED = {"mqm_ted_ende": BUNDLED_DIR / "mqm_ted_ende.tsv.gz",
           "mqm_ted_zhen": BUNDLED_DIR / "mqm_ted_zhen.tsv.gz"}
ASPECTS = ["accuracy", "fluency", "style", "terminology", "locale"]
TOP_LEVEL = {"accuracy": "accuracy", "fluency": "fluency", "style": "style",
             "terminology": "terminology", "locale convention": "locale", "locale": "locale"}
DEFAULT_WEIGHTS = {"Major": 5.0, "Minor": 1.0, "Neutral": 0.0, "Minor:Fluency/Punctuation": 0.1,
                   "Non-translation": 25.0}
LAYOUTS = {  # layout -> (required columns, segment column, optional last column)
    "ted": (["system", "doc", "doc_id", "seg_id", "rater", "source", "target", "category",
             "severity"], "seg_id", "comment"),
    "general": (["system", "doc", "docSegId", "globalSegId", "rater", "source", "target",
                 "category", "severity"], "docSegId", "metadata"),
}
EXPECTED_HEADER = ("a tab-separated header: system doc doc_id seg_id rater source target "
                   "category severity [comment] (TED/newstest layout) or system doc docSegId "
                   "globalSegId rater source target category severity metadata (general MT)")
NON_EMPTY = ("system", "doc", "target", "severity")
REFERENCE = re.compile(r"^(ref|human)([-._ ]?[a-z0-9]{1,3})?$", re.IGNORECASE)
TAG = re.compile(r"</?v>")
TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")
DIR_SUFFIXES = (".tsv", ".tsv.gz") + TAR_SUFFIXES


def is_reference(system: str) -> bool:
    return bool(REFERENCE.match(system.strip()))


def strip_tags(text: str) -> str:
    return TAG.sub("", text).strip()


# ================================================================================= weights
class Weights:
    """Error weight and the aspects it counts in, from ``data.mqm_weights``."""

    def __init__(self, given: dict[str, float]):
        merged = {k.strip().lower(): float(v) for k, v in {**DEFAULT_WEIGHTS, **given}.items()}
        for k, v in merged.items():
            if not 0 <= v < math.inf:
                raise InputError("<data.mqm_weights>", f"weight {v!r} for {k!r} is not >= 0",
                                 field=f"data.mqm_weights.{k}", expected="a finite number >= 0",
                                 fix="correct the weight")
        self.w = merged
        self.severities = {k for k in merged if ":" not in k and k != "non-translation"}
        self.severities.add("no-error")
        self.max = max(merged.values(), default=0.0)

    def of(self, severity: str, category: str) -> tuple[float, str]:
        """(weight, where): where = an aspect, 'all', 'overall' or 'none'."""
        sev = severity.strip().lower()
        cat = category.strip().lower().replace("_", " ").rstrip("!").strip()
        top = cat.split("/", 1)[0].strip()
        if sev == "no-error" or top in ("no-error", "no error"):
            return 0.0, "none"
        if top in ("source error", "source issue"):
            return 0.0, "none"
        if top in ("non-translation", "non translation"):
            return self.w["non-translation"], "all"
        w = self.w.get(f"{sev}:{cat}", self.w.get(f"{sev}:{top}", self.w[sev]))
        return w, TOP_LEVEL.get(top, "overall")


# ================================================================================= files
def _members(path: str) -> list[tuple[str, bytes]]:
    """(name for errors, raw bytes) of every TSV under ``path``."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.name.endswith(DIR_SUFFIXES))
        if not files:
            raise InputError(str(p), "folder holds no MQM TSV files", expected="files ending "
                             + ", ".join(DIR_SUFFIXES), fix="point data.path at the TSV files")
        return [m for f in files for m in _members(str(f))]
    if p.exists() and not p.is_file():
        from .loading import special_kind

        raise InputError(str(p), f"is not a regular file (a {special_kind(p)})",
                         field="data.path", expected="a regular MQM TSV file or folder",
                         fix="write the data to a regular file first and point data.path at it")
    if not p.is_file():
        raise InputError(str(p), "file not found", field="data.path", expected="an existing "
                         "MQM TSV file (.tsv, .tsv.gz, .tar.gz) or folder",
                         fix="check data.path (relative paths start from the working dir)")
    if p.name.endswith(TAR_SUFFIXES):
        return _tar_members(p)
    data = p.read_bytes()
    return [(str(p), _gunzip(str(p), data) if p.name.endswith(".gz") else data)]


def _gunzip(name: str, data: bytes) -> bytes:
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
        raise InputError(name, f"not a readable gzip file ({e})", expected="a gzip-compressed "
                         "TSV", fix="re-download the file, or decompress it and pass the .tsv"
                         ) from e


def _tar_members(p: Path) -> list[tuple[str, bytes]]:
    try:
        with tarfile.open(p, "r:*") as tar:
            out = []
            for m in sorted(tar.getmembers(), key=lambda m: m.name):
                base = m.name.rsplit("/", 1)[-1]
                if m.isfile() and base.endswith((".tsv", ".tsv.gz")) and not base.startswith("._"):
                    name, data = f"{p}::{m.name}", tar.extractfile(m).read()
                    out.append((name, _gunzip(name, data) if base.endswith(".gz") else data))
    except (tarfile.TarError, OSError, EOFError) as e:
        raise InputError(str(p), f"not a readable tar archive ({e})", expected="a .tar.gz of "
                         "MQM TSV files", fix="re-download the archive") from e
    if not out:
        raise InputError(str(p), "archive holds no .tsv member", expected="a .tar.gz holding "
                         "MQM .tsv files", fix="point data.path at the TSV file itself")
    return out


def _layout(name: str, header: list[str]) -> tuple[list[str], str, str]:
    for required, seg, optional in LAYOUTS.values():
        if set(required) <= set(header):
            return required, seg, optional
    raise InputError(name, "not an MQM TSV: header is " + " ".join(header)[:300], line=1,
                     expected=EXPECTED_HEADER, fix="pass the upstream file unchanged (header "
                     "line included, tab-separated), rename the columns to these names, or use "
                     "source 'generic' for other rated tables")


# ================================================================================= rows
class _Reader:
    """Accumulates per-(item, rater) error sums over all rows of all files."""

    def __init__(self, cfg: DataConfig, rejects: RejectLog):
        self.cfg, self.rejects, self.weights = cfg, rejects, Weights(cfg.mqm_weights)
        self.items: dict[tuple, dict] = {}       # (input_id, system) -> item
        self.sums: dict[tuple, dict] = {}        # (input_id, system, rater) -> {where: sum}
        self.tainted: dict[tuple, tuple] = {}    # (input_id, system, rater) -> (file, line)
        self.cut: dict[tuple, tuple] = {}        # the same, cut by max_rows
        self.stats = Counter()
        self.budget = cfg.max_rows if cfg.max_rows is not None else -1

    def bad(self, reason: str, file: str, line: int, record, field=None, expected="", **kw):
        if self.cfg.strict:
            raise InputError(file, reason, line=line, field=field, expected=expected,
                             fix=STRICT_FIX)
        self.rejects.add(reason, file=file, line=line, field=field, record=record, **kw)

    def read_file(self, name: str, data: bytes, prefix: str) -> None:
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        lines = data.split(b"\n")
        header = lines[0].rstrip(b"\r").decode("utf-8", "replace").split("\t")
        header = [h.strip() for h in header]
        # WMT general-MT 2023 files end the header with a comment field ("# Documentation:
        # <url>") that no row has: it is not a column (issue 17)
        while len(header) > 1 and (header[-1].startswith("#") or not header[-1]):
            log.info("%s: header field %r is a comment, not a column: ignored", name,
                     header.pop())
        required, seg_col, optional = _layout(name, header)
        hotw = []
        for no, raw in enumerate(lines[1:], 2):
            raw = raw.rstrip(b"\r")
            if not raw.strip():
                continue
            if self.budget == 0:
                self.stats["not_read"] += 1
                self.cut_off(raw, header, seg_col, prefix, name, no)
                continue
            self.budget -= 1
            self.stats["rows"] += 1
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                self.bad("not UTF-8", name, no, raw.decode("utf-8", "replace"))
                continue
            row = self.row(name, no, text, header, optional)
            if row is None:
                self.taint(dict(zip(header, text.split("\t"))), seg_col, prefix, name, no)
                continue
            if row["severity"].strip().lower() == "hotw-test":
                hotw.append(no)
                continue
            self.add(name, no, row, seg_col, prefix)
        if hotw:
            self.rejects.add("HOTW-test row (rater attention check, not a rating): skipped",
                             file=name, n=len(hotw), lines=hotw)
            self.stats["hotw"] += len(hotw)

    def row(self, name: str, no: int, text: str, header: list[str], optional: str):
        fields = text.split("\t")
        n = len(header)
        if len(fields) == n - 1 and header[-1] == optional:
            fields.append("")                    # the optional comment/metadata left off
        if len(fields) != n:
            self.bad(f"wrong column count (expected {n}, got {len(fields)})", name, no, text,
                     expected=f"{n} tab-separated fields (a tab inside a field?)")
            return None
        return dict(zip(header, fields))

    @staticmethod
    def key(row: dict, seg_col: str, prefix: str) -> tuple[str, str, str]:
        """(input_id, system, rater) of a row."""
        return (f"{prefix}{row['doc'].strip()}:{row[seg_col].strip()}", row["system"].strip(),
                row["rater"].strip())

    def cut_off(self, raw: bytes, header: list[str], seg_col: str, prefix: str, name: str,
                no: int) -> None:
        """A row past data.max_rows whose (item, rater) was partly read: that score would be
        incomplete, so the annotation is dropped like one with a rejected row."""
        row = dict(zip(header, raw.decode("utf-8", "replace").split("\t")))
        if all(c in row for c in ("system", "doc", seg_col, "rater")):
            key = self.key(row, seg_col, prefix)
            if key in self.sums:
                self.cut.setdefault(key, (name, no))

    def taint(self, row: dict, seg_col: str, prefix: str, name: str, no: int) -> None:
        """A rejected row makes its rater's annotation of the item incomplete. The key columns
        precede source/target in both layouts, so a row broken by a stray tab still names it."""
        if all(c in row for c in ("system", "doc", seg_col, "rater")):
            self.tainted.setdefault(self.key(row, seg_col, prefix), (name, no))

    def add(self, name: str, no: int, row: dict, seg_col: str, prefix: str) -> None:
        key = self.key(row, seg_col, prefix)
        system = key[1]
        for f in NON_EMPTY + (seg_col,):
            if not row[f].strip():
                why = "missing target" if f == "target" else f"missing field '{f}'"
                self.bad(why, name, no, row, field=f, expected="a non-empty value")
                self.taint(row, seg_col, prefix, name, no)
                return
        sev = row["severity"].strip().lower()
        if sev not in self.weights.severities:
            self.bad("unknown severity", name, no, row, field="severity", value=row["severity"],
                     expected="one of " + ", ".join(sorted(self.weights.severities)) +
                     " (or add it to data.mqm_weights)")
            self.taint(row, seg_col, prefix, name, no)
            return
        item = self.items.get(key[:2])
        if item is None:
            item = self.items[key[:2]] = {"input": strip_tags(row["source"]), "system": system,
                                          "response": strip_tags(row["target"]), "file": name,
                                          "line": no}
        elif strip_tags(row["target"]) != item["response"]:
            self.stats["target_differs"] += 1
        w, where = self.weights.of(row["severity"], row["category"])
        self.stats[f"where_{where}"] += 1
        if where == "overall" and not row["category"].strip().lower().startswith("other"):
            self.stats["unknown_category"] += 1
        s = self.sums.setdefault(key, defaultdict(float))
        s[where] += w

    def scores(self, aspects: list[str]) -> dict[tuple, dict]:
        """(input_id, system) -> {aspect: mean over raters, overall: mean}."""
        per_item: dict[tuple, list[dict]] = defaultdict(list)
        for key, s in self.sums.items():
            if key in self.tainted or key in self.cut:
                continue
            total = sum(s.values())
            per_item[key[:2]].append({**{a: -(s.get(a, 0.0) + s.get("all", 0.0))
                                         for a in aspects}, "overall": -total})
        for key, (file, line) in sorted(self.tainted.items()):
            self.rejects.add("rater's annotation of the item has a rejected row (its score "
                             "would be incomplete): dropped", file=file, line=line,
                             record={"input_id": key[0], "system": key[1], "rater": key[2]})
        for key, (file, line) in sorted(self.cut.items()):
            self.rejects.add("rater's annotation of the item cut by data.max_rows: dropped",
                             file=file, line=line, field="data.max_rows",
                             record={"input_id": key[0], "system": key[1], "rater": key[2]})
        return {k: {c: sum(r[c] for r in v) / len(v) for c in v[0]} | {"n_raters": len(v)}
                for k, v in per_item.items()}


def read_mqm_file(path: str, cfg: DataConfig, rejects: RejectLog) -> _Reader:
    """Read every row under ``path`` into per-(item, rater) sums (no table yet)."""
    r = _Reader(cfg, rejects)
    members = _members(path)
    for name, data in members:
        stem = re.sub(r"(\.tsv)?(\.gz)?$", "", name.rsplit("/", 1)[-1].rsplit("::", 1)[-1])
        r.read_file(name, data, f"{stem}/" if len(members) > 1 else "")
    if r.stats["not_read"]:
        log.info("max_rows=%s reached: %d further rows not read", cfg.max_rows,
                 r.stats["not_read"])
        rejects.add(f"not read: beyond data.max_rows={cfg.max_rows}", field="data.max_rows",
                    n=r.stats["not_read"])
    return r


def _aspects_present(r: _Reader, cfg: DataConfig, path: str) -> list[str]:
    if cfg.aspects:
        return select_aspects(cfg.aspects, ASPECTS, path)
    used = {w for s in r.sums.values() for w, v in s.items() if v > 0}
    present = [a for a in ASPECTS if a in used or "all" in used]
    if len(present) < len(ASPECTS):
        log.info("mqm: no error in categories %s: those aspects are left out",
                 [a for a in ASPECTS if a not in present])
    return present or list(ASPECTS)


def merge_identical(r: _Reader, scores: dict, rejects: RejectLog) -> list[list[tuple]]:
    """Items of one input with the same translation text (systems often agree on short
    segments), as groups: one response each, its scores the mean over the group's items. They
    are repeated ratings of one text; keeping one would pick a rater's verdict arbitrarily."""
    groups: dict[tuple, list[tuple]] = defaultdict(list)
    for key in sorted(scores):
        groups[(key[0], r.items[key]["response"])].append(key)
    for keys in groups.values():
        if len(keys) > 1:
            item = r.items[keys[0]]
            rejects.add("identical translation by several systems: merged into one response "
                        "(scores averaged)", file=item["file"], line=item["line"],
                        field="target", n=len(keys) - 1,
                        record={"input_id": keys[0][0], "systems": [k[1] for k in keys]})
    return list(groups.values())


def read_mqm(cfg: DataConfig, rejects: RejectLog) -> RatedTable:
    path = resolve_path(cfg, BUNDLED.get(cfg.source))
    r = read_mqm_file(path, cfg, rejects)
    aspects = _aspects_present(r, cfg, path)
    scores = r.scores(aspects)
    dropped = Counter()
    for key in sorted(scores):
        if cfg.mqm_references == "drop" and is_reference(key[1]):
            dropped[key[1]] += 1
            del scores[key]
    if dropped:
        rejects.add("human reference dropped (data.mqm_references=drop)", field="system",
                    n=sum(dropped.values()), systems=dict(sorted(dropped.items())))
    b = TableBuilder(source=cfg.source, aspects=aspects, scales={}, has_overall=True,
                     rejects=rejects, strict=cfg.strict)
    b.first_file = path  # errors name the file (mqm rows never pass b.require)
    for keys in merge_identical(r, scores, rejects):
        item, cols = r.items[keys[0]], aspects + ["overall"]
        s = {c: sum(scores[k][c] for k in keys) / len(keys) for c in cols}
        b.add(item["file"], item["line"], {"system": item["system"], "source": item["input"]},
              input_id=keys[0][0], input=item["input"], response_id=f"{keys[0][0]}:{keys[0][1]}",
              response=item["response"], ratings={a: s[a] for a in aspects},
              overall=s["overall"])
    table = b.finish()
    worst = max(r.weights.w.get("non-translation", 0.0),
                5 * max(v for k, v in r.weights.w.items() if k != "non-translation"))
    lo = min(-25.0, -worst, float(table.df[aspects + ["overall"]].min().min()))
    table.scales = {c: (lo, 0.0) for c in aspects + ["overall"]}
    st = r.stats
    log.info("%s: %d rows, %d items (system x segment), %d responses after merging identical "
             "texts, %d inputs; HOTW-test rows %d, source-error/no-error rows %d, overall-only "
             "rows %d (unknown categories %d), items whose target text differs between rows %d",
             cfg.source, st["rows"], len(r.items), len(table.df), table.df["input_id"].nunique(),
             st["hotw"], st["where_none"], st["where_overall"], st["unknown_category"],
             st["target_differs"])
    return table

