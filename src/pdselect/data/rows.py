"""Row-level rules shared by every reader, so each source module only maps its schema.

A reader calls :meth:`TableBuilder.require` for the fields a record must have and
:meth:`TableBuilder.add` once per response; :meth:`TableBuilder.finish` returns the RatedTable.

Rules (the same for all sources):
  * rating None / NaN / inf / "N/A" / ""   -> NaN, only *counted* as "rating missing (<aspect>)"
  * rating not a number, or out of scale    -> NaN, rejected with the record written aside
    (reason "rating not a number (<aspect>)" / "rating out of scale (<aspect>: expected lo-hi)";
    the bad value is in the reject's ``value`` field so reasons stay few and countable)
  * no selected aspect rated                -> response rejected ("no aspect rated")
  * empty / whitespace response             -> response rejected ("empty response")
  * a required field absent                 -> rejected ("missing field '<name>'"); absent on
    every record means the schema is wrong: InputError naming the fields found and the reader
    that may fit
  * a rating too large for a float (1e999)   -> rejected as out of scale
  * a response_id seen before               -> later copies rejected ("duplicate response_id")
  * a response text (whitespace-stripped) seen before under the same input -> later copies
    rejected ("duplicate response text for this input"): identical texts are never paired;
    the generic source instead AVERAGES the copies' ratings into the first (data/repeats.py,
    the mqm rule: a per-rater table rates one response several times)
  * an input_id seen before with a different input text -> rejected ("input_id reused with a
    different input text"); the first text is kept, never a silent merge
  * a prompt / response that is not text (see :func:`to_text`) -> rejected
    ("<field> is not text (<what>)"), never stringified with repr
With ``strict`` the first row problem (not a missing rating) raises InputError instead.

Chat messages as text (:func:`to_text`): a list of ``{"role": r, "content": c}`` messages
renders one turn per line as ``"r: c"`` joined by "\n" (a message without a role: ``c``); a
single message (a one-element list or a bare message object) renders as its content only; a
content that is a list of parts keeps the parts' ``text``, joined by "\n". A list of strings
is a list of turns, one per line. Numbers, booleans, other objects and mixed lists are
rejected.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import math
import re
from collections import Counter
from typing import Any

import pandas as pd

from ..errors import InputError
from ..run.artifacts import ParquetAppender
from .rejects import RejectLog
from .schema import RATED_BASE, RatedTable
from . import repeats
from .spill import SPILL_ROWS, spill_target, temp_name
from .formats import HugeNumber

log = logging.getLogger(__name__)

MISSING_TOKENS = {"", "n/a", "na", "none", "null", "nan", "-"}
TEXT_FIELDS = ["input", "response"]  # RATED_BASE's text columns, left out of a spilled df
STRICT_FIX = "fix or remove the row, or set data.strict=false to reject bad rows instead"

# Top-level fields that identify each reader's schema (for "which reader may fit" hints).
SIGNATURES: dict[str, set[str]] = {
    "ultrafeedback": {"instruction", "completions"},
    "helpsteer2": {"prompt", "response", "helpfulness", "correctness", "coherence"},
    "pairs": {"prompt", "chosen", "rejected", "aspect"},
    "usr_topical_chat": {"dialog_history", "response", "model", "fact", "uses_knowledge"},
    "summeval_op": {"reviews", "summaries"},
}


def digest(text: str) -> bytes:
    """16 bytes standing for a text in the builder's "seen before?" sets (collisions: 2^-64
    at 2^32 texts)."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def short_hash(text: str, n: int = 12) -> str:
    """A short stable id: sha1 of the text (ids must survive re-runs and file re-orderings)."""
    return hashlib.sha1(text.encode("utf-8", errors="surrogatepass")).hexdigest()[:n]


