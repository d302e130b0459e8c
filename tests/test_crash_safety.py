"""kill -9 in the middle of any stage, then re-run: results identical to an uninterrupted run,
and no partial artifact is ever read as complete."""

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pdselect.run.artifacts import SENTINEL
from pdselect.pipeline import STAGES

OVERRIDES = ["data.source=usr_persona_chat", "proxy.epochs=60", "score.margin_model=true"]

# A driver that SIGKILLs its own process right after the N-th artifact write inside `stage`:
# the stage has started writing but has not finished (no _SUCCESS marker).
DRIVER = textwrap.dedent("""
    import os, signal, sys
    import pdselect.run.artifacts as A
    import pdselect.pipeline as P
    stage, nth = sys.argv[1], int(sys.argv[2])
    real = A.atomic_path
    count = {"n": 0, "in_stage": False}
    orig_run = P.STAGE_FUNCS[stage]
    def wrapped(*a, **k):
        count["in_stage"] = True
        return orig_run(*a, **k)
    P.STAGE_FUNCS[stage] = wrapped
    import contextlib
    @contextlib.contextmanager
    def killing(path):
        with real(path) as tmp:
            yield tmp
            if count["in_stage"]:
                count["n"] += 1
                if count["n"] >= nth:
                    os.kill(os.getpid(), signal.SIGKILL)
    A.atomic_path = killing
    from pdselect.cli import main
    sys.exit(main(["-q", "run"] + sys.argv[3:]))
""")


def _digest(run_dir: Path) -> dict[str, str]:
    """Hash of every artifact that must not depend on interruptions (times and logs excluded)."""
    out = {}
    for p in sorted(run_dir.rglob("*")):
        rel = p.relative_to(run_dir).as_posix()
        if p.is_file() and p.suffix in (".parquet", ".jsonl", ".pt") or rel.endswith("dpo.parquet"):
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    ref = tmp_path_factory.mktemp("ref") / "run"
    from pdselect.cli import main

    assert main(["-q", "run", f"run_dir={ref}"] + OVERRIDES) == 0
    return _digest(ref)


@pytest.mark.parametrize("stage", STAGES)
def test_kill_during_stage_then_rerun_is_identical(stage, reference, tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [f"run_dir={run_dir}"] + OVERRIDES
    p = subprocess.run([sys.executable, "-c", DRIVER, stage, "1", *args], env=env,
                       capture_output=True, text=True)
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    assert not (run_dir / stage / "_SUCCESS").exists()
    # the killed process marked the folder as its run; its lock died with it, so the re-run
    # below is not refused as "in use"
    assert (run_dir / SENTINEL).is_file()
    # no temporary file is ever mistaken for an artifact: they are hidden dot-files
    from pdselect.cli import main

    assert main(["-q", "run"] + args) == 0
    assert _digest(run_dir) == reference
    assert not [p for p in run_dir.rglob(".*.tmp")]
