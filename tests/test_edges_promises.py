"""Issue 17, class 7: promises. select.chat_format=conversational flattened a message-list prompt
into one user message and made a rendered `user` turn of a response an assistant message
(docs/HANDOFF.md promises kept turns and roles); an input of 64 MiB or more edited in place
with its size and mtime restored was treated as unchanged, with no way to ask for hashing.
(The YAML merge-key regression is in test_edges_config.py.)"""

import json
import os

import pytest

from pdselect.config import load_config
from pdselect.data import read_source
from pdselect.data.rejects import RejectLog
from pdselect.run import fingerprint as F
from pdselect.select.dpo_data import conversational_example, rendered_turns

TURNS = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
         {"role": "assistant", "content": "Hello\nthere"}, {"role": "user", "content": "2+2?"}]


def test_message_list_prompt_keeps_turns_and_roles_through_the_reader(tmp_path):
    """The pairs reader stores the dialogue as text; the conversational form gets the turns
    back, roles and multi-line contents included."""
    f = tmp_path / "pairs.jsonl"
    rows = [{"prompt": TURNS, "chosen": "4", "rejected": [{"role": "user", "content": "?"},
                                                           {"role": "assistant", "content": "5"}],
             "aspect": a} for a in ("x", "y")]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = read_source(load_config(None, ["data.source=pairs", f"data.path={f}"]).data,
                      RejectLog("ingest"))
    row = got.df.iloc[0]
    ex = conversational_example(row["input"], row["chosen"], row["rejected"])
    assert ex["prompt"] == TURNS
    assert ex["chosen"] == [{"role": "assistant", "content": "4"}]
    assert ex["rejected"] == [{"role": "user", "content": "?"},
                              {"role": "assistant", "content": "5"}]  # the user turn stays user


@pytest.mark.parametrize("text", ["plain question", "line one\nline two",
                                  "user: only one turn", "Speaker A: hi\nSpeaker B: hello",
                                  "note\nuser: not at the start"])
def test_plain_texts_stay_one_message(text):
    assert rendered_turns(text) is None
    assert conversational_example(text, "a", "b")["prompt"] == [{"role": "user",
                                                                 "content": text}]


def _big_file_edited_in_place(tmp_path, monkeypatch):
    monkeypatch.setattr(F, "HASH_LIMIT", 1)  # every file is "large" here
    f = tmp_path / "d.jsonl"
    f.write_text('{"a": 1}\n')
    return f


def _edit_keep_size_and_mtime(f):
    st = f.stat()
    f.write_text('{"a": 2}\n')
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_always_hash_sees_an_in_place_edit_with_restored_mtime(tmp_path, monkeypatch):
    f = _big_file_edited_in_place(tmp_path, monkeypatch)
    cfg = load_config(None, ["data.source=generic", f"data.path={f}", "data.always_hash=true"])
    before = F.input_fingerprint(cfg.data)["digest"]
    default = load_config(None, ["data.source=generic", f"data.path={f}"])
    before_default = F.input_fingerprint(default.data)["digest"]
    _edit_keep_size_and_mtime(f)
    assert F.input_fingerprint(cfg.data)["digest"] != before
    # the documented default: size + mtime only, the edit goes unseen
    assert F.input_fingerprint(default.data)["digest"] == before_default


def test_always_hash_is_documented_in_the_fields():
    from pdselect.config import describe_fields

    helps = {k: h for k, _, h in describe_fields()}
    assert "in-place edit" in helps["data.always_hash"]
