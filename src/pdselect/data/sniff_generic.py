"""The column statistics of a sniffed file, and the guessing of a generic table from them.

    _generic(s)   # s: a Sniffed of no known schema -> s.shape, mapping, aspects, scales, notes

A generic table's shape is long when a short-valued text column such as ``aspect`` names the
aspect of each row and one numeric column holds the rating; else wide. The input / response /
id columns are found by name, else by how often values repeat (inputs repeat across their
responses, responses do not); the aspects are the numeric columns that are neither ids nor the
overall (a numeric column whose name contains "overall"); each scale is the observed min-max
widened by :func:`guess_scale`. :mod:`sniff` reads the file and tries the known schemas first.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from ..config import aspect_name_problem
from ..errors import InputError
from .rows import parse_rating, to_text

SCALES = [(0, 1), (1, 3), (0, 4), (1, 5), (0, 5), (1, 7), (0, 10), (1, 10), (0, 100), (1, 100)]
INPUT_NAMES = ("input", "prompt", "question", "instruction", "query", "context", "source",
               "dialog_history", "dialogue", "dialog", "history", "conversation", "messages",
               "article", "document", "post", "src")
RESPONSE_NAMES = ("response", "answer", "output", "completion", "reply", "summary",
                  "hypothesis", "generation", "target", "translation", "candidate", "mt",
                  "text")
INPUT_ID_NAMES = ("input_id", "prompt_id", "question_id", "qid", "pid", "context_id",
                  "dialog_id", "dialogue_id", "conversation_id", "conv_id", "doc_id", "item_id",
                  "sample_id", "instance_id", "task_id")
RESPONSE_ID_NAMES = ("response_id", "answer_id", "completion_id", "output_id")
ASPECT_COLUMN_NAMES = ("aspect", "attribute", "criterion", "criteria", "dimension", "metric",
                       "aspect_name", "quality", "facet")
RATING_NAMES = ("rating", "score", "value", "grade", "label", "judgement", "judgment")
ID_PATTERN = re.compile(r"(^|[_\-. ])(id|ids|idx|index|uid|uuid|key|hash|row|line|rank)$", re.I)
# numeric columns that are metadata, not ratings: counts, lengths, positions, times (issue 17:
# an `n_raters` or `turn` column silently became an aspect)
METADATA_PATTERN = re.compile(
    r"(^|[_\-. ])(n|num|number|count|cnt|nb)([_\-. ]|$)|^(n|num)(raters?|annotators?|votes?)"
    r"|raters?$|annotators?$|judges?$|workers?$|votes?$|(^|[_\-. ])(length|len|tokens?|words?|"
    r"chars?|characters|year|date|time|timestamp|duration|seconds|secs|position|pos|order|"
    r"turn|step|epoch|seed|version|round|batch|fold|index|idx|offset)([_\-. ]|$)", re.I)


@dataclass
class Column:
    name: str
    n: int = 0  # records holding the key
    missing: int = 0
    numeric: int = 0
    integer: bool = True
    lo: float = math.inf
    hi: float = -math.inf
    text: int = 0
    chat: int = 0
    other: int = 0
    text_len: int = 0
    values: dict = field(default_factory=dict)  # value -> count, first sniff.SAMPLE records
    capped: bool = False

    def see(self, value: Any, sample: bool) -> None:
        self.n += 1
        if isinstance(value, (list, dict)):
            text, problem = to_text(value)
            if problem is None:
                self.chat += 1
                self.text_len += len(text or "")
                self._count(text, sample)
            else:
                self.other += 1
            return
        x, problem = parse_rating(value)
        if problem == "missing":
            self.missing += 1
            return
        if problem is None and not isinstance(value, bool):
            self.numeric += 1
            self.lo, self.hi = min(self.lo, x), max(self.hi, x)
            self.integer = self.integer and float(x).is_integer()
            self._count(x, sample)
        elif isinstance(value, str):
            self.text += 1
            self.text_len += len(value)
            self._count(value, sample)
        else:
            self.other += 1

    def _count(self, value: Any, sample: bool) -> None:
        if not sample:
            return
        if len(self.values) < 5000 or value in self.values:
            self.values[value] = self.values.get(value, 0) + 1
        else:
            self.capped = True

    @property
    def present(self) -> int:
        return self.n - self.missing

    @property
    def kind(self) -> str:
        p = self.present
        if p == 0:
            return "empty"
        if self.numeric >= 0.95 * p:
            return "numeric"
        if self.text + self.chat + self.numeric >= 0.95 * p and self.text + self.chat > 0:
            return "chat" if self.chat > self.text else "text"
        return "other"

    @property
    def mean_len(self) -> float:
        return self.text_len / max(1, self.text + self.chat)

    def repeat_ratio(self) -> float:
        """Sampled values per distinct value (1.0: every value unique)."""
        n = sum(self.values.values())
        return n / max(1, len(self.values))

    def describe(self) -> str:
        kind = self.kind
        if kind == "numeric":
            rng = f"{fmt_num(self.lo)}..{fmt_num(self.hi)}"
            return f"numeric {rng}" + ("" if self.integer else " (not whole numbers)")
        if kind in ("text", "chat"):
            return f"{kind}, {len(self.values)}{'+' if self.capped else ''} distinct, " \
                   f"mean {self.mean_len:.0f} chars"
        return kind


@dataclass
class Sniffed:
    path: str
    fmt: str
    n_records: int
    columns: dict[str, Column]
    source: str = "generic"
    shape: str | None = None
    mapping: dict[str, str] = field(default_factory=dict)  # canonical -> column
    aspects: list[str] = field(default_factory=list)
    aspect_columns: dict[str, str] = field(default_factory=dict)  # aspect -> column (renamed)
    scales: dict[str, list[float]] = field(default_factory=dict)
    observed: dict[str, tuple[float, float]] = field(default_factory=dict)
    overall: bool = False
    notes: list[str] = field(default_factory=list)
    # guesses to check: aspect -> why it may not be a rating (kept), column -> why left out
    doubtful: dict[str, str] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)
    score_columns: dict[str, str] = field(default_factory=dict)  # aspect -> score column


def fmt_num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def guess_scale(lo: float, hi: float) -> list[float]:
    """The smallest common rating scale holding [lo, hi], else [lo, hi] rounded outwards."""
    fits = [s for s in SCALES if s[0] <= lo and hi <= s[1] and (lo >= 1 or s[0] == 0)]
    if fits:
        return [float(v) for v in min(fits, key=lambda s: (s[1] - s[0], -s[0]))]
    a, b = math.floor(lo), math.ceil(hi)
    return [float(a), float(b if b > a else a + 1)]


def metadata_reason(name: str) -> str | None:
    """Why a numeric column named ``name`` looks like metadata rather than a rating."""
    if METADATA_PATTERN.search(name.strip()):
        return "its name looks like metadata (a count, length, position or time), not a rating"
    return None


def value_doubt(c: Column) -> str | None:
    """Why a numeric column's values look unlike ratings (kept as an aspect, but flagged)."""
    if c.integer and c.hi - c.lo > 100:
        return (f"whole numbers over a wide range ({fmt_num(c.lo)}..{fmt_num(c.hi)}): a count "
                "or an id rather than a rating?")
    return None


