"""The DFPO loss (METHOD.md §2) as a pure per-example tensor function.

    L(θ) = − log σ( K · M_θ(z) + PD(z) )
    M_θ(z) = β [log π_θ(y_w|x) − log π_ref(y_w|x)] − β [log π_θ(y_l|x) − log π_ref(y_l|x)]

With K = 1 and PD = 0 this is exactly DPO's sigmoid loss (TRL ``loss_type="sigmoid"``).

Worked example (reused by tests/test_dfpo.py), β = 0.1:
    log π_θ(y_w) = −10, log π_θ(y_l) = −12, log π_ref(y_w) = log π_ref(y_l) = −11
    M_θ = 0.1·(1 − (−1)) = 0.2
    K=1, PD=0  : −log σ(0.2)  = 0.598139   (plain DPO)
    K=2, PD=0  : −log σ(0.4)  = 0.513015
    K=2, PD=−1 : −log σ(−0.6) = 1.037488   (consensus pair: larger loss, larger gradient)
    K=2, PD=+1 : −log σ(1.4)  = 0.220417   (conflicting pair: pushed less)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# (policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta, K, PD, expected loss)
WORKED_EXAMPLE: list[tuple[float, float, float, float, float, float, float, float]] = [
    (-10.0, -12.0, -11.0, -11.0, 0.1, 1, 0.0, 0.598139),
    (-10.0, -12.0, -11.0, -11.0, 0.1, 2, 0.0, 0.513015),
    (-10.0, -12.0, -11.0, -11.0, 0.1, 2, -1.0, 1.037488),
    (-10.0, -12.0, -11.0, -11.0, 0.1, 2, 1.0, 0.220417),
]


def dpo_margin(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
               ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor,
               beta: float) -> torch.Tensor:
    """M_θ = β log π/π_ref(y_w) − β log π/π_ref(y_l), per example (sequence log-probs)."""
    return beta * ((policy_chosen_logps - ref_chosen_logps)
                   - (policy_rejected_logps - ref_rejected_logps))


def dfpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
              ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor,
              pd: torch.Tensor | float, beta: float, K: float) -> torch.Tensor:
    """Per-example −log σ(K·M_θ + PD); shape (B,). Average it yourself (TRL takes the mean).

    ``logsigmoid`` rather than ``log(sigmoid)`` so large negative logits stay finite."""
    M = dpo_margin(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
                   ref_rejected_logps, beta)
    pd = torch.as_tensor(pd, dtype=M.dtype, device=M.device)
    return -F.logsigmoid(K * M + pd)


def pd_as_ref_shift(pd: torch.Tensor, beta: float, K: float) -> torch.Tensor:
    """Value s to ADD to log π_ref(y_w) so that TRL's sigmoid DPO loss run with β' = K·β
    computes DFPO. With s = −PD/β':
        β'·[(log π(y_w) − log π_ref(y_w) − s) − (log π(y_l) − log π_ref(y_l))]
      = K·β·(...) + PD = K·M_θ + PD.
    This is how align/dpo.py feeds PD through TRL's own loss code instead of copying it."""
    return -pd / (K * beta)
