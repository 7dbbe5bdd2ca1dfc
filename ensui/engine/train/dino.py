"""Building blocks of the DINO self-supervised recipe (methods.md §8).

After DINO (Caron et al. 2021, "Emerging Properties in Self-Supervised Vision
Transformers", and its reference code facebookresearch/dino): a student and an EMA
teacher see multi-crop views (`ensui.engine.data.multicrop`); the student is trained to
match the teacher's centred, sharpened distribution over `out_dim` prototypes.

Here:
- `DINOHead`: projection head, MLP -> L2 norm -> weight-normalized linear layer;
- `DINOLoss`: cross entropy over teacher/student view pairs with centering and a
  teacher-temperature warm-up;
- `ema_update`: the teacher as an exponential moving average of the student;
- `cosine_schedule`: per-iteration values for the learning rate, the weight decay
  (0.04 -> 0.4) and the teacher momentum (0.996 -> 1);
- `param_groups` / `set_lr_and_wd`: no weight decay on biases and norms;
- `clip_gradients` and `cancel_last_layer_grads`: DINO's per-parameter clipping and
  last-layer freezing for the first epoch(s);
- `teacher_entropy` and `kl_to_uniform`: collapse indicators for live metrics.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


class DINOHead(nn.Module):
    """MLP (GELU) to a bottleneck, L2 normalization, weight-normalized linear to out_dim.

    The last layer's norm (weight_g) is fixed to 1 (DINO's `norm_last_layer=True`), so
    the logits are cosine similarities to `out_dim` prototypes, which stabilises training.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 2048, bottleneck: int = 256,
                 nlayers: int = 3, norm_last_layer: bool = True):
        super().__init__()
        dims = [in_dim] + [hidden] * (max(nlayers, 1) - 1) + [bottleneck]
        layers: list[nn.Module] = []
        for i, (d_in, d_out) in enumerate(itertools.pairwise(dims)):
            layers += [nn.Linear(d_in, d_out)] + ([nn.GELU()] if i < len(dims) - 2 else [])
        self.mlp = nn.Sequential(*layers)
        self.mlp.apply(_init_linear)
        self.last_layer = nn.utils.parametrizations.weight_norm(
            nn.Linear(bottleneck, out_dim, bias=False))
        norm = self.last_layer.parametrizations.weight.original0  # weight_g
        with torch.no_grad():
            norm.fill_(1.0)
        norm.requires_grad_(not norm_last_layer)

    def forward(self, x: Tensor) -> Tensor:
        return self.last_layer(F.normalize(self.mlp(x), dim=-1, p=2))


def _init_linear(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):  # DINO: truncated normal, std 0.02, zero bias
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


class DINOLoss(nn.Module):
    """Cross entropy between the teacher's global views and the student's other views.

    Student output: (n_crops * B, K), views stacked in crop order with the 2 global views
    first; teacher output: (2 * B, K) for the 2 global views. The teacher distribution is
    softmax((t - center) / tau_t): centering avoids one prototype dominating, the low
    temperature avoids the uniform collapse. The loss is the mean over the 2 (n_crops - 1)
    pairs (teacher view i, student view v != i) of the batch-mean cross entropy.
    """

    def __init__(self, out_dim: int, n_crops: int, epochs: int, *,
                 warmup_teacher_temp: float = 0.04, teacher_temp: float = 0.04,
                 warmup_epochs: int = 0, student_temp: float = 0.1,
                 center_momentum: float = 0.9):
        super().__init__()
        if n_crops < 2 or not 0 <= warmup_epochs <= epochs:
            raise ValueError("DINOLoss needs n_crops >= 2 and 0 <= warmup_epochs <= epochs")
        self.n_crops, self.epochs = n_crops, epochs
        self.warmup_teacher_temp, self.teacher_temp = warmup_teacher_temp, teacher_temp
        self.warmup_epochs = warmup_epochs
        self.student_temp, self.center_momentum = student_temp, center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    def teacher_temp_at(self, epoch: int) -> float:
        """DINO's np.linspace(warmup, final, warmup_epochs) warm-up, then constant."""
        if epoch >= self.warmup_epochs:
            return self.teacher_temp
        frac = epoch / max(1, self.warmup_epochs - 1)
        return self.warmup_teacher_temp + frac * (self.teacher_temp - self.warmup_teacher_temp)

    def forward(self, student_out: Tensor, teacher_out: Tensor, epoch: int) -> Tensor:
        dtype = self.center.dtype  # fp32 even under autocast: the softmaxes are sharp
        log_p = F.log_softmax(student_out.to(dtype) / self.student_temp, dim=-1)
        log_p = log_p.reshape(self.n_crops, -1, log_p.shape[-1])            # (V, B, K)
        q = teacher_probs(teacher_out.detach().to(dtype), self.teacher_temp_at(epoch),
                          self.center).reshape(2, -1, log_p.shape[-1])     # (2, B, K)
        ce = -torch.einsum("ibk,vbk->iv", q, log_p) / q.shape[1]           # (2, V)
        keep = torch.ones_like(ce, dtype=torch.bool)
        keep[0, 0] = keep[1, 1] = False  # a view is not its own target
        loss = ce[keep].mean()
        self.update_center(teacher_out)
        return loss

    @torch.no_grad()
    def update_center(self, teacher_out: Tensor) -> None:
        """EMA of the batch-mean teacher output (single process: no all-reduce)."""
        batch_center = teacher_out.detach().to(self.center.dtype).mean(0, keepdim=True)
        self.center.mul_(self.center_momentum).add_(batch_center * (1 - self.center_momentum))