def widening_note(name: str, c: Column, scale: list[float]) -> str | None:
    """Say so when the guessed scale was widened to hold a few out-of-range ratings (or no
    common scale fits): the user may prefer the narrow scale and those ratings rejected."""
    sample = {float(v): n for v, n in c.values.items() if isinstance(v, (int, float))}
    total = sum(sample.values())
    if not total:
        return None
    for lo, hi in sorted(SCALES, key=lambda s: s[1] - s[0]):
        inside = sum(n for v, n in sample.items() if lo <= v <= hi)
        if (hi - lo) < scale[1] - scale[0] and inside >= 0.98 * total and inside < total:
            out = sorted({fmt_num(v) for v in sample if not lo <= v <= hi})[:5]
            return (f"CHECK: scale of {name!r} guessed {_fmt_scale(scale)} to hold every "
                    f"rating, but only {total - inside} of {total} sampled ratings lie outside "
                    f"{_fmt_scale([lo, hi])} (values {', '.join(out)}): if the scale is "
                    f"{fmt_num(lo)}-{fmt_num(hi)}, set data.scales.{name}: [{fmt_num(lo)}, "
                    f"{fmt_num(hi)}] (those ratings are then rejected and counted)")
    if not any(s[0] <= c.lo and c.hi <= s[1] for s in SCALES):
        return (f"CHECK: no common rating scale holds {name!r}'s observed "
                f"{fmt_num(c.lo)}..{fmt_num(c.hi)}: its scale {_fmt_scale(scale)} is that "
                "range rounded outwards; set data.scales." + name + " if the true scale differs")
    return None


