"""Member outputs per validation set, cached as checked arrays in one folder per job:
`logits.npy` (or `probs.npy`, float16), `labels.npy` and `ids.npy` (the sample order).
Everything per team is computed later from these files; a model never runs twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ensui.engine import artifacts
from ensui.engine.predict import accuracy_and_nll, predict


@dataclass(frozen=True)
class Outputs:
    values: np.ndarray  # float16 (N, classes): logits or probabilities
    labels: np.ndarray  # int64 (N,)
    ids: np.ndarray     # str (N,)
    kind: str           # "logits" | "probs"


def _files(folder: Path, store: str) -> dict[str, Path]:
    return {"values": folder / f"{store}.npy", "labels": folder / "labels.npy",
            "ids": folder / "ids.npy"}


def _to_float16(values: np.ndarray) -> np.ndarray:
    """float16 keeps outputs small; a diverged member's huge logits saturate, not overflow."""
    limit = np.finfo(np.float16).max
    return np.clip(values, -limit, limit).astype(np.float16)


def outputs_intact(folder: Path, store: str) -> bool:
    return all(artifacts.is_intact(p) for p in _files(folder, store).values())


def load_outputs(folder: Path, store: str) -> Outputs | None:
    arrays = {k: artifacts.load_array(p) for k, p in _files(folder, store).items()}
    if any(a is None for a in arrays.values()):
        return None
    return Outputs(arrays["values"], arrays["labels"], arrays["ids"], store)


def evaluate(model: torch.nn.Module, dataset, folder: Path, store: str, device: torch.device,
             image_size: int, batch_size: int = 256) -> tuple[float, float, int]:
    """Run the model over the set, write its outputs, return (accuracy, nll, n)."""
    logits = predict(model, dataset, batch_size, device, image_size)
    labels = dataset.labels
    accuracy, nll = accuracy_and_nll(logits, labels)
    values = logits if store == "logits" else logits.softmax(1)
    files = _files(folder, store)
    artifacts.save_array(labels.numpy().astype(np.int64), files["labels"])
    artifacts.save_array(np.asarray(dataset.ids, dtype=str), files["ids"])
    artifacts.save_array(_to_float16(values.numpy()), files["values"])
    return accuracy, nll, len(labels)
