"""Layer × layer CKA of one pair of members (methods.md §5, optional): how each stage of
one network relates to each stage of the other on the same images.

Taps are the stages of each family (ResNet/ResNeXt `layer1`…`layer4`, MNASNet's and
SqueezeNet's feature blocks, every ViT block) plus the penultimate features. Each tap is
average-pooled over space (or tokens) to (N, channels), which keeps memory at paper scale
and makes CNN and ViT stages comparable; the CKA is the unbiased minibatch one.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ensui.engine.data.augment import resize_batch
from ensui.engine.diversity.activation import layer_cka


def layer_taps(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of the stages whose outputs are compared, input to output."""
    net = getattr(model, "net", model)
    net = getattr(net, "backbone", net)
    if hasattr(net, "blocks") and hasattr(net, "patch_embed"):
        return [(f"block{i + 1}", block) for i, block in enumerate(net.blocks)]
    if hasattr(net, "layer4"):
        return [(f"layer{i}", getattr(net, f"layer{i}")) for i in range(1, 5)]
    for name in ("layers", "features"):  # MNASNet, SqueezeNet: blocks that change width
        stages = getattr(net, name, None)
        if isinstance(stages, nn.Sequential):
            return [(f"{name}.{i}", m) for i, m in enumerate(stages)
                    if any(p.ndim == 4 for p in m.parameters(recurse=True))]
    raise ValueError(f"no layer taps are known for {type(net).__name__}")


def _pooled(output: torch.Tensor) -> torch.Tensor:
    if output.ndim == 4:
        return output.float().mean((2, 3))
    if output.ndim == 3:
        return output.float().mean(1)  # tokens
    return output.float().flatten(1)


@torch.inference_mode()
def layer_features(model: nn.Module, images: torch.Tensor, device: torch.device,
                   image_size: int, batch_size: int = 128) -> tuple[list[str], list[np.ndarray]]:
    """Tap names and pooled (N, C) outputs of every tap, then the penultimate features."""
    model.eval()
    taps = layer_taps(model)
    seen: dict[str, list[torch.Tensor]] = {name: [] for name, _ in taps}
    hooks = [module.register_forward_hook(
        lambda m, i, out, name=name: seen[name].append(_pooled(out).cpu())) for name, module in taps]
    final = []
    try:
        for start in range(0, len(images), batch_size):
            x = resize_batch(images[start:start + batch_size].to(device), image_size)
            final.append(model.features(x).float().cpu())
    finally:
        for hook in hooks:
            hook.remove()
    names = [name for name, _ in taps] + ["penultimate"]
    arrays = [torch.cat(seen[name]).numpy() for name, _ in taps] + [torch.cat(final).numpy()]
    return names, arrays


def pair_layer_cka(model_a: nn.Module, model_b: nn.Module, images: torch.Tensor,
                   device: torch.device, size_a: int, size_b: int,
                   batch_size: int = 256) -> dict:
    """{"rows": tap names of a, "cols": tap names of b, "values": (La, Lb) CKA}."""
    rows, feats_a = layer_features(model_a, images, device, size_a)
    cols, feats_b = layer_features(model_b, images, device, size_b)
    matrix = layer_cka(feats_a, feats_b, batch_size=min(batch_size, len(images)))
    return {"rows": rows, "cols": cols, "values": matrix}


def experiment_layer_cka(catalog, home, exp: dict, member_a: str, member_b: str,
                         val_set: str = "clean", samples: int = 512, seed: int = 0) -> dict:
    """Layer × layer CKA of two trained members of a recorded experiment, on a seeded
    subset of one of its validation sets."""
    from pathlib import Path

    from ensui.engine.data.sample import take_sample
    from ensui.engine.device import resolve_device
    from ensui.engine.models.factory import build_model, load_weights
    from ensui.engine.plan import make_plan
    from ensui.engine.spec import parse_spec
    from ensui.engine.train.supervised import WEIGHTS
    from ensui.engine.workspace import Workspace
    from ensui.errors import EnsuiError

    spec = parse_spec(exp["spec"], Path(exp["spec_path"]))
    if val_set not in spec.validation.sets:
        raise EnsuiError(f"'{val_set}' is not a validation set of '{exp['name']}' "
                         f"({', '.join(spec.validation.sets)})")
    trains = {j.member: j for j in make_plan(spec, catalog).of_kind("train")}
    device = resolve_device(spec.training.device)
    models, sizes = [], []
    for member in (member_a, member_b):
        job = trains.get(member)
        if job is None:
            raise EnsuiError(f"'{member}' is not a member of '{exp['name']}' "
                             f"({', '.join(trains)})")
        row = catalog.job(job.key)
        weights = home.runs / job.key / WEIGHTS
        if row is None or row["status"] != "done" or not weights.is_file():
            raise EnsuiError(f"'{member}' has no trained weights yet; run the experiment first")
        p = job.params
        model = build_model(p["arch"], p["scale"], p["num_classes"], p["image_size"], p["seed"])
        models.append(load_weights(model, weights).to(device))
        sizes.append(p["image_size"])
    dataset = Workspace(spec, home).valset(val_set)
    _, sample = take_sample(dataset, samples, seed)
    result = pair_layer_cka(*models, sample.images, device, *sizes)
    return {**result, "member_a": member_a, "member_b": member_b, "set": val_set,
            "samples": len(sample)}