def _fmt_scale(scale) -> str:
    return "[" + ", ".join(fmt_num(v) for v in scale) + "]"


def _aspect_name(col: str) -> str:
    name = re.sub(r"\s+", "_", col.strip()) or "aspect"
    return name if aspect_name_problem(name) is None else f"{name}_rating"


def _pick(cols: list[Column], names: tuple[str, ...]) -> Column | None:
    by = {c.name.lower(): c for c in cols}
    for n in names:
        if n in by:
            return by[n]
    return None


def _generic(s: Sniffed) -> None:
    cols = list(s.columns.values())
    texts = [c for c in cols if c.kind in ("text", "chat")]
    numeric = [c for c in cols if c.kind == "numeric"]
    ids = _id_columns(cols, numeric)
    overall_like = [c for c in numeric if "overall" in c.name.lower()]
    ratings = [c for c in numeric if c.name not in ids and c not in overall_like]
    long_aspect = _long_aspect_column(texts, ratings)
    rating = None if long_aspect is None else _long_rating(numeric, ids)
    # long needs a rating column too; the aspect column stays out of the texts either way
    shape = "long" if rating is not None else "wide"
    s.shape = shape
    inp, resp = _input_response(s, cols, [c for c in texts if c is not long_aspect])
    s.mapping = {"input": inp.name, "response": resp.name}
    s.notes.append(f"input = {inp.name!r}, response = {resp.name!r}"
                   + (" (guessed from how often values repeat)"
                      if inp.name.lower() not in INPUT_NAMES or resp.name.lower()
                      not in RESPONSE_NAMES else ""))
    _map_ids(s, cols, ids, shape)
    overall = _map_overall(s, numeric, ids, rating)
    if shape == "long":
        _long(s, long_aspect, rating, ids)
    else:
        _wide(s, numeric, ids, overall)


def _id_columns(cols: list[Column], numeric: list[Column]) -> set[str]:
    """Names of the id columns: named like ids, or integers unique per sampled record."""
    ids = {c.name for c in cols if ID_PATTERN.search(c.name)
           or c.name.lower() in INPUT_ID_NAMES + RESPONSE_ID_NAMES}
    # an integer column unique per record over a real sample is a row id, not a rating
    ids |= {c.name for c in numeric if c.integer and c.present >= 20 and not c.capped
            and len(c.values) == sum(c.values.values())}
    return ids


def _long_rating(numeric: list[Column], ids: set[str]) -> Column | None:
    """The long shape's rating column: named like one, else the first non-id, non-overall."""
    return _pick([c for c in numeric if c.name not in ids], RATING_NAMES) or next(
        iter([c for c in numeric if c.name not in ids and "overall" not in c.name.lower()]),
        None)


