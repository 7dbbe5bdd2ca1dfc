"""Minibatch CKA against the full-Gram reference: time and peak memory, same process.

Two seeded float32 feature matrices of N samples, correlated: X ~ N(0, 1) of width D and
Y = X W + noise (W a random D x D map scaled by 1/sqrt(D), noise of standard deviation
--noise), so their CKA sits well inside (0, 1). Both sides use the unbiased HSIC1:
`minibatch_cka_matrix` in batches of --batch (the N mod batch tail dropped) and `cka`,
which builds the two float64 N x N Grams. Each side is timed --repeat times without
tracing (the fastest counts, which steadies the numbers on a shared machine), then run
once more under tracemalloc for its peak memory (numpy reports its allocations to
tracemalloc; the inputs exist before tracing starts, so only each call's own working
memory counts). The two CKA values are estimates of the same quantity from different
estimators (a mean over batches vs one U-statistic on all N), so they agree closely
but not exactly.

    python bench/cka.py [--samples 10000 --dim 512 --batch 256 --noise 1.0 --repeat 2
                         --seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc

import numpy as np

from ensui.engine.diversity.activation import cka, minibatch_cka_matrix


def make_features(samples: int, dim: int, noise: float, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, dim)).astype(np.float32)
    w = (rng.normal(size=(dim, dim)) / np.sqrt(dim)).astype(np.float32)
    y = x @ w + rng.normal(0, noise, (samples, dim)).astype(np.float32)
    return x, y


def measure(fn, repeat: int) -> tuple[float, float, int]:
    """(value, fastest seconds over `repeat` untraced runs, peak traced bytes of one run)."""
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - began)
    tracemalloc.start()
    try:
        fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return value, best, peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--noise", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    n, d, b = args.samples, args.dim, args.batch
    if n < 4 or d < 1 or b < 4 or args.repeat < 1:
        parser.error("need samples >= 4, dim >= 1, batch >= 4, repeat >= 1")

    x, y = make_features(n, d, args.noise, args.seed)
    used = min(b, n)
    print(f"sizes: N={n} samples, two float32 members of width {d} ({x.nbytes / 1e6:.0f} MB "
          f"each), unbiased HSIC1; minibatch: {n // used} batches of {used}, "
          f"{n % used} rows dropped; full: two {n} x {n} float64 Grams "
          f"({2 * n * n * 8 / 1e9:.2f} GB)")

    mini, t_mini, m_mini = measure(lambda: minibatch_cka_matrix([x, y], b)[0, 1], args.repeat)
    full, t_full, m_full = measure(lambda: cka(x, y), args.repeat)

    print(f"minibatch CKA {mini:.6f}: {t_mini:.3f} s, peak {m_mini / 1e6:.1f} MB")
    print(f"full-Gram CKA {full:.6f}: {t_full:.3f} s, peak {m_full / 1e6:.1f} MB")
    print(f"|minibatch - full| = {abs(mini - full):.2e}")
    print(f"full / minibatch: time {t_full / t_mini:.1f}x, peak memory "
          f"{m_full / m_mini:.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
