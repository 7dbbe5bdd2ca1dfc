"""Losses of diversity-enforced joint ensemble training (methods.md §10).

All members see the same batch; their logits arrive stacked as (M, B, K) with integer
labels (B,). Every variant returns `LossParts`, whose `total` is the one tensor to call
backward on. CE is the batch-mean cross entropy, p_i = softmax(f_i), p̄ the mean member
probability and f̄ the mean member logits.

* ``independent``: Σ_i CE_i.
* ``ncl`` (Liu & Yao 1999 on class probabilities): Σ_i (CE_i + λ·pen_i) with
  pen_i = (p_i − p̄)·Σ_{j≠i}(p_j − p̄) = −‖p_i − p̄‖², summed over classes, mean over the
  batch, computed as written with autograd through p̄. λ·Σ_i pen_i = −λ Σ_i ‖p_i − p̄‖²
  has the gradient −2λ(p_i − p̄) in p_i (p̄'s own share vanishes: p̄ minimises
  Σ_i ‖p_i − c‖² over c). Liu & Yao differentiate member i's own penalty only,
  with p̄ and the other members fixed, and get −λ(p_i − p̄): our λ is half of theirs.
* ``balanced``: the paper's L = (1 − λ)·mean_i CE_i + λ·CE(ensemble).
* ``gncl`` (Buschjäger, Pfahler & Morik 2020): L = mean_i CE_i − λ/(2M) Σ_i d_iᵀ D d_i,
  d_i = f_i − f̄ and D = diag(q) − q qᵀ, q = softmax(f̄), the Hessian of CE at f̄. By
  default autograd runs through D, as in the authors' code (sbuschjaeger/gncl and
  Pysembles build D from the undetached ensemble output); `detach_hessian=True` holds D
  constant, making the penalty's gradient −λ D d_i. Holding f̄ fixed inside d_i changes
  nothing (Σ_i d_i = 0 makes its share vanish), so the code does not.

Scale: `total` = M·L for ``balanced`` and ``gncl``, i.e. (1 − λ)·Σ_i CE_i + λ·M·CE(ensemble)
and Σ_i CE_i − (λ/2) Σ_i d_iᵀ D d_i. So at λ = 0 each member's gradient is exactly the
gradient of its own CE, and λ = 0 reproduces independent training bit for bit under any
optimizer (same seeds, same batches). Relative to the paper's mean form the factor M only
rescales the learning rate of plain SGD; weight decay and Adam's ε are not rescaled.

Consensus inside the loss, named as in `ensembles`: ``average`` = mean of the member
probabilities, CE(ensemble) = −log p̄_y (the paper's Figure B); ``logit_average`` = mean
of the logits, CE(ensemble) = CE(f̄, y). It shapes the loss of ``balanced`` only; the
other variants use it just for the reported `ensemble_ce` (``ncl`` is defined on p̄ and
``gncl`` on f̄ whatever the consensus).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

VARIANTS = ("independent", "ncl", "balanced", "gncl")
LOSS_CONSENSUS = ("average", "logit_average")


@dataclass(frozen=True)
class LossParts:
    """`total` carries the graph; the rest are detached, for logging.

    `penalty` is the diversity the variant rewards, ≥ 0 (higher = more diverse):
    mean_i ‖p_i − p̄‖² for ``ncl`` and (1/2M) Σ_i d_iᵀ D d_i for ``gncl`` (both batch means),
    so that total = Σ_i CE_i − λ·M·penalty; 0 for ``independent`` and ``balanced``.
    """

    total: torch.Tensor
    member_ce: torch.Tensor    # (M,)
    ensemble_ce: torch.Tensor
    penalty: torch.Tensor


@dataclass(frozen=True)
class JointLoss:
    """A validated loss setting; call it on (logits (M, B, K), labels (B,))."""

    variant: str = "balanced"
    lam: float = 0.5
    consensus: str = "average"
    detach_hessian: bool = False

    def __post_init__(self):
        check_loss_settings(self.variant, self.lam, self.consensus)

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> LossParts:
        _check_shapes(logits, labels)
        logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
        member_ce = torch.stack([F.cross_entropy(f, labels) for f in logits])
        ensemble_ce = _ensemble_ce(logits, labels, self.consensus)
        total, penalty = self._combine(logits, member_ce, ensemble_ce)
        return LossParts(total, member_ce.detach(), ensemble_ce.detach(), penalty.detach())

    def _combine(self, logits: torch.Tensor, member_ce: torch.Tensor,
                 ensemble_ce: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(total, penalty); the sums are arranged so λ = 0 adds exact zeros only."""
        members, lam = logits.shape[0], self.lam
        zero = member_ce.new_zeros(())
        if self.variant == "independent":
            return member_ce.sum(), zero
        if self.variant == "balanced":
            return (1 - lam) * member_ce.sum() + lam * members * ensemble_ce, zero
        if self.variant == "ncl":
            pen = ncl_penalties(torch.softmax(logits, -1))
            return member_ce.sum() + lam * pen.sum(), -pen.mean()
        quad = gncl_quadratic_forms(logits, self.detach_hessian)
        return member_ce.sum() - lam / 2 * quad.sum(), quad.sum() / (2 * members)


