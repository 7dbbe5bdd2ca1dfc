"""Throughput of a DINO training step against a supervised step of the same backbone,
same batch size, same process.

A DINO step costs more by construction: the student sees 2 global views and N local
views of every image (a local view at 96/224 of the side is ~18 % of a global one's
pixels), the EMA teacher runs the 2 global views without gradients, and the projection
head maps every view to `out_dim` prototypes. With the paper's 8 local views the student
processes about 2 + 8 × 0.18 ≈ 3.5 global-view equivalents, the teacher 2 more forward
passes (~1/3 of a forward-backward each): expect a DINO step to take roughly 3-5 times
a supervised one, plus the multi-crop augmentation.

    python bench/dino_step.py [--model dino_deit_tiny1] [--scale tiny] [--batch 64]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
import torch.nn.functional as F

from ensui.engine.data.augment import Augment
from ensui.engine.data.multicrop import MultiCrop
from ensui.engine.models.factory import build_model
from ensui.engine.plan_dino import PAPER, TINY
from ensui.engine.train import dino, dino_pretrain
from ensui.paper import table_i


def _row(model_id: str) -> dict:
    return next(r for r in table_i() if r["id"] == model_id)


def _timed(step, repeats: int) -> float:
    step()  # warm-up: kernels chosen, memory allocated
    began = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - began) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="dino_deit_tiny1")
    ap.add_argument("--scale", choices=("tiny", "paper"), default="tiny")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    row, cfg = _row(args.model), (TINY if args.scale == "tiny" else PAPER)
    size = 32 if args.scale == "tiny" else 224
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    images = (torch.rand(args.batch, 3, size, size) * 255).to(torch.uint8)
    labels = torch.randint(0, 10, (args.batch,))
    gen = torch.Generator().manual_seed(0)

    model = build_model(row["arch"], args.scale, 10, size, seed=0).to(device)
    augment = Augment(size)
    sgd = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def supervised_step():
        x = augment(images.to(device), gen)
        loss = F.cross_entropy(model(x), labels.to(device))
        sgd.zero_grad()
        loss.backward()
        sgd.step()

    params = {"seed": 0, **cfg}
    student = dino_pretrain.build_student(build_model(row["arch"], args.scale, 10, size, seed=0),
                                          params).to(device)
    teacher = copy.deepcopy(student).requires_grad_(False)
    views = MultiCrop(size, cfg["local_size"], n_local=cfg["n_local"])
    loss_fn = dino.DINOLoss(cfg["out_dim"], 2 + cfg["n_local"], 1).to(device)
    adamw = torch.optim.AdamW(dino.param_groups(student), lr=1e-4)

    def dino_step():
        crops = views(images.to(device), gen)
        with torch.no_grad():
            teacher_out = teacher(crops[:2])
        loss = loss_fn(student(crops), teacher_out, 0)
        adamw.zero_grad()
        loss.backward()
        dino.clip_gradients(student, 3.0)
        adamw.step()
        dino.ema_update(student, teacher, 0.996)

    sup = _timed(supervised_step, args.repeats)
    ssl = _timed(dino_step, args.repeats)
    print(f"{args.model} at {args.scale} scale ({size} px, {cfg['n_local']} local crops of "
          f"{cfg['local_size']} px, out_dim {cfg['out_dim']}), batch {args.batch} on {device}")
    print(f"  supervised step {1000 * sup:8.1f} ms")
    print(f"  DINO step       {1000 * ssl:8.1f} ms")
    print(f"DINO / supervised: {ssl / sup:.2f}x")


if __name__ == "__main__":
    main()
