"""``pdselect init``: look at a data file and write a commented config that validates.

    pdselect init --data my_ratings.csv --out my.yaml     # then: pdselect run -c my.yaml
    pdselect init --example wide --out wide.yaml          # a shipped example config + data

What is sniffed and how is in :mod:`pdselect.data.sniff`; here the sniffed facts become a YAML
config that names every guess in a comment, and :func:`init_command` runs the same check as
``pdselect validate --full`` on it before returning.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from .errors import InputError
from .data.sniff import Sniffed, fmt_num, sniff

HERE = Path(__file__).resolve().parent  # the package folder (examples/ inside it)
EXAMPLES = {  # name -> (config, data files), shipped in pdselect/examples/
    "demo": ("demo.yaml", []),
    "wide": ("wide.yaml", ["wide_ratings.csv"]),
    "long": ("long.yaml", ["long_ratings.jsonl"]),
}


def _q(value: Any) -> str:
    """A YAML scalar (JSON strings and numbers are valid YAML)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value, ensure_ascii=False)


def _qlist(values) -> str:
    return "[" + ", ".join(_q(v) for v in values) + "]"


def render_config(s: Sniffed, run_dir: str) -> str:
    """The commented YAML config for ``s``."""
    L = _header_lines(s, run_dir)
    if s.source == "generic":
        L += _column_lines(s)
    L += _aspect_lines(s)
    if s.scales and s.source in ("generic", "helpsteer3"):
        L += _scale_lines(s)
    if s.source == "helpsteer2":
        L.append("  # preference_path: preference.jsonl.gz   # HelpSteer2's pairwise "
                 "preferences: the pairs' hidden overall label")
    L += _default_lines(s)
    return "\n".join(L)


def _header_lines(s: Sniffed, run_dir: str) -> list[str]:
    """What was sniffed (as comments), then run_dir, seed and the data source and path."""
    return [f"# pdselect config written by `pdselect init --data {s.path}`.",
            f"# Sniffed {s.n_records} records ({s.fmt})" + (":" if s.columns else "."),
            *[f"#   {c.name}: {c.describe()}" for c in list(s.columns.values())[:40]],
            *[f"# - {n}" for n in s.notes],
            "# Check the guesses marked 'guessed' and 'CHECK' (above and below), then: "
            "pdselect validate -c <this file> --full; pdselect run -c <this file>",
            "# Every key, its default and help: pdselect config --fields",
            f"run_dir: {_q(run_dir)}",
            "seed: 0",
            "data:",
            f"  source: {s.source}",
            f"  path: {_q(s.path)}"]


def _column_lines(s: Sniffed) -> list[str]:
    """The generic source's shape and which column is what."""
    L = [f"  shape: {s.shape}   # " + (
        "one row per response x aspect" if s.shape == "long"
        else "one row per response, one column per aspect"),
        "  # which column is what (a column already named input/prompt, response, "
        "input_id, overall" + (", aspect, rating" if s.shape == "long" else "")
        + " needs no entry)",
        "  columns:"]
    L += [f"    {k}: {_q(v)}" for k, v in s.mapping.items()]
    if "input_id" not in s.mapping:
        L.append("    # input_id: <column>   # none found: an input's id is sha1(its text)")
    return L


def _aspect_lines(s: Sniffed) -> list[str]:
    """data.aspects (generic and pairs sources) and data.aspect_columns, when there are any."""
    L = []
    if s.source in ("generic", "pairs") and s.aspects:
        L.append("  # the aspects (PD needs at least two); remove one to leave it out")
        L.append(f"  aspects: {_qlist(s.aspects)}")
        for name, why in s.doubtful.items():  # issue 17: say where a guess is doubtful
            L.append(f"  # CHECK (guessed) {name!r}: {why}; remove it if it is not a rating")
        for name, why in s.left_out.items():
            L.append(f"  # left out: {name!r}: {why}; add it if it IS a rating")
    if s.aspect_columns:
        L.append("  aspect_columns:   # aspect name: column (renamed: reserved or spaced "
                 "names)" if s.source == "generic" else "  aspect_columns:   # aspect: field "
                 "with its pairwise score (negative: response1 better)")
        L += [f"    {_q(k)}: {_q(v)}" for k, v in s.aspect_columns.items()]
    return L


def _scale_lines(s: Sniffed) -> list[str]:
    """data.scales, each with the range observed in the file."""
    L = ["  # rating scales [min, max], guessed: the smallest common scale holding the "
         "observed range; ratings outside are rejected (counted in rejects.jsonl)",
         "  scales:"]
    for k, v in s.scales.items():
        seen = s.observed.get(k) or s.observed.get("rating")
        note = f"   # observed {fmt_num(seen[0])}..{fmt_num(seen[1])}" if seen else ""
        L.append(f"    {_q(k)}: {_qlist(v)}{note}")
    return L


