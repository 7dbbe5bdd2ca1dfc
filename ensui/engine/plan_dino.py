"""The jobs of a DINO member (methods.md §8): the self-supervised backbone stage, then the
member's linear probe, which is its "train" job (evaluations and analysis read it like any
trained member).

The backbone job's key holds the backbone settings only, not the classifier seed, so
members that differ only in it (Table i's dino_resnet1 and dino_resnet2: backbone seed 7,
classifier seeds 5 and 15) share one trained backbone.

Table i gives each row's optimizer, learning rate, schedule, epochs, batch size, seeds and
crop scales. What it leaves out comes from DINO's reference recipe at paper scale, or from
smaller values at tiny scale (32 px images, a few thousand of them); `training.dino` in
the spec overrides either, and every resolved value is in the job's parameters.
"""

from __future__ import annotations

from ensui.engine.data.augment import TABLE_III, augment_params
from ensui.engine.job import Job, content_key
from ensui.engine.spec import MemberSpec, Spec

PAPER = {"n_local": 8, "local_size": 96, "out_dim": 65536, "head_hidden": 2048,
         "head_bottleneck": 256, "teacher_momentum": 0.996, "teacher_temp": 0.04,
         "probe_lr": 0.001}
# Tiny: fewer prototypes and a sharper teacher, which kept a 6-epoch DINO ResNet on the
# digits learning longest before its teacher's distribution drifted towards uniform.
TINY = {"n_local": 4, "local_size": 16, "out_dim": 256, "head_hidden": 256,
        "head_bottleneck": 64, "teacher_momentum": 0.99, "teacher_temp": 0.02,
        "probe_lr": 0.4}  # 0.1 at batch 64: the cached probe's best of 0.025-0.25
VIT_WEIGHT_DECAY = (0.04, 0.4)  # DINO's cosine weight decay; Table i gives the DeiT rows none
MIN_LR = 1e-6
BLUR_SIGMA_224 = (0.1, 2.0)  # DINO's blur, in pixels of a 224 px crop


def resolved(spec: Spec) -> dict:
    """The scale's defaults, with the spec's `training.dino` values where given."""
    given = spec.training.dino
    base = PAPER if spec.scale == "paper" else TINY
    chosen = {k: getattr(given, k, None) for k in base}  # the head sizes are not options
    return {k: base[k] if chosen[k] is None else chosen[k] for k in base}


def dino_pretrain_job(spec: Spec, member: MemberSpec, row: dict, classes: int) -> Job:
    tr, given, cfg = spec.training, spec.training.dino, resolved(spec)
    recipe = row["extra"]["dino"]
    epochs = given.backbone_epochs or tr.epochs or row["epochs"]["backbone"]
    optimizer = dict(row["optimizer"])
    if member.lr is not None:
        optimizer["lr"] = member.lr
    decay = optimizer.get("weight_decay")
    wd, wd_end = (decay, decay) if decay is not None else VIT_WEIGHT_DECAY
    size = spec.dataset.size
    params = {
        "recipe": "dino_pretrain", "arch": row["arch"], "scale": spec.scale,
        "num_classes": classes, "image_size": size, "dataset": spec.dataset.model_dump(mode="json"),
        "seed": recipe["backbone_seed"] if member.seed is None else member.seed,
        "epochs": epochs, "batch_size": member.batch_size or tr.batch_size or row["batch_size"],
        "optimizer": optimizer, "scheduler": row["scheduler"], "min_lr": MIN_LR,
        "warmup_epochs": given.warmup_fraction * epochs,
        "weight_decay": wd, "weight_decay_end": wd_end,
        "global_scale": list(recipe["global_crops_scale"]),
        "local_scale": list(recipe["local_crops_scale"]),
        "hflip": TABLE_III["hflip"] if tr.hflip is None else tr.hflip,
        "blur_sigma": [s * size / 224 for s in BLUR_SIGMA_224],
        "teacher_temp": cfg["teacher_temp"],
        "warmup_teacher_temp": given.warmup_teacher_temp or cfg["teacher_temp"],
        "warmup_teacher_temp_epochs": round(given.warmup_teacher_temp_fraction * epochs),
        "clip_grad": given.clip_grad, "freeze_last_layer": given.freeze_last_layer,
        **{k: cfg[k] for k in ("n_local", "local_size", "out_dim", "head_hidden",
                               "head_bottleneck", "teacher_momentum")},
    }
    return Job(content_key({"kind": "pretrain", **params}), "pretrain", member.label, row["id"],
               params)


def dino_probe_job(spec: Spec, member: MemberSpec, row: dict, classes: int,
                   pretrain: Job) -> Job:
    """The linear probe on the frozen teacher backbone: SGD (momentum 0.9, no decay), a
    cosine schedule, the learning rate scaled by batch / 256; on cached features of the
    training images, or on Table iii's crops and flips (`training.dino.probe`)."""
    tr, given = spec.training, spec.training.dino
    batch = member.batch_size or tr.batch_size or row["batch_size"]
    probe = given.probe or ("cached" if spec.dataset.kind == "embedded" else "augmented")
    # a cached epoch is a pass over the features, not the backbone: Table i's count is cheap
    default_epochs = row["epochs"]["classifier"] if probe == "cached" else (
        tr.epochs or row["epochs"]["classifier"])
    classifier_seed = row["extra"]["dino"].get("classifier_seed")
    seed = member.seed if member.seed is not None else (
        classifier_seed if classifier_seed is not None else tr.seed)
    params = {
        "recipe": "dino", "model_id": row["id"], "arch": row["arch"], "scale": spec.scale,
        "num_classes": classes, "image_size": spec.dataset.size,
        "dataset": spec.dataset.model_dump(mode="json"), "backbone_key": pretrain.key,
        "optimizer": {"name": "sgd", "lr": resolved(spec)["probe_lr"] * batch / 256,
                      "momentum": 0.9, "weight_decay": 0.0},
        "scheduler": {"name": "cosine", "warmup_epochs": 0.0},
        "probe": probe, "epochs": member.epochs or given.probe_epochs or default_epochs,
        "batch_size": batch, "seed": seed,
        "augment": augment_params(tr.crop_scale, tr.hflip),
        "init_weights": None,
    }
    return Job(content_key({"kind": "train", **params}), "train", member.label, row["id"],
               params, depends=pretrain.key)