def guess_reader(keys: set[str]) -> str:
    """The reader whose signature fields overlap ``keys`` most, as a hint sentence."""
    best = max(SIGNATURES, key=lambda r: len(SIGNATURES[r] & keys) / len(SIGNATURES[r]))
    if not SIGNATURES[best] & keys:
        return "source 'generic' with data.columns / data.aspect_columns mapping your fields"
    if best.startswith("usr_"):
        return "source 'usr_topical_chat' or 'usr_persona_chat'"
    return f"source '{best}'"


def select_aspects(wanted: list[str], available: list[str], path: str) -> list[str]:
    """Validate ``cfg.aspects`` against what the source rates; empty means all of them."""
    for a in wanted:
        if a not in available:
            close = difflib.get_close_matches(a, available, n=1, cutoff=0.5)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise InputError(path, f"aspect {a!r} is not rated by this source{hint}",
                             field="data.aspects", expected="some of " + ", ".join(available),
                             fix="correct data.aspects or leave it empty for all aspects")
    return list(wanted) if wanted else list(available)


def parse_rating(value: Any) -> tuple[float, str | None]:
    """(number, None) | (nan, "missing") | (nan, "not a number") | (nan, "too large")."""
    if isinstance(value, bool):
        return math.nan, "not a number"
    if isinstance(value, HugeNumber):
        return math.nan, "too large"
    if isinstance(value, str):
        token = value.strip().lower()
        if token in MISSING_TOKENS:
            return math.nan, "missing"
        try:
            value = float(token)
        except ValueError:
            return math.nan, "not a number"
        if math.isinf(value) and token.lstrip("+-") not in ("inf", "infinity"):
            return math.nan, "too large"  # "1e999" overflowed; "inf" is a missing token
    if value is None:
        return math.nan, "missing"
    try:
        value = float(value)  # ints of any size, numpy scalars from Parquet / datasets
    except OverflowError:
        return math.nan, "too large"
    except (TypeError, ValueError):
        return math.nan, "not a number"
    if not math.isfinite(value):
        return math.nan, "missing"
    return value, None


def shown(value: Any) -> Any:
    """A value as written into a reject: huge numbers and long strings cut to a few words."""
    if isinstance(value, HugeNumber):
        return value.text
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**18:
        return f"<{len(str(abs(value)))}-digit integer>"
    if isinstance(value, str):
        value = value if len(value) <= 200 else value[:200] + "...[cut]"
        return value.encode("utf-8", "backslashreplace").decode("utf-8")  # lone surrogates
    return value


