"""Integrated-gradients throughput of `ensui.engine.attribute` against two baselines,
same process, same model, same images and targets:

- the **bound**: n_steps batched forward+backward passes (each of the B images, the
  gradient taken with respect to the input), which is the arithmetic IG cannot avoid;
- a **naive loop**: captum's IntegratedGradients called once per image.

Prints images/s of each and the ratios IG / bound (target ≤ 1.3) and naive / IG. IG runs
all B × n_steps scaled images as one batch (internal_batch_size = B · n_steps), so on a
GPU it can beat the bound's n_steps smaller passes.

    python bench/attribution.py [--model ResNext50_32.2 --scale tiny --images 32
                                 --steps 32 --repeat 3 --device auto]
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

import captum.attr as ca
import torch

from ensui.catalog import Catalog
from ensui.engine.attribute import attribute
from ensui.engine.device import resolve_device
from ensui.engine.models import build_model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def best_of(repeat: int, device: torch.device, work) -> float:
    """Fastest of `repeat` timed runs after one warm-up (seconds)."""
    work()
    times = []
    for _ in range(repeat):
        _sync(device)
        start = time.perf_counter()
        work()
        _sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def bound_passes(model, x, target, steps: int) -> None:
    """n_steps forward+backward passes of the B images, gradients w.r.t. the input."""
    for alpha in torch.linspace(1 / steps, 1, steps):
        scaled = (alpha * x).requires_grad_()
        out = model(scaled)[torch.arange(len(x)), target].sum()
        torch.autograd.grad(out, scaled)


def naive_loop(model, x, target, steps: int) -> None:
    ig = ca.IntegratedGradients(model)
    for i in range(len(x)):
        ig.attribute(x[i:i + 1], baselines=x[i:i + 1] * 0, target=target[i:i + 1],
                     n_steps=steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ResNext50_32.2")
    ap.add_argument("--scale", default="tiny", choices=["tiny", "paper"])
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = resolve_device(args.device)
    size = 32 if args.scale == "tiny" else 224
    arch = Catalog.memory().model(args.model)["arch"]
    model = build_model(arch, args.scale, 1000 if args.scale == "paper" else 10, size,
                        seed=0).to(device).eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(args.images, 3, size, size, generator=gen).to(device)
    target = torch.randint(0, 10, (args.images,), generator=gen).to(device)
    cfg = SimpleNamespace(n_steps=args.steps)
    ig = best_of(args.repeat, device, lambda: attribute(
        model, x.clone().requires_grad_(), target, "integrated_gradients", cfg))
    bound = best_of(args.repeat, device, lambda: bound_passes(model, x, target, args.steps))
    naive = best_of(1, device, lambda: naive_loop(model, x, target, args.steps))
    n = args.images
    print(f"{args.model} ({args.scale}, {size} px) on {device}: {n} images × {args.steps} steps")
    for name, seconds in (("ensui IG", ig), ("bound", bound), ("naive loop", naive)):
        print(f"  {name:<10} {seconds:8.3f} s  {n / seconds:9.1f} images/s")
    print(f"IG / bound: {ig / bound:.2f}x (target <= 1.3)   naive / IG: {naive / ig:.1f}x")


if __name__ == "__main__":
    main()
