"""A tiny generic rated table for fast end-to-end runs (a few seconds per run through the CLI).

    path = write_tiny(tmp_path / "data.jsonl")
    main(["-q", "run", *tiny_overrides(path, run_dir)])
"""

import json
import random
from pathlib import Path

ASPECTS = ("helpful", "concise")


def write_tiny(path: Path, n_inputs: int = 8, n_responses: int = 4, seed: int = 0,
               tweak: int = 0) -> Path:
    """``tweak`` changes some ratings (same size and shape): an in-place edit of the data."""
    rng = random.Random(seed)
    rows = []
    for i in range(n_inputs):
        for j in range(n_responses):
            rows.append({"q": f"question {i}: how do I do thing {i}?",
                         "answer": f"answer {j} to question {i}, " + "with detail " * j,
                         "help": rng.randint(1, 5), "short": rng.randint(1, 5)})
    for r in rows[:tweak]:
        r["help"] = 6 - r["help"]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def tiny_overrides(path: Path, run_dir: Path, *extra: str, aspect: str = "helpful") -> list[str]:
    """Overrides for a run on ``write_tiny`` data; ``aspect`` renames the first aspect (quoted
    in the YAML values, so hostile names reach the pipeline as given)."""
    return [f"run_dir={run_dir}", "data.source=generic", f"data.path={path}",
            "data.columns={input: q, response: answer}",
            f"data.aspect_columns={{'{aspect}': help, concise: short}}",
            f"data.scales={{'{aspect}': [1, 5], concise: [1, 5]}}", "proxy.epochs=20",
            "select.compare=[pd, random]", *extra]