def teacher_probs(teacher_out: Tensor, temp: float, center: Tensor) -> Tensor:
    """The teacher's centred, sharpened distribution softmax((t - center) / temp)."""
    return F.softmax((teacher_out - center) / temp, dim=-1)


@torch.no_grad()
def teacher_entropy(teacher_out: Tensor, temp: float, center: Tensor) -> Tensor:
    """Mean per-sample entropy (nats) of the teacher distribution.

    log K means uniform outputs (collapse through too little sharpening); near 0 with a
    low `kl_to_uniform` is the healthy regime.
    """
    p = teacher_probs(teacher_out.float(), temp, center.float())
    return -(p * p.clamp_min(1e-30).log()).sum(-1).mean()


@torch.no_grad()
def kl_to_uniform(teacher_out: Tensor, temp: float, center: Tensor) -> Tensor:
    """KL(mean teacher distribution || uniform) = log K - H(batch-mean distribution), nats.

    Near log K when one prototype dominates every sample (collapse through too little
    centering); near 0 when the batch spreads over the prototypes (or is uniform, which
    `teacher_entropy` tells apart).
    """
    mean = teacher_probs(teacher_out.float(), temp, center.float()).mean(0)
    return math.log(mean.numel()) + (mean * mean.clamp_min(1e-30).log()).sum()


@torch.no_grad()
def ema_update(student: nn.Module, teacher: nn.Module, momentum: float) -> None:
    """teacher = m * teacher + (1 - m) * student over parameters; buffers are copied."""
    t_params = dict(teacher.named_parameters())
    for name, s in student.named_parameters():
        t_params[name].mul_(momentum).add_(s.detach(), alpha=1 - momentum)
    t_buffers = dict(teacher.named_buffers())
    for name, s in student.named_buffers():
        t_buffers[name].copy_(s)


def cosine_schedule(base: float, final: float, epochs: int, iters_per_epoch: int,
                    warmup_epochs: float = 0, start_warmup: float = 0.0) -> np.ndarray:
    """DINO's `cosine_scheduler`: one value per iteration, linear warm-up then cosine."""
    total = epochs * iters_per_epoch
    warmup = round(warmup_epochs * iters_per_epoch)
    ramp = np.linspace(start_warmup, base, warmup) if warmup > 0 else np.array([])
    steps = np.arange(total - warmup)
    cosine = final + 0.5 * (base - final) * (1 + np.cos(np.pi * steps / max(1, len(steps))))
    return np.concatenate((ramp, cosine))


def param_groups(model: nn.Module) -> list[dict]:
    """Two optimizer groups; biases and 1-D parameters (norms) get no weight decay."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if name.endswith(".bias") or p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "decay": True},
            {"params": no_decay, "decay": False, "weight_decay": 0.0}]


def set_lr_and_wd(optimizer: torch.optim.Optimizer, lr: float, weight_decay: float) -> None:
    """Apply this iteration's schedule values; groups marked decay=False keep 0."""
    for group in optimizer.param_groups:
        group["lr"] = lr
        if group.get("decay", True):
            group["weight_decay"] = weight_decay


@torch.no_grad()
def clip_gradients(model: nn.Module, clip: float) -> Tensor:
    """DINO's per-parameter clipping: each grad's L2 norm to at most `clip`; returns the norms."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros(0)
    norms = torch.stack([g.norm(2) for g in grads])
    coefs = (clip / (norms + 1e-6)).clamp(max=1.0)
    for g, c in zip(grads, coefs):
        g.mul_(c)
    return norms


def cancel_last_layer_grads(head: nn.Module, epoch: int, freeze_epochs: int = 1) -> None:
    """Drop the last layer's grads during the first epochs, as DINO, to ease early training.

    Set to None rather than zero so the optimizer skips them entirely (no weight decay,
    no moment updates), which is what DINO does.
    """
    if epoch >= freeze_epochs:
        return
    for p in head.last_layer.parameters():
        p.grad = None
