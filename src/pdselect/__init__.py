"""pdselect: preference-divergence data selection for LLM alignment (Zhang et al., ICLR 2026).

Python API (each CLI subcommand calls one of these):

    from pdselect import load_config, run_pipeline
    cfg = load_config("configs/demo.yaml", ["select.budget=0.3"])
    run_dir = run_pipeline(cfg)            # ingest -> aggregate -> proxy -> score -> select -> report

    kept = select_pairs(my_pairs, budget=0.3)   # notebooks: Dataset/DataFrame in, Dataset out
"""

__version__ = "0.1.0"

from .api import select_pairs  # noqa: E402
from .config import RunConfig, load_config  # noqa: E402
from .pd import normalise, normaliser, pd_from_gaps, preference_divergence  # noqa: E402
from .pipeline import STAGES, run_pipeline, run_stage  # noqa: E402
from .select.selectors import SELECTORS, make_selector  # noqa: E402

__all__ = ["RunConfig", "load_config", "run_pipeline", "run_stage", "STAGES", "SELECTORS",
           "make_selector", "select_pairs", "pd_from_gaps", "preference_divergence",
           "normaliser", "normalise"]
