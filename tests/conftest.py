"""Test defaults: offline, one thread, a private embedding/model cache per session."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

try:  # torch is optional for the pure-maths tests
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Keep test embeddings out of the user's cache, but share them across tests (speed)."""
    if "PDSELECT_CACHE" not in os.environ:
        os.environ["PDSELECT_CACHE"] = str(tmp_path_factory.mktemp("pdselect_cache"))
    yield