def _input_response(s: Sniffed, cols: list[Column], free: list[Column]) -> tuple[Column, Column]:
    """The input and response columns among the ``free`` texts: by name, else by repeats."""
    inp = _pick(free, INPUT_NAMES)
    resp = _pick([c for c in free if c is not inp], RESPONSE_NAMES)
    # else by repeats: a response is (nearly) unique, an input repeats once per response;
    # a short label column (model, system) repeats far more and has few distinct values
    if resp is None:
        rest = [c for c in free if c is not inp]
        unique = [c for c in rest if c.repeat_ratio() < 1.5] or rest
        resp = max(unique, key=lambda c: (len(c.values), c.mean_len), default=None)
    if inp is None:
        rest = [c for c in free if c is not resp and c.repeat_ratio() >= 1.2]
        inp = max(rest, key=lambda c: (len(c.values), c.mean_len), default=None)
    if inp is None or resp is None or inp is resp:
        shown = ", ".join(f"{c.name} ({c.describe()})" for c in cols)
        raise InputError(s.path, "cannot tell which columns hold the input and the response "
                         f"(columns: {shown})", field="data.columns",
                         expected="two text columns: the input (prompt) and the response",
                         fix="rename them input and response, or write data.columns: {input: "
                         "<col>, response: <col>} in a config (source generic)")
    return inp, resp


def _map_ids(s: Sniffed, cols: list[Column], ids: set[str], shape: str) -> None:
    """Map the input id column, and the response id column in the long shape."""
    iid = _pick([c for c in cols if c.name in ids], INPUT_ID_NAMES)
    if iid is not None:
        s.mapping["input_id"] = iid.name
    rid = _pick([c for c in cols if c.name in ids], RESPONSE_ID_NAMES)
    if rid is not None and shape == "long":
        s.mapping["response_id"] = rid.name


def _map_overall(s: Sniffed, numeric: list[Column], ids: set[str],
                 rating: Column | None) -> Column | None:
    """The overall column (named like it, not an id, not the rating), mapped with its scale.
    A column named exactly ``overall`` is what the generic reader takes as the overall
    without any mapping, so init must say so whatever it holds (issue 17: the written config
    said "no overall" and validate then found one)."""
    exact = s.columns.get("overall")
    if exact is not None and exact is not rating and exact.kind != "numeric":
        s.overall = True
        s.notes.append(f"CHECK: column 'overall' holds {exact.describe()}, not numbers; the "
                       "generic reader takes a column of that name as the overall rating, so "
                       "its values would be rejected: rename the column in the file (e.g. "
                       "overall_label) or convert it to numbers")
        return None
    if exact is not None and exact is not rating and exact.name in ids:
        s.notes.append("CHECK: column 'overall' looks like an id (whole numbers, unique per "
                       "row) but its name makes it the overall rating: taken as the overall")
    overall = exact if exact is not None and exact is not rating and exact.kind == "numeric" \
        else next((c for c in numeric if "overall" in c.name.lower() and c.name not in ids
                   and c is not rating), None)
    if overall is not None:
        s.mapping["overall"] = overall.name
        s.overall = True
        s.observed["overall"] = (overall.lo, overall.hi)
        s.scales["overall"] = guess_scale(overall.lo, overall.hi)
    return overall


def _long_aspect_column(texts: list[Column], ratings: list[Column]) -> Column | None:
    """The column naming each row's aspect (long shape): one named like ``aspect``, else -
    when ONE numeric column could hold the ratings - a text column of few short, repeated
    values (a wide file's model/system column has several rating columns next to it)."""
    if not ratings:
        return None
    named = _pick(texts, ASPECT_COLUMN_NAMES)
    if named is not None or len(ratings) != 1:
        return named
    cands = [c for c in texts if 2 <= len(c.values) <= 30 and not c.capped and c.mean_len <= 40
             and c.repeat_ratio() >= 3 and c.name.lower() not in INPUT_NAMES + RESPONSE_NAMES]
    return min(cands, key=lambda c: len(c.values), default=None)


