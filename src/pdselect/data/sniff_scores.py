"""Score columns next to rating columns (``pdselect init``): a user who already scored the
responses (a multi-objective reward model, an LLM judge) often keeps the scores beside the human
ratings, as ``helpfulness`` + ``helpfulness_score`` or ``rm_helpfulness``. Such a column is the
SCORE of the aspect it names, not an aspect of its own: PD can use it as the aspect's reward
(``proxy.backend=scores``) while the rating stays the aspect's label.

    cand = split_scores(s, cand)   # s.score_columns: aspect -> column; cand: the rating columns

Only a name that pairs with another rating column's name is taken as a score; a score-like
name with no rating to pair with (``armo_score`` alone) stays a rating and is marked CHECK,
because from the file alone one cannot tell which it is.
"""

from __future__ import annotations

import re

#: words that make a column a score of the aspect named by the rest of its name
SCORE_WORDS = ("score", "scores", "reward", "rm", "judge", "pred", "predicted", "model", "est")
_SEP = r"[_\-. ]"
_BEFORE = re.compile(rf"^(?:{'|'.join(SCORE_WORDS)}){_SEP}+(.+)$", re.I)
_AFTER = re.compile(rf"^(.+?){_SEP}+(?:{'|'.join(SCORE_WORDS)})$", re.I)


def score_base(name: str) -> str | None:
    """The aspect a score-like column name points at (``rm_helpfulness`` -> helpfulness)."""
    m = _BEFORE.match(name) or _AFTER.match(name)
    return m.group(1).lower() if m else None


def split_scores(s, cand: list) -> list:
    """Move score columns out of the rating candidates ``cand`` into ``s.score_columns``
    (keyed by the rating column's name; 'overall' -> 'unified'), noting each; returns the
    remaining candidates."""
    names = {c.name.lower(): c.name for c in cand}
    if s.overall:
        names.setdefault("overall", "overall")
    keep = []
    for c in cand:
        base = score_base(c.name)
        if base is not None and base in names and names[base] != c.name:
            aspect = "unified" if base == "overall" else names[base]
            s.score_columns[aspect] = c.name
            s.notes.append(f"column {c.name!r} looks like a SCORE of aspect {names[base]!r} "
                           "(a model's or judge's, beside the rating): not an aspect; "
                           "proxy.score_columns maps it")
        else:
            if base is not None:
                s.doubtful[c.name] = (f"named like a score ({c.name!r}) with no rating column "
                                      f"{base!r} beside it: a rating or your model's score?")
            keep.append(c)
    return keep


def proxy_lines(s, aspects: list[str]) -> list[str]:
    """The proxy section: the scores backend when every aspect has a score column, else the
    default proxy with the scores found listed as an option."""
    found = {a: col for a, col in s.score_columns.items()}
    full = aspects and all(a in found for a in aspects)
    mapping = ", ".join(f"{a}: {col}" for a, col in found.items())
    if full:
        return ["proxy:",
                "  # your scores were found beside the ratings (one per aspect): PD uses them,",
                "  # nothing is trained; the ratings stay the labels. To train proxies instead:",
                "  # backend: frozen_encoder (and remove score_columns)",
                "  backend: scores",
                f"  score_columns: {{{mapping}}}"]
    lines = ["proxy:", "  backend: frozen_encoder", "  encoder: minilm"]
    if found:
        missing = [a for a in aspects if a not in found]
        lines += [f"  # CHECK: score columns found for {sorted(found)} but not for {missing}; "
                  "proxy.backend=scores needs one per aspect:",
                  f"  # backend: scores\n  # score_columns: {{{mapping}}}"]
    return lines