def joint_loss(logits: torch.Tensor, labels: torch.Tensor, variant: str = "balanced",
               lam: float = 0.5, consensus: str = "average",
               detach_hessian: bool = False) -> LossParts:
    """One-off form of `JointLoss(variant, lam, consensus, detach_hessian)(logits, labels)`."""
    return JointLoss(variant, lam, consensus, detach_hessian)(logits, labels)


def check_loss_settings(variant: str, lam: float, consensus: str) -> None:
    """Raise ValueError naming the offending field."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {list(VARIANTS)}, got {variant!r}")
    if consensus not in LOSS_CONSENSUS:
        raise ValueError(f"consensus must be one of {list(LOSS_CONSENSUS)}, got {consensus!r}")
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam):
        raise ValueError(f"lam must be a finite number, got {lam!r}")
    if variant == "balanced" and not 0 <= lam <= 1:
        raise ValueError(f"lam must lie in [0, 1] for the balanced variant, got {lam}")
    if lam < 0:
        raise ValueError(f"lam must be ≥ 0 for the {variant} variant, got {lam}")


def _check_shapes(logits: torch.Tensor, labels: torch.Tensor) -> None:
    if logits.ndim != 3 or logits.shape[0] < 1:
        raise ValueError(f"logits must have shape (members, batch, classes), "
                         f"got {tuple(logits.shape)}")
    if labels.shape != logits.shape[1:2]:
        raise ValueError(f"labels must have shape ({logits.shape[1]},), "
                         f"got {tuple(labels.shape)}")


def _ensemble_ce(logits: torch.Tensor, labels: torch.Tensor, consensus: str) -> torch.Tensor:
    """Batch-mean NLL of the consensus; −log p̄_y as a logsumexp so it never underflows."""
    if consensus == "logit_average":
        return F.cross_entropy(logits.mean(0), labels)
    index = labels.expand(logits.shape[0], -1).unsqueeze(-1)
    true_log_probs = torch.log_softmax(logits, -1).gather(-1, index)[..., 0]  # (M, B)
    return (math.log(logits.shape[0]) - torch.logsumexp(true_log_probs, 0)).mean()


def ncl_penalties(probs: torch.Tensor) -> torch.Tensor:
    """(M,) pen_i = mean_b (p_i − p̄)·Σ_{j≠i}(p_j − p̄), written as the formula so autograd
    sees p̄'s dependence on every member."""
    deviation = probs - probs.mean(0)
    others = deviation.sum(0) - deviation
    return (deviation * others).sum(-1).mean(-1)


def softmax_ce_hessian(logits: torch.Tensor) -> torch.Tensor:
    """(…, K, K) Hessian of CE(softmax(z), y) in z: diag(q) − q qᵀ, independent of y."""
    q = torch.softmax(logits, -1)
    return torch.diag_embed(q) - q.unsqueeze(-1) * q.unsqueeze(-2)


def gncl_quadratic_forms(logits: torch.Tensor, detach_hessian: bool = False) -> torch.Tensor:
    """(M,) batch means of d_iᵀ D d_i, d_i = f_i − f̄, D the CE Hessian at f̄, as the
    q-weighted variance of d_i over classes: no (K, K) matrix, no cancellation."""
    mean = logits.mean(0)
    q = torch.softmax(mean.detach() if detach_hessian else mean, -1)
    d = logits - mean
    centred = d - (q * d).sum(-1, keepdim=True)
    return (q * centred.square()).sum(-1).mean(-1)