def _long(s: Sniffed, aspect: Column, rating: Column, ids: set[str]) -> None:
    s.mapping["aspect"], s.mapping["rating"] = aspect.name, rating.name
    found = [str(v).strip() for v in aspect.values if str(v).strip().lower() != "overall"]
    if "overall" in {str(v).strip().lower() for v in aspect.values}:
        s.overall = True
    if len(found) < 2:
        raise InputError(s.path, f"column {aspect.name!r} names {len(found)} aspect(s) "
                         f"{found}: PD needs at least two aspects", field=aspect.name,
                         fix="add ratings on at least one other aspect")
    s.aspects = found
    bad = [a for a in found if aspect_name_problem(a)]
    if bad:
        raise InputError(s.path, f"aspect value(s) {bad} cannot be aspect names "
                         f"({aspect_name_problem(bad[0])})", field=aspect.name,
                         fix="rename those values in the file")
    s.observed = {**s.observed, "rating": (rating.lo, rating.hi)}
    scale = guess_scale(rating.lo, rating.hi)
    for a in found:  # one rating column: one observed range for every aspect
        s.scales[a] = scale
    wide = widening_note(rating.name, rating, scale)
    if wide:
        s.notes.append(wide.replace(f"data.scales.{rating.name}:", "data.scales.<aspect>:"))
    if s.overall and "overall" not in s.scales:
        s.scales["overall"] = scale
    s.notes.append(f"long shape: one row per response x aspect; aspect = {aspect.name!r} "
                   f"({len(found)} values), rating = {rating.name!r}")


def _wide(s: Sniffed, numeric: list[Column], ids: set[str], overall: Column | None) -> None:
    cand = [c for c in numeric if c.name not in ids and c is not overall]
    for c in [c for c in cand if c.lo == c.hi]:
        s.notes.append(f"column {c.name!r} is constant ({fmt_num(c.lo)} on every row): left "
                       "out, since a rating that never varies cannot prefer one response "
                       "over another")
    cand = [c for c in cand if c.lo < c.hi]
    from .sniff_scores import split_scores

    cand = split_scores(s, cand)  # `helpfulness_score` beside `helpfulness`: a score, no aspect
    meta = {c.name: metadata_reason(c.name) for c in cand if metadata_reason(c.name)}
    if len(cand) - len(meta) >= 2:  # leave metadata-like columns out, saying so
        for name, why in meta.items():
            s.left_out[name] = why
            s.notes.append(f"CHECK: column {name!r} left out: {why}; if it IS a rating, add "
                           "it to data.aspects (and data.scales)")
        cand = [c for c in cand if c.name not in meta]
    if len(cand) < 2:
        shown = ", ".join(c.name for c in numeric) or "none"
        raise InputError(s.path, f"found {len(cand)} aspect column(s) (numeric, not an id, not "
                         f"the overall; numeric columns: {shown}): PD needs at least two "
                         "aspects", field="data.aspects", expected="two or more rating columns",
                         fix="add per-aspect ratings, or write the config by hand (source "
                         "generic, data.aspect_columns)")
    for c in cand:
        name = _aspect_name(c.name)
        s.aspects.append(name)
        if name != c.name:
            s.aspect_columns[name] = c.name
        s.observed[name] = (c.lo, c.hi)
        s.scales[name] = guess_scale(c.lo, c.hi)
        why = meta.get(c.name) or value_doubt(c)
        if why:
            s.doubtful[name] = why
            s.notes.append(f"CHECK: aspect {name!r} is a guess: {why}; remove it from "
                           "data.aspects if it is not a rating")
        wide = widening_note(name, c, s.scales[name])
        if wide:
            s.notes.append(wide)
    s.notes.append("wide shape: one row per response, one column per aspect (the numeric "
                   "columns that are not ids, the overall, constant or metadata-like)")
