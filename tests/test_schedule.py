import math

import pytest
import torch

from ensui.engine.train.schedule import lr_at, make_optimizer, scale_schedule


def test_step_schedule_by_whole_and_fractional_epochs():
    step = {"name": "step", "gamma": 0.1, "step_epochs": 30}
    assert lr_at(0, 10, 100, 0.1, step) == 0.1
    assert lr_at(299, 10, 100, 0.1, step) == 0.1
    assert math.isclose(lr_at(300, 10, 100, 0.1, step), 0.01)
    frac = {"name": "step", "gamma": 0.97, "step_epochs": 2.4}
    # 2.4 epochs of 10 iterations: the first decay happens at iteration 24, not 20 or 30
    assert lr_at(23, 10, 100, 0.256, frac) == 0.256
    assert math.isclose(lr_at(24, 10, 100, 0.256, frac), 0.256 * 0.97)
    assert math.isclose(lr_at(48, 10, 100, 0.256, frac), 0.256 * 0.97 ** 2)


def test_cosine_schedule():
    cos = {"name": "cosine"}
    assert lr_at(0, 10, 10, 1.0, cos) == 1.0
    assert math.isclose(lr_at(50, 10, 10, 1.0, cos), 0.5, abs_tol=1e-12)
    assert lr_at(99, 10, 10, 1.0, cos) < 0.001


def test_proportional_scaling_keeps_the_schedule_shape():
    step = {"name": "step", "gamma": 0.1, "step_epochs": 30}
    assert scale_schedule(step, 10, 100, "proportional")["step_epochs"] == pytest.approx(3.0)
    assert scale_schedule(step, 10, 100, "absolute")["step_epochs"] == 30
    assert scale_schedule({"name": "cosine"}, 10, 300, "proportional") == {"name": "cosine"}


@pytest.mark.parametrize("opt,cls,checks", [
    ({"name": "sgd", "lr": 0.1, "weight_decay": 1e-4, "momentum": 0.9}, torch.optim.SGD,
     {"momentum": 0.9, "weight_decay": 1e-4}),
    ({"name": "rmsprop", "lr": 0.256, "alpha": 0.9, "momentum": 0.9, "eps": 1e-3,
      "weight_decay": 0.0}, torch.optim.RMSprop, {"alpha": 0.9, "momentum": 0.9, "eps": 1e-3}),
    ({"name": "adamw", "lr": 5e-4, "weight_decay": 0.05}, torch.optim.AdamW, {"weight_decay": 0.05}),
])
def test_optimizers_take_the_row_hyperparameters(opt, cls, checks):
    made = make_optimizer([torch.nn.Parameter(torch.zeros(2))], opt)
    assert isinstance(made, cls)
    group = made.param_groups[0]
    assert group["lr"] == opt["lr"]
    for key, value in checks.items():
        assert group[key] == value


def test_unknown_names_raise():
    with pytest.raises(ValueError, match="unknown optimizer 'lamb'"):
        make_optimizer([torch.nn.Parameter(torch.zeros(1))], {"name": "lamb", "lr": 1})
    with pytest.raises(ValueError, match="unknown scheduler 'poly'"):
        lr_at(0, 1, 1, 1.0, {"name": "poly"})


def test_linear_warmup_then_schedule():
    sched = {"name": "step", "gamma": 0.1, "step_epochs": 30, "warmup_epochs": 0.5}
    assert lr_at(0, 10, 100, 0.2, sched) == pytest.approx(0.2 / 5)
    assert lr_at(4, 10, 100, 0.2, sched) == pytest.approx(0.2)
    assert lr_at(5, 10, 100, 0.2, sched) == 0.2
