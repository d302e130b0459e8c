"""The dataset card ``select/dpo/README.md``: YAML front matter that the Hub and ``datasets``
read (configs with the train / test data files, task, size, licence) and a body saying what was
selected, from what source, under which licence, with which pdselect version and config.

    write_card(folder, info)            # the select stage, without a verdict
    add_verdict(run_root)               # the report stage: the verdict line of report.json

The report runs after select, so the card is written first without the verdict and
:func:`add_verdict` fills the "Verdict" section from report.json's ``"verdict"`` key (a string,
or the report's dict: selector, confidence, text) when there is one. The report stage calls
it after writing report.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ..run.artifacts import write_text

CARD = "README.md"
VERDICT_HEAD = "## Verdict"
NO_VERDICT = ("_Not written yet: the report stage adds it (report.json \"verdict\"); run "
              "`pdselect report`._")

# data.source -> (Hub licence id, what is known about the terms, citation). Bundled sets: as
# stated in src/pdselect/bundled/LICENSES.md; hub sets: as stated on their dataset cards.
_USR = ("unknown", "USR annotations via tanyuqian/ctc-gen-eval (repository MIT; no licence is "
        "stated for the annotations themselves, see pdselect/bundled/LICENSES.md)",
        "Mehri and Eskenazi. USR: An Unsupervised and Reference Free Evaluation Metric for "
        "Dialog Generation. ACL 2020.")
_MQM = ("apache-2.0", "google/wmt-mqm-human-evaluation, Apache-2.0 (TED texts: their own "
        "terms, not verified)", "Freitag et al. Experts, Errors, and Context: A Large-Scale "
        "Study of Human Evaluation for Machine Translation. TACL 2021.")
SOURCES = {
    "usr_topical_chat": _USR, "usr_persona_chat": _USR,
    "summeval_op": ("mit", "tjsiledar/SummEval-OP, MIT (review texts: terms not verified)",
                    "Siledar et al. One Prompt To Rule Them All: LLMs for Opinion Summary "
                    "Evaluation. ACL 2024."),
    "mqm_ted_zhen": _MQM, "mqm_ted_ende": _MQM,
    "ultrafeedback": ("mit", "openbmb/UltraFeedback, MIT as stated on its dataset card (not "
                      "verified by pdselect)", "Cui et al. UltraFeedback: Boosting Language "
                      "Models with Scaled AI Feedback. ICML 2024."),
    "helpsteer2": ("cc-by-4.0", "nvidia/HelpSteer2, CC-BY-4.0 as stated on its dataset card "
                   "(not verified by pdselect)", "Wang et al. HelpSteer2: Open-source dataset "
                   "for training top-performing reward models. NeurIPS 2024."),
    "helpsteer3": ("cc-by-4.0", "nvidia/HelpSteer3, CC-BY-4.0 as stated on its dataset card "
                   "(not verified by pdselect)", "Wang et al. HelpSteer3-Preference. 2025."),
}
UNKNOWN = ("unknown", "a user-supplied file: its licence is unknown to pdselect. State it "
           "here before sharing the dataset.", "")


def size_category(n: int) -> str:
    """The Hub's size_categories bucket of ``n`` rows."""
    for hi, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                     (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < hi:
            return name
    return "10M<n<100M"


def front_matter(files: dict[str, Path], source: str, n_rows: int) -> dict:
    licence = SOURCES.get(source, UNKNOWN)[0]
    return {"configs": [{"config_name": "default",
                         "data_files": [{"split": s, "path": Path(f).name}
                                        for s, f in files.items()]}],
            "task_categories": ["text-generation"], "tags": ["dpo", "preference", "pdselect"],
            "size_categories": [size_category(n_rows)], "license": licence,
            "pretty_name": f"pdselect selection of {source}"}


def write_card(folder: Path, info: dict) -> Path:
    """``info``: source, files (split -> path), counts, method, chat_format, version, config
    (the resolved config dict), token_check (or None), reason_no_token_check."""
    n_rows = sum(info["counts"].get(k, 0) for k in ("n_selected", "n_test"))
    meta = front_matter(info["files"], info["source"], n_rows)
    _, terms, cite = SOURCES.get(info["source"], UNKNOWN)
    head = "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"
    body = [f"# {meta['pretty_name']}", "",
            f"Preference pairs selected by pdselect {info['version']} "
            f"(`select.method={info['method']}`, layout `{info['chat_format']}`) from the "
            f"`{info['source']}` source.", "",
            "## Splits", "", *_count_lines(info["counts"]), "",
            "## Source and licence", "", f"- Terms: {terms}",
            f"- Citation: {cite or 'none known (a user file)'}",
            "- Selection method: Zhang et al., Data Selection for LLM Alignment Using "
            "Fine-Grained Preferences, ICLR 2026.", "",
            "## Token lengths", "", *_token_lines(info), "",
            VERDICT_HEAD, "", NO_VERDICT, "",
            "## Config", "", "```yaml", yaml.safe_dump(info["config"], sort_keys=False).rstrip(),
            "```", ""]
    path = Path(folder) / CARD
    write_text(path, head + "\n" + "\n".join(body))
    return path


def _count_lines(c: dict) -> list[str]:
    lines = [f"- train: {c['n_selected']} pairs kept of a pool of {c['n_pool']}, each labelled "
             "by ONE aspect (`label_source` = aspect), in the selector's order (`rank`)."]
    if c.get("n_test"):
        labels = ", ".join(f"{v} {k}" for k, v in c.get("test_labels", {}).items())
        lines.append(f"- test: {c['n_test']} held-out pairs (inputs never selected from), "
                     f"labelled by the overall preference where it exists ({labels}; "
                     "`label_source`). Scores and rank are null: held-out pairs are not scored.")
    else:
        lines.append("- test: none (no inputs were held out: aggregate.test_fraction is 0 or "
                     "auto without an overall label).")
    return lines


def _token_lines(info: dict) -> list[str]:
    tc = info.get("token_check")
    if not tc:
        return [f"Not checked: {info.get('reason_no_token_check') or 'no policy tokenizer'}."]
    lines = [f"With the tokenizer of `{tc['tokenizer']}` at max_length {tc['max_length']} "
             f"({tc['rule']}):"]
    for split in ("train", "test"):
        if split in tc:
            s = tc[split]
            lines.append(f"- {split}: {s['n_prompt_fills_max_length']} of {s['n']} pairs "
                         f"dropped (prompt alone fills max_length), {s['n_truncated']} "
                         f"truncated; longest prompt {s['max_prompt_tokens']} tokens.")
    return lines


def verdict_line(report: dict) -> str | None:
    """report.json's verdict as one line: a string as is; the report's dict (selector,
    confidence, text) as "**selector** (confidence: ...). text"."""
    v = report.get("verdict")
    if isinstance(v, dict):
        text = v.get("line") or v.get("summary") or v.get("text")
        if text and "confidence" in v:
            return (f"**{v.get('selector') or 'no selector'}** (confidence: "
                    f"{v['confidence']}). {text}")
        v = text
    return str(v) if v else None


def add_verdict(run_root: Path) -> bool:
    """Put report.json's verdict line into the card's Verdict section; False when there is no
    card or no verdict (the card keeps its placeholder)."""
    root = Path(run_root)
    path, report = root / "select" / "dpo" / CARD, root / "report.json"
    if not path.exists() or not report.exists():
        return False
    line = verdict_line(json.loads(report.read_text()))
    if not line:
        return False
    text = path.read_text()
    head, _, rest = text.partition(VERDICT_HEAD + "\n")
    _, _, after = rest.partition("\n## ")
    write_text(path, f"{head}{VERDICT_HEAD}\n\n{line}\n\n## {after}")
    return True