def _default_lines(s: Sniffed) -> list[str]:
    """The aggregate, proxy and select sections: defaults, with why in comments."""
    from .data.sniff_scores import proxy_lines

    return ["aggregate:",
            "  # auto: hold 30% of inputs out for evaluation only when the data has an overall "
            "label; this data: " + ("it has one -> 30% held out" if s.overall else
                                    "none -> every pair is in the selection pool"),
            "  test_fraction: auto",
            "  min_pairs_per_aspect: 8   # an aspect with fewer train pairs stops the run",
            "# Defaults that change results: without an overall the evaluation overall is the "
            "mean of the aspects rescaled to [0, 1];",
            "# identical responses to one input are dropped (counted); inputs are truncated from "
            "the LEFT (proxy.max_input_tokens).",
            *proxy_lines(s, s.aspects),
            "select:",
            "  method: pd",
            "  budget: 0.3   # share of the pool's pairs kept",
            "  compare: [pd, margin, random]   # selectors compared side by side in the report",
            ""]


def init_config(data: str, out: str, force: bool = False) -> tuple[Path, Sniffed]:
    """Sniff ``data`` and write its config to ``out``; returns (path written, what was seen)."""
    dest = _out_file(out, force)
    s = sniff(data)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(data).name.split(".")[0]) or "data"
    text = render_config(s, f"runs/{stem}")
    from .config import load_config

    tmp = dest.with_name(dest.name + ".tmp")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        load_config(tmp)  # what we write must load
        tmp.replace(dest)
    except OSError as e:  # disk full, read-only, a parent that is a file: path, cause, fix
        raise InputError(str(dest), f"cannot write the config ({e.strerror or e})",
                         field="--out", fix="choose an --out on a writable disk with free "
                         "space (e.g. --out ./pdselect.yaml)") from None
    finally:
        tmp.unlink(missing_ok=True)  # never leave the temporary behind
    return dest, s


def _out_file(out: str, force: bool) -> Path:
    """``--out`` as the config file to write: a folder or an existing file (without --force)
    is refused with the fix."""
    dest = Path(out).expanduser()
    if dest.is_dir():
        raise InputError(str(dest), "is a folder; --out names the config FILE to write",
                         field="--out",
                         fix=f"pass a file name, e.g. --out {dest / 'pdselect.yaml'}")
    if dest.exists() and not force:
        raise InputError(str(dest), "exists", field="--out", fix="choose another --out, or "
                         "pass --force to overwrite it")
    return dest


def copy_example(name: str, out: str | None, force: bool = False) -> Path:
    """Copy a shipped example config (and its data, next to it) to ``out``."""
    if name not in EXAMPLES:
        raise InputError("--example", f"unknown example {name!r}", expected="one of "
                         + ", ".join(EXAMPLES), fix="pick one of those names")
    cfg_name, files = EXAMPLES[name]
    src = HERE / "examples"
    dest = _out_file(out, True) if out else Path(cfg_name)
    targets = [dest] + [dest.parent / f for f in files]
    clash = [str(t) for t in targets if t.exists()]
    if clash and not force:
        raise InputError(clash[0], "exists", field="--out", fix="choose another --out, or "
                         "pass --force to overwrite")
    dest.parent.mkdir(parents=True, exist_ok=True)
    text = (src / cfg_name).read_text(encoding="utf-8")
    for f in files:
        shutil.copyfile(src / f, dest.parent / f)
        text = re.sub(r"(?m)^(\s*path:\s*).*" + re.escape(f) + r".*$",
                      lambda m, f=f: m.group(1) + _q(str(dest.parent / f)), text)
    dest.write_text(text, encoding="utf-8")
    return dest


def init_command(data: str | None, example: str | None, out: str | None, force: bool,
                 check: bool = True) -> int:
    """``pdselect init``: write the config, print what was guessed, validate it (--full)."""
    if example:
        dest = copy_example(example, out, force)
        print(f"wrote {dest} (example {example!r})")
    else:
        dest, s = init_config(data, out or "pdselect.yaml", force)
        print(f"wrote {dest}: source {s.source}" + (f", {s.shape} shape" if s.shape else "")
              + (f", aspects {s.aspects or list(s.aspect_columns)}" if s.aspects
                 or s.aspect_columns else "")
              + f", overall {'yes' if s.overall else 'no'}")
        for n in s.notes:
            print(f"  {n}")
    if not check:
        print(f"next: pdselect validate -c {dest} --full && pdselect run -c {dest}")
        return 0
    from .config import load_config
    from .validate import validate

    report = validate(load_config(dest), full=True)
    print(report.render())
    if report.ok:
        print(f"next: pdselect run -c {dest}")
        return 0
    print(f"the config was written; fix what failed above in {dest}, then: pdselect validate "
          f"-c {dest} --full")
    return 1
