"""An oracle judge for generations, and the generation loop it scores.

The judge is a ridge regression on frozen encoder features of (input, response) that predicts
the mean of a response's aspect ratings, each rescaled to [0, 1] by its scale — "trained on all
aspect ratings" of the rated table. It is an evaluation instrument only (it sees ratings the
selection never sees) and, like any learned judge, it can be fooled by length: the report puts
the mean length of the generations next to every judged score.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


def rating_target(rated_df: pd.DataFrame, aspects: list[str], scales: dict) -> np.ndarray:
    cols = [(rated_df[a].to_numpy(np.float64) - scales[a][0]) / (scales[a][1] - scales[a][0])
            for a in aspects]
    with np.errstate(all="ignore"):
        return np.nanmean(np.stack(cols, 1), axis=1)


class RidgeJudge:
    """y ~ X w + b, closed form, L2 ``alpha``."""

    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha

    def fit(self, X: np.ndarray, y: np.ndarray) -> "RidgeJudge":
        ok = ~np.isnan(y)
        X, y = X[ok], y[ok]
        self.mu_, self.b_ = X.mean(0), y.mean()
        Xc = X - self.mu_
        A = Xc.T @ Xc + self.alpha * np.eye(X.shape[1])
        self.w_ = np.linalg.solve(A, Xc.T @ (y - self.b_))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mu_) @ self.w_ + self.b_


def generate(model, tok, prompts: list[str], max_new_tokens: int = 64,
             max_prompt_tokens: int = 192) -> list[str]:
    """Greedy generations (deterministic) for chat prompts, prompt cut from the left."""
    import torch

    outs = []
    model.eval()
    for p in prompts:
        text = tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                       add_generation_prompt=True)
        ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
        ids = ids[:, -max_prompt_tokens:]
        with torch.inference_mode():
            gen = model.generate(ids.to(model.device), max_new_tokens=max_new_tokens,
                                 do_sample=False, pad_token_id=tok.pad_token_id)
        outs.append(tok.decode(gen[0, ids.shape[1]:], skip_special_tokens=True).strip())
    return outs
