"""The CUDA paths (bf16 autocast, channels-last, pinned memory, GPU attribution) against
the CPU ones. Skipped where no GPU is present; run on a GPU machine."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ensui.engine.attribute import attribution_maps, features
from ensui.engine.data.augment import Augment
from ensui.engine.data.embedded import embedded_split
from ensui.engine.data.training import ArrayTrain
from ensui.engine.models.factory import build_model
from ensui.engine.predict import predict
from ensui.engine.train import supervised

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
GPU, CPU = torch.device("cuda"), torch.device("cpu")
SQUEEZENET = {"family": "squeezenet", "version": "1.1", "dropout": 0.5}
DEIT = {"family": "deit", "patch_size": 16, "embed_dim": 192, "depth": 12, "num_heads": 3}


@pytest.fixture(scope="module")
def digits():
    train, val = embedded_split(32, 0.2, 0)
    return ArrayTrain(train, Augment(32, (0.5, 1.0), hflip=0.0)), val


MNASNET = {"family": "mnasnet", "alpha": 1.0, "dropout": 0.2}


def _params(epochs=3):
    """The recipe that teaches tiny MNASNet the digits on CPU (tests/test_training.py)."""
    return {"epochs": epochs, "batch_size": 64, "seed": 3, "image_size": 32,
            "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
            "scheduler": {"name": "step", "gamma": 0.5, "step_epochs": 2, "warmup_epochs": 1}}


def test_training_on_gpu_learns_and_resumes(digits, tmp_path):
    data, val = digits
    seen = []
    supervised.train(build_model(MNASNET, "tiny", 10, 32, seed=0), data, val,
                     _params(), tmp_path / "a", GPU, on_epoch=seen.append)
    assert seen[-1].val_acc > 0.25, seen  # CPU float32 reaches 0.35+; chance is 0.1
    with pytest.raises(supervised.Stopped):
        supervised.train(build_model(MNASNET, "tiny", 10, 32, seed=0), data, val,
                         _params(), tmp_path / "b", GPU, should_stop=iter([False, True]).__next__)
    supervised.train(build_model(MNASNET, "tiny", 10, 32, seed=0), data, val, _params(),
                     tmp_path / "b", GPU)
    from ensui.engine import artifacts

    a = artifacts.load_state(tmp_path / "a" / supervised.WEIGHTS)
    b = artifacts.load_state(tmp_path / "b" / supervised.WEIGHTS)
    # cuDNN may pick other kernels after a restart: equal up to float noise, not bitwise
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-3, rtol=1e-3) for k in a)


@pytest.mark.parametrize("arch", [SQUEEZENET, DEIT], ids=["squeezenet", "deit"])
def test_bf16_predictions_agree_with_float32_cpu(digits, arch):
    _, val = digits
    model = build_model(arch, "tiny", 10, 32, seed=0).eval()
    cpu = predict(model, val, 128, CPU, 32)
    gpu = predict(model.to(GPU), val, 128, GPU, 32)
    assert gpu.dtype == torch.float32 and gpu.shape == cpu.shape
    spread = (cpu.max(1).values - cpu.min(1).values).mean()
    assert (gpu - cpu).abs().max() < 0.05 * spread  # bf16 keeps ~3 significant digits
    top2 = cpu.topk(2, 1).values
    clear = (top2[:, 0] - top2[:, 1]) > 0.05 * spread  # an untrained model has near ties
    assert clear.sum() > 20 and torch.equal(gpu.argmax(1)[clear], cpu.argmax(1)[clear])


@pytest.mark.parametrize("method", ["integrated_gradients", "layer_grad_cam"])
def test_attribution_maps_on_gpu_equal_cpu(digits, method):
    _, val = digits
    cfg = SimpleNamespace(n_steps=16, shap_samples=4, seed=0, batch_size=8, grid=8,
                          reduction="abs_sum")
    model = build_model(DEIT, "tiny", 10, 32, seed=0).eval()
    images, target = val.images[:16], val.labels[:16]
    cpu = attribution_maps(model, images, target, method, cfg, CPU, 32)
    gpu = attribution_maps(model.to(GPU), images, target, method, cfg, GPU, 32)
    np.testing.assert_allclose(gpu, cpu, rtol=2e-2, atol=1e-3 * np.abs(cpu).max())
    np.testing.assert_allclose(features(model, images, GPU, 32),
                               features(model.cpu(), images, CPU, 32), rtol=1e-3, atol=1e-3)
