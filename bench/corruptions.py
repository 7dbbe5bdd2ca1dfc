"""Time ensui's batched corruptions against the per-image reference package.

    python bench/corruptions.py [--n32 256] [--n224 64] [--ref-max224 64]

Both sides corrupt the same real images (scikit-learn's two sample photos, cropped at
many offsets and scales) in the same process: 256 images at 32 px and 64 at 224 px,
for each of the 15 ImageNet-C corruptions. The severities cycle 1..5 over the images,
so each side does one pass over every severity. ensui gets the batch as one uint8
tensor (B, 3, H, W) per severity; the reference (`imagecorruptions-imaug`, import name
`imagecorruptions`) gets HWC uint8 arrays one by one, with `seed=` where its function
takes one. ensui uses the "auto" constants (CIFAR-10-C at 32 px), the reference always
its ImageNet constants, the only ones it has; its per-image cost hardly depends on them.
Set --ref-max224 below --n224 to time the reference on a subset (the output says so).
Each side runs --repeat passes and its fastest counts, which steadies the numbers on a
shared machine.
"""

from __future__ import annotations

import argparse
import inspect
import os
import time

# Intra-op threads sleep between parallel regions instead of spinning (libgomp's default
# spins). On a busy shared box, spinning threads steal the cores the work needs and
# torch ops run 10-50x slower; on an idle box this costs little. Set the variable
# yourself to override (it must be set before torch loads OpenMP).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_sample_images

from ensui.engine.data.corruptions import CATEGORIES, corrupt

COMMON = tuple(n for names in CATEGORIES.values() for n in names)


def sample_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """n crops (random box of side 160..420 px, random flip) resized to size, uint8 NCHW."""
    photos = [torch.tensor(p).permute(2, 0, 1).float() for p in load_sample_images().images]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = photos[i % len(photos)]
        side = int(rng.integers(160, 421))
        y = int(rng.integers(0, img.shape[1] - side + 1))
        x = int(rng.integers(0, img.shape[2] - side + 1))
        crop = img[None, :, y:y + side, x:x + side]
        crop = F.interpolate(crop, size=(size, size), mode="area" if size < side else "bilinear")
        out.append(crop.flip(-1) if rng.random() < 0.5 else crop)
    return torch.cat(out).round().clamp(0, 255).to(torch.uint8)


def time_ensui(images: torch.Tensor, name: str, repeat: int) -> float:
    """Seconds for one pass (best of `repeat`); severity k on the k-th fifth of the batch."""
    groups = [(s, idx) for s, idx in zip(range(1, 6), np.array_split(np.arange(len(images)), 5))]
    for severity, _ in groups:                                  # warm-up: tables, allocator
        corrupt(images[:2], name, severity, [0, 1])
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for severity, idx in groups:     # a slice (a view), so no copy is timed
            corrupt(images[idx[0]:idx[-1] + 1], name, severity, idx.tolist())
        best = min(best, time.perf_counter() - start)
    return best


def time_reference(images: np.ndarray, name: str, repeat: int) -> float:
    from imagecorruptions import corrupt as ref_corrupt
    from imagecorruptions import corruption_dict

    seeded = "seed" in inspect.signature(corruption_dict[name]).parameters
    severities = np.concatenate([[s] * len(i) for s, i in
                                 zip(range(1, 6), np.array_split(np.arange(len(images)), 5))])
    kw = (lambda i: {"seed": i}) if seeded else (lambda i: {})
    for severity in range(1, 6):                                # warm-up: numba JIT
        ref_corrupt(images[0], severity, name, **kw(0))
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for i, (img, sev) in enumerate(zip(images, severities)):
            ref_corrupt(img, int(sev), name, **kw(i))
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n32", type=int, default=256)
    ap.add_argument("--n224", type=int, default=64)
    ap.add_argument("--ref-max224", type=int, default=64,
                    help="time the reference on at most this many 224 px images")
    ap.add_argument("--only", nargs="*", default=list(COMMON))
    ap.add_argument("--repeat", type=int, default=3,
                    help="passes per side and corruption; the fastest counts (noisy hosts)")
    args = ap.parse_args()
    sizes = {32: (args.n32, args.n32), 224: (args.n224, min(args.n224, args.ref_max224))}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads (default), "
          f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}; severities 1-5 cycled over the "
          f"images; best of {args.repeat} passes per side")
    for size, (n, n_ref) in sizes.items():
        note = "" if n_ref == n else f" (reference timed on {n_ref} of them)"
        print(f"{size:>3} px: {n} images{note}")
    data = {s: sample_images(n, s) for s, (n, _) in sizes.items()}
    nhwc = {s: [np.ascontiguousarray(a) for a in d.permute(0, 2, 3, 1).numpy()]
            for s, d in data.items()}
    header = f"{'corruption':<18}" + "".join(
        f"| {s:>3}px ensui ms/img  ref ms/img  ratio " for s in sizes)
    print(header)
    print("-" * len(header))
    totals = {s: [0.0, 0.0] for s in sizes}
    for name in args.only:
        row = f"{name:<18}"
        for size, (n, n_ref) in sizes.items():
            ours = time_ensui(data[size], name, args.repeat) / n
            ref = time_reference(nhwc[size][:n_ref], name, args.repeat) / n_ref
            totals[size][0] += ours
            totals[size][1] += ref
            row += f"| {ours * 1e3:>17.3f} {ref * 1e3:>11.3f} {ref / ours:>6.1f} "
        print(row, flush=True)
    print("-" * len(header))
    row = f"{'overall':<18}"
    for size in sizes:
        ours, ref = totals[size]
        row += f"| {ours * 1e3:>17.3f} {ref * 1e3:>11.3f} {ref / ours:>6.1f} "
    print(row)
    print("overall ratio = total reference time / total ensui time, per image size")


if __name__ == "__main__":
    main()
