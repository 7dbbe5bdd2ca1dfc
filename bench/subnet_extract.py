"""Extracted sub-network vs the super-network running the same configuration: forward
throughput, same process, same inputs.

The super-network (random init, eval mode) runs a Table ii configuration by slicing its
weights on every forward, as a super-network does during search and BN adaptation; the
extracted module holds copies of those slices in ordinary layers, as a member trained
or evaluated on its own would. Both see one seeded batch under inference_mode; their
outputs are compared (max |difference|). After --warmup untimed forwards each, the two
sides are timed --repeats times, alternating so that drift on a shared machine hits both;
the fastest forward counts. Prints sizes, both throughputs and their ratio.

    python bench/subnet_extract.py [--scale tiny --size 32 --batch 64 --config B_0
                                    --repeats 10 --warmup 2 --device cpu]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from ensui.engine.nas.elastic_resnet import build_supernet, extract
from ensui.engine.nas.macs import count_macs, count_parameters
from ensui.engine.nas.subnet_config import config_key, parse_table_ii
from ensui.paper import normalize_id, table_ii

DEFAULT_SIZE = {"tiny": 32, "paper": 224}


def forward_seconds(model: torch.nn.Module, x: torch.Tensor) -> float:
    """Wall time of one forward, waiting for the device to finish."""
    began = time.perf_counter()
    model(x)
    if x.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - began


def find_row(raw: str) -> dict | None:
    return next((row for row in table_ii() if normalize_id(row["id"]) == normalize_id(raw)),
                None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(DEFAULT_SIZE), default="tiny")
    parser.add_argument("--size", type=int, help="image side (default 32 tiny, 224 paper)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--config", default="B_0", help="a Table ii id")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    size = args.size or DEFAULT_SIZE[args.scale]
    row = find_row(args.config)
    if row is None:
        parser.error(f"--config: no Table ii row {args.config!r}; "
                     f"known: {', '.join(r['id'] for r in table_ii())}")
    if args.batch < 1 or args.repeats < 1 or args.warmup < 0 or size < 32:
        parser.error("need batch >= 1, repeats >= 1, warmup >= 0, size >= 32")

    torch.manual_seed(0)
    cfg = parse_table_ii(row)
    net = build_supernet(args.scale, 1000 if args.scale == "paper" else 10).eval()
    net.set_config(cfg)
    sub = extract(net, cfg)
    net, sub = net.to(args.device), sub.to(args.device)
    x = torch.randn(args.batch, 3, size, size, device=args.device)
    print(f"{row['id']} ({config_key(cfg)}) at {args.scale} scale, {size} px, batch "
          f"{args.batch}, {args.device}, {torch.get_num_threads()} threads")
    print(f"parameters: super-network {count_parameters(net) / 1e6:.2f} M, extracted "
          f"{count_parameters(sub) / 1e6:.2f} M; MACs per image "
          f"{count_macs(sub, size) / 1e6:.1f} M")

    best = {"masked": float("inf"), "extracted": float("inf")}
    with torch.inference_mode():
        print(f"max |extracted - masked| = {(sub(x) - net(x)).abs().max().item():.2e}")
        for _ in range(args.warmup):
            forward_seconds(net, x), forward_seconds(sub, x)
        for _ in range(args.repeats):
            best["masked"] = min(best["masked"], forward_seconds(net, x))
            best["extracted"] = min(best["extracted"], forward_seconds(sub, x))

    rate = {side: args.batch / seconds for side, seconds in best.items()}
    print(f"masked super-network: {rate['masked']:.1f} images/s")
    print(f"extracted:            {rate['extracted']:.1f} images/s")
    print(f"extracted / masked super-network: {rate['extracted'] / rate['masked']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