def _content(value: Any) -> str | None:
    """A chat message's content as text: a string, or a list of parts with ``text``."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(p, dict) and isinstance(p.get("text"), str)
                                       or isinstance(p, str) for p in value):
        return "\n".join(p if isinstance(p, str) else p["text"] for p in value)
    return None


def _is_message(value: Any) -> bool:
    return (isinstance(value, dict) and "content" in value
            and isinstance(value.get("role", ""), str) and _content(value["content"]) is not None)


def to_text(value: Any) -> tuple[str | None, str | None]:
    """(text, None) or (None, what the value is instead). None stays None (empty)."""
    if value is None or isinstance(value, str):
        problem = None
        if isinstance(value, str) and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return None, "invalid Unicode (lone surrogate)"
        return value, problem
    if isinstance(value, bool):
        return None, "a boolean"
    if isinstance(value, (int, float)) or type(value).__module__ == "numpy":
        return None, "a number"
    if _is_message(value):
        return to_text(_content(value["content"]))
    if isinstance(value, list):
        if all(isinstance(v, str) for v in value):
            return to_text("\n".join(value))
        if all(_is_message(m) for m in value):
            if len(value) == 1:
                return to_text(_content(value[0]["content"]))
            turns = [(f"{m['role']}: " if m.get("role") else "") + _content(m["content"])
                     for m in value]
            return to_text("\n".join(turns))
        return None, "a list that is not chat messages"
    if isinstance(value, dict):
        return None, "an object that is not a chat message"
    return None, f"a {type(value).__name__}"


class TableBuilder:
    """Collects responses for one RatedTable, applying the module-level rules."""

    def __init__(self, *, source: str, aspects: list[str], scales: dict[str, tuple[float, float]],
                 has_overall: bool, rejects: RejectLog, strict: bool, spill: bool = True):
        self.source, self.aspects, self.scales = source, aspects, scales
        self.has_overall, self.rejects, self.strict = has_overall, rejects, strict
        self.rows: list[dict[str, Any]] = []
        self.ids: set[str] = set()
        # digests, not texts: the rules need "seen before?", and a million texts are gigabytes
        self.texts: set[tuple[str, bytes]] = set()  # (input_id, digest of stripped response)
        self.inputs: dict[str, bytes] = {}  # input_id -> digest of the first input text seen
        # the ingest stage's file (data/spill.py); ``spill=False``: a reader that still needs
        # the texts after finish() (helpsteer2 matches its preference file on them)
        self.spill_path = spill_target() if spill else None
        self.spill = (None if self.spill_path is None
                      else ParquetAppender(temp_name(self.spill_path)))
        self.light: list[pd.DataFrame] = []  # spilled batches without their texts
        self.missing = Counter()  # (file, aspect) -> count of missing ratings
        self.checked, self.absent = Counter(), Counter()  # field -> records checked / lacking
        self.keys_seen: set[str] = set()
        self.first_file = ""
        # None: a repeated response text is rejected; a dict (generic source): its ratings are
        # kept here and averaged into the first row at finish() (data/repeats.py)
        self.repeats: dict[tuple[str, bytes], list[dict[str, float]]] | None = None

    # ----------------------------------------------------------------------------- problems
    def reject(self, reason: str, file: str, line: int, record: Any, field: str | None = None,
               expected: str = "", **extra) -> None:
        if self.strict:
            raise InputError(file, reason + (f" (value {extra['value']!r})" if "value" in extra
                                             else ""), line=line, field=field,
                             expected=expected, fix=STRICT_FIX)
        self.rejects.add(reason, file=file, line=line, field=field, record=record, **extra)

    def require(self, file: str, line: int, record: dict, fields: list[str],
                prefix: str = "", nullable: tuple[str, ...] = ()) -> bool:
        """True if ``record`` has every field, else reject it naming the first one absent.

        A field counts as absent when its key is missing, or its value is None unless the
        field is ``nullable`` (a null rating is a missing rating, a renamed column is not)."""
        if not prefix:
            self.keys_seen |= set(record)
            self.first_file = self.first_file or file
        ok = True
        kind = re.sub(r"\[\d+\]", "[*]", prefix)  # count completions[3].x as completions[*].x
        for f in fields:
            self.checked[kind + f] += 1
            if f not in record or (record[f] is None and f not in nullable):
                self.absent[kind + f] += 1
                if ok:
                    if self.strict and len(self.ids) + self.checked[kind + f] == 1:
                        raise self._schema_error(file, line, prefix + f)  # first record
                    if self.strict:
                        raise InputError(file, f"field '{prefix + f}' is missing", line=line,
                                         field=prefix + f, expected="a value", fix=STRICT_FIX)
                    self.rejects.add(f"missing field '{prefix + f}'", file=file, line=line,
                                     field=prefix + f, record=record)
                ok = False
        return ok

    def _schema_error(self, file: str, line: int | None, field: str) -> InputError:
        found = ", ".join(sorted(self.keys_seen)) or "none"
        guess = guess_reader(self.keys_seen)
        fix = (f"the other fields look like {guess}: was '{field}' renamed? Restore it, or "
               "map your columns with source 'generic'") if f"'{self.source}'" in guess else (
            f"check data.source; these fields may fit {guess}")
        return InputError(file, f"field '{field}' is missing (fields found: {found})",
                          line=line, field=field, expected=f"the {self.source} schema", fix=fix)

    # ----------------------------------------------------------------------------- rows
    def text(self, value: Any, file: str, line: int, record: Any, field: str,
             empty: str | None = None, name: str = "") -> str | None:
        """``value`` as text (chat rendered, see :func:`to_text`), or None after rejecting it.

        ``empty``: the reject reason for a missing/blank value (None: blank text is fine);
        ``name``: the field's name in the reason (default: the last part of ``field``)."""
        text, problem = to_text(value)
        if problem:
            name = name or re.sub(r"^.*\.", "", field)  # completions[2].response -> response
            self.reject(f"{name} is not text ({problem})" if "Unicode" not in problem else
                        f"{problem} in {name}", file, line, record, field=field,
                        expected="a string or a list of chat messages", value=shown(value))
            return None
        if empty and (text is None or not text.strip()):
            self.reject(empty, file, line, record, field=field, expected="non-empty text")
            return None
        return "" if text is None else text

    def text_fields(self, file: str, line: int, record: dict,
              fields: dict[str, str | None]) -> list[str] | None:
        """``record[field]`` as text for each field (value: its ``empty`` reason, see
        :meth:`text`), or None after rejecting the FIRST bad field: one reject per record."""
        out = []
        for field, empty in fields.items():
            t = self.text(record[field], file, line, record, field, empty=empty)
            if t is None:
                return None
            out.append(t)
        return out

    def rating(self, name: str, value: Any, file: str, line: int, record: Any) -> float:
        """Parse one rating; count it if missing, reject it if invalid; NaN unless valid."""
        x, problem = parse_rating(value)
        lo, hi = self.scales.get(name, (-math.inf, math.inf))
        if problem == "missing":
            self.missing[(file, name)] += 1
        elif problem == "not a number":
            self.reject(f"rating not a number ({name})", file, line, record, field=name,
                        expected=f"a number in [{lo:g}, {hi:g}]", value=shown(value))
        elif problem or not lo <= x <= hi:
            self.reject(f"rating out of scale ({name}: expected {lo:g}-{hi:g})", file, line,
                        record, field=name, expected=f"a number in [{lo:g}, {hi:g}]",
                        value=shown(value))
            x = math.nan
        return x

    def add(self, file: str, line: int, record: Any, *, input_id: str, input: str,
            response_id: str, response: Any, ratings: dict[str, Any], overall: Any = None,
            field_prefix: str = "", parsed: dict[str, float] | None = None) -> bool:
        """Add one response; returns False if it was rejected. ``parsed``: ratings (aspect or
        'overall') the reader already checked and combined (e.g. averaged): used as given."""
        parsed = parsed or {}
        response = self.text(response, file, line, record, field_prefix + "response",
                             empty="empty response")
        if response is None:
            return False
        if self.repeats is not None and self._repeat(file, line, record, input_id, input,
                                                     response, ratings, overall):
            return True
        if response_id in self.ids:
            self.reject("duplicate response_id", file, line, record, field="response_id",
                        expected="unique responses", value=response_id)
            return False
        d_input = digest(input)
        if self.inputs.get(input_id, d_input) != d_input:
            self.reject("input_id reused with a different input text", file, line, record,
                        field="input_id", expected="one input text per input_id (the first "
                        "one seen is kept)", value=input_id)
            return False
        if (input_id, digest(response.strip())) in self.texts:
            self.reject("duplicate response text for this input", file, line, record,
                        field=field_prefix + "response", expected="different responses per "
                        "input (identical texts cannot form a pair; the first is kept)",
                        value=response_id)
            return False
        row = {"input_id": input_id, "input": input, "response_id": response_id,
               "response": response}
        for a in self.aspects:
            row[a] = parsed[a] if a in parsed else self.rating(a, ratings.get(a), file, line,
                                                                 record)
        if all(math.isnan(row[a]) for a in self.aspects):
            self.reject("no aspect rated", file, line, record,
                        expected="at least one of " + ", ".join(self.aspects))
            return False
        if self.has_overall:
            row["overall"] = parsed["overall"] if "overall" in parsed else \
                self.rating("overall", overall, file, line, record)
        self.ids.add(response_id)
        self.texts.add((input_id, digest(response.strip())))
        self.inputs.setdefault(input_id, d_input)
        self.rows.append(row)
        if self.spill is not None and len(self.rows) >= SPILL_ROWS:
            self._flush()
        return True

    def _repeat(self, file: str, line: int, record: Any, input_id: str, input: str,
                response: str, ratings: dict, overall: Any) -> bool:
        """True when this is a response text seen before under the same input (and input
        text): its checked ratings are kept for averaging (data/repeats.py)."""
        key = (input_id, digest(response.strip()))
        if key not in self.texts or self.inputs.get(input_id) != digest(input):
            return False
        got = {a: self.rating(a, ratings.get(a), file, line, record) for a in self.aspects}
        if self.has_overall:
            got["overall"] = self.rating("overall", overall, file, line, record)
        self.repeats.setdefault(key, []).append(got)
        return True

    def _columns(self) -> list[str]:
        return RATED_BASE + self.aspects + (["overall"] if self.has_overall else [])

    def _frame(self, rows: list[dict[str, Any]]) -> pd.DataFrame:
        cols = self._columns()
        df = pd.DataFrame(rows, columns=cols)
        for c in cols[len(RATED_BASE):]:
            df[c] = df[c].astype("float64")
        return df

    def _flush(self) -> None:
        """Write the held rows to the spill file; keep their ids and ratings only."""
        df = self._frame(self.rows)
        self.spill.append(df)
        self.light.append(df.drop(columns=TEXT_FIELDS))
        self.rows = []

    def check_schema(self) -> None:
        """A field absent from every record checked means the schema is wrong, not the rows."""
        for field, n in self.checked.items():
            if n and self.absent[field] == n:
                raise self._schema_error(self.first_file, None, field)

    def nothing_usable(self, where: str) -> InputError:
        """No usable response: say why here, since the ingest stage writes no rejects file when
        reading fails (issue 17: "see the rejects file" pointed at a file that did not exist)."""
        if not self.rejects.total:
            return InputError(where, "holds no data rows (a header only, or nothing to read)",
                              expected="at least one rated, non-empty response",
                              fix="check that data.path points at the file holding the rows")
        return InputError(where, "no usable responses: every row was rejected: "
                          + self.rejects.summary(), expected="at least one rated, non-empty "
                          "response", fix="correct the rows for the reasons shown (first line "
                          "of each), or set data.strict=true to stop at the first bad row")

    def finish(self) -> RatedTable:
        self.check_schema()
        for (file, name), n in sorted(self.missing.items()):
            self.rejects.add(f"rating missing ({name})", file=file, field=name, n=n)
        if not self.rows and not self.light:
            raise self.nothing_usable(self.first_file or self.source)
        path = None
        rated = self.aspects + (["overall"] if self.has_overall else [])
        if self.spill is None:
            df = self._frame(self.rows)
            if self.repeats:
                df = repeats.patch_frame(df, self.repeats, digest, rated, {})
        else:
            if self.rows:
                self._flush()
            path = self.spill.commit(self.spill_path)
            if self.repeats:  # the first rows may be in the file already: one rewrite
                by_rid = repeats.rewrite_spill(path, self.repeats, digest, rated)
                self.light = repeats.patch_light(self.light, by_rid)
            df = pd.concat(self.light, ignore_index=True)
        if self.repeats:
            self.rejects.add(repeats.AVERAGED, n=len(self.repeats), field="response")
        log.info("%s: %d responses, %d inputs, aspects %s", self.source, len(df),
                 df["input_id"].nunique(), self.aspects)
        scales = {a: self.scales[a] for a in self.aspects + (["overall"] if self.has_overall
                                                             else []) if a in self.scales}
        return RatedTable(df=df, aspects=list(self.aspects), scales=scales,
                          has_overall=self.has_overall, source=self.source, path=path)
