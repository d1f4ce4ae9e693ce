"""The one training loop (diffusion_edu.loop): schedule, EMA, records, divergence, budget, threads.

A tiny U-Net (~32k parameters) on CPU keeps every test fast; precision is fixed to fp32 so
results do not depend on whether this CPU has native bf16.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from diffusion_edu.data import load_mnist
from diffusion_edu.loop import (
    BUDGET_RESERVE,
    EMA,
    PROBE_STEPS,
    TensorBatches,
    TrainConfig,
    Trainer,
    TrainingDivergedError,
    learning_rate_at,
)
from diffusion_edu.models.unet import UNet
from diffusion_edu.samplers import sample
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.training import DiffusionLoss, train

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def quiet_trainer(model: nn.Module, images, labels, **config) -> Trainer:  # noqa: ANN001
    cfg = TrainConfig(**{"batch_size": 16, "precision": "fp32", "warmup_steps": 2, **config})
    data = TensorBatches(images, labels) if labels is not None else TensorBatches(images)
    loss = DiffusionLoss(NoiseSchedule.linear())
    return Trainer(model, loss, data, cfg, "cpu", verbose=False, progress=False)


# ----------------------------------------------------------------------------- pieces
def test_learning_rate_warms_up_linearly_then_decays_as_a_cosine() -> None:
    cfg = TrainConfig(steps=110, lr=1e-3, warmup_steps=10, min_lr=1e-5)
    assert learning_rate_at(1, cfg) == pytest.approx(1e-4)
    assert learning_rate_at(5, cfg) == pytest.approx(5e-4)
    assert learning_rate_at(10, cfg) == pytest.approx(1e-3)  # peak at the end of warm-up
    assert learning_rate_at(60, cfg) == pytest.approx((1e-3 + 1e-5) / 2)  # cosine halfway
    assert learning_rate_at(110, cfg) == pytest.approx(1e-5)  # min_lr at the last step
    lrs = [learning_rate_at(s, cfg) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))  # never rises after warm-up
    # A budget that ends training at step 60 ends the decay there too.
    assert learning_rate_at(60, cfg, total_steps=60) == pytest.approx(1e-5)
    assert learning_rate_at(35, cfg, total_steps=60) == pytest.approx((1e-3 + 1e-5) / 2)


def test_ema_follows_the_formula_with_a_ramped_decay() -> None:
    model = nn.Linear(3, 1)
    ema = EMA(model, decay=0.9)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    d0 = ema.current_decay()
    assert d0 == pytest.approx(1 / 10)  # (1 + 0) / (10 + 0): early updates follow the model
    ema.update(model)
    torch.testing.assert_close(ema.model.weight, d0 * start + (1 - d0) * model.weight.detach())
    for _ in range(200):
        ema.update(model)
    assert ema.current_decay() == pytest.approx(0.9)  # the ramp ends at the configured decay
    assert not any(p.requires_grad for p in ema.model.parameters())


def test_train_config_rejects_nonsense_with_the_field_name() -> None:
    for bad, field in (
        (dict(ema_decay=1.5), "ema_decay"),
        (dict(batch_size=0), "batch_size"),
        (dict(sync_every=0), "sync_every"),
        (dict(minutes=-1.0), "minutes"),
        (dict(precision="fp8"), "precision"),
    ):
        with pytest.raises(ValueError, match=field):
            TrainConfig(**bad)
    assert TrainConfig.from_dict(TrainConfig(lr=3e-4).to_dict()) == TrainConfig(lr=3e-4)
    old_file = {**TrainConfig().to_dict(), "label_dropout": 0.1, "min_snr_gamma": 5.0}
    assert TrainConfig.from_dict(old_file) == TrainConfig()  # version-1 keys are ignored


def test_tensor_batches_draw_matching_rows_with_a_seed_and_refuse_bad_data() -> None:
    x = torch.arange(10.0).view(10, 1)
    y = torch.arange(10) * 10
    data = TensorBatches(x, y)
    a = data.draw(32, torch.Generator().manual_seed(0))
    b = data.draw(32, torch.Generator().manual_seed(0))
    torch.testing.assert_close(a[0], b[0], rtol=0, atol=0)  # seeded
    assert torch.equal(a[0].view(-1).long() * 10, a[1])  # rows stay paired
    shard = data.shard(1, 2)
    assert torch.equal(shard.tensors[0].view(-1), torch.tensor([1.0, 3, 5, 7, 9]))
    with pytest.raises(ValueError, match="same length"):
        TensorBatches(x, y[:5])
    with pytest.raises(ValueError, match="NaN"):
        TensorBatches(torch.tensor([[float("nan")]]))
    with pytest.raises(ValueError, match="no training examples"):
        TensorBatches(torch.zeros(0, 2))


# ----------------------------------------------------------------------------- any model
class MSE:
    """A loss for a plain regression model: the loop knows nothing about diffusion."""

    def __call__(self, model, batch, generator):  # noqa: ANN001, ANN204
        x, y = batch
        return F.mse_loss(model(x), y)


def test_the_loop_trains_any_model_and_overfits_a_handful_of_examples() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 4, generator=g), torch.randn(8, 2, generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 2))
    config = TrainConfig(steps=600, batch_size=8, lr=1e-2, warmup_steps=0, ema_decay=None,
                         precision="fp32", grad_clip=0.0)  # fmt: skip
    trainer = Trainer(model, MSE(), TensorBatches(x, y), config, "cpu", verbose=False,
                      progress=False)  # fmt: skip
    losses = [r.loss for r in trainer.run()]
    assert losses[0] > 0.3 and losses[-1] < 1e-3, (losses[0], losses[-1])  # memorised
    assert trainer.ema_model is model  # no EMA kept: the model itself samples


def test_same_seed_gives_the_same_losses_and_another_seed_does_not(tiny_unet, fake_digits) -> None:
    images, labels = fake_digits(64)
    runs = []
    for seed in (0, 0, 1):
        trainer = quiet_trainer(tiny_unet(), images, labels, steps=4, seed=seed)
        runs.append([record.loss for record in trainer.run()])
    assert runs[0] == runs[1]  # bit for bit
    assert runs[0] != runs[2]


def test_train_step_records_are_typed_and_complete(tiny_unet, fake_digits) -> None:
    images, labels = fake_digits(32)
    seen = []
    trainer = train(
        tiny_unet(), NoiseSchedule.linear(), images, labels,
        TrainConfig(steps=3, batch_size=8, precision="fp32"), "cpu",
        callback=seen.append, verbose=False, progress=False,
    )  # fmt: skip
    assert [r.step for r in seen] == [1, 2, 3]
    assert trainer.history == seen  # typed records, not a dict of strings
    assert all(r.examples_per_s > 0 and math.isfinite(r.grad_norm) for r in seen)
    assert seen[-1].epoch == pytest.approx(3 * 8 / 32)
    assert seen[-1].seconds == pytest.approx(sum(r.step_seconds for r in seen))


@pytest.mark.slow
def test_training_reduces_the_loss_on_the_bundled_digits(tiny_unet) -> None:
    data = load_mnist(verbose=False)
    trainer = quiet_trainer(
        tiny_unet(), data.images, data.labels, steps=40, batch_size=64, lr=3e-3, warmup_steps=5
    )
    losses = [record.loss for record in trainer.run()]
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    # Measured: ~0.9 over the first steps, ~0.15 after 40 steps (the zero-initialised output
    # layer makes the first loss ~1 = E[eps^2]). Ask for a halving.
    assert first > 0.7
    assert last < 0.5 * first, (first, last)


def test_the_ema_model_differs_from_the_raw_model_and_samples(tiny_unet, fake_digits) -> None:
    images, labels = fake_digits(32)
    trainer = quiet_trainer(tiny_unet(), images, labels, steps=3, ema_decay=0.5)
    list(trainer.run())
    raw = dict(trainer.model.named_parameters())
    assert any(not torch.equal(p, raw[n]) for n, p in trainer.ema_model.named_parameters())
    out = sample(trainer.ema_model, NoiseSchedule.linear(), labels=[1, 2], sampler="ddim",
                 steps=2, seed=0, progress=False)  # fmt: skip
    assert out.shape == (2, 1, 28, 28)


# ----------------------------------------------------------------------------- divergence
def test_a_huge_learning_rate_stops_training_with_a_clear_message(tiny_unet, fake_digits) -> None:
    images, labels = fake_digits(32)
    trainer = quiet_trainer(tiny_unet(), images, labels, steps=20, lr=1e6, warmup_steps=0)
    with pytest.raises(TrainingDivergedError) as info:
        for _ in trainer.run():
            pass
    message = str(info.value)
    assert f"step {info.value.step}" in message
    assert "learning rate is too high" in message and "data" in message
    assert info.value.step == trainer.step + 1  # the failing step was not counted


def test_a_nan_from_the_model_stops_before_the_weights_change(tiny_unet, fake_digits) -> None:
    class PoisonAtStep3(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = tiny_unet()
            self.null_label = self.inner.null_label
            self.calls = 0

        def forward(self, x_t, t, labels=None):  # noqa: ANN001, ANN202
            self.calls += 1
            eps_hat = self.inner(x_t, t, labels)
            return eps_hat * float("nan") if self.calls == 3 else eps_hat

    images, labels = fake_digits(32)
    model = PoisonAtStep3()
    trainer = quiet_trainer(model, images, labels, steps=10)
    records = []
    with pytest.raises(TrainingDivergedError, match=r"step 3: the loss is NaN") as info:
        for record in trainer.run():
            records.append(record)
            weights_after_step_2 = {k: v.clone() for k, v in model.state_dict().items()}
    assert info.value.step == 3 and len(records) == 2 and trainer.step == 2
    for name, value in model.state_dict().items():  # step 3 was not applied
        torch.testing.assert_close(value, weights_after_step_2[name], rtol=0, atol=0)


def test_reading_losses_back_every_k_steps_gives_the_same_records(
    monkeypatch, tiny_unet, fake_digits
) -> None:  # noqa: ANN001
    """sync_every=4 (the GPU setting: no waiting for the device each step) loses nothing."""
    images, labels = fake_digits(32)
    every_step = quiet_trainer(tiny_unet(), images, labels, steps=10)
    batched = quiet_trainer(tiny_unet(), images, labels, steps=10, sync_every=4)
    reads: list[int] = []
    burst = batched._burst
    monkeypatch.setattr(batched, "_burst", lambda target: reads.append(1) or burst(target))
    a, b = list(every_step.run()), list(batched.run())
    assert len(reads) == 3  # three device -> host copies for ten steps (4 + 4 + 2)
    assert [r.step for r in b] == list(range(1, 11))
    assert [r.loss for r in b] == [r.loss for r in a]
    assert [r.grad_norm for r in b] == [r.grad_norm for r in a]


def test_a_nan_found_in_a_batched_read_back_names_its_step(tiny_unet, fake_digits) -> None:
    images, labels = fake_digits(32)
    trainer = quiet_trainer(
        tiny_unet(), images, labels, steps=12, lr=1e9, warmup_steps=0, sync_every=4
    )
    with pytest.raises(TrainingDivergedError) as info:
        list(trainer.run())
    message = str(info.value)
    assert f"step {info.value.step}" in message and "read back every 4 steps" in message
    assert info.value.step <= trainer.step <= 12 and trainer.step % 4 == 0


def test_bf16_autocast_trains_and_reports_its_precision(tiny_unet, fake_digits) -> None:
    images, labels = fake_digits(32)
    trainer = quiet_trainer(tiny_unet(), images, labels, steps=2, precision="bf16")
    assert trainer.amp_dtype == torch.bfloat16 and "bfloat16" in trainer.describe()
    losses = [r.loss for r in trainer.run()]
    assert all(math.isfinite(v) for v in losses)
    assert next(trainer.model.parameters()).dtype == torch.float32  # master weights stay fp32


# ----------------------------------------------------------------------------- time budget
def test_a_time_budget_fits_the_steps_and_the_lr_decay_to_the_measured_speed(
    monkeypatch, capsys, tiny_unet, fake_digits
) -> None:  # noqa: ANN001
    """With a fake clock (0.5 s per step), a 0.5-minute budget holds 58 steps, not 1,000:
    the plan comes after 1 + PROBE_STEPS steps (10.5 s), and keeps 5% of the 19.5 s left."""
    clock = {"now": 0.0}

    def fake_perf_counter() -> float:
        clock["now"] += 0.5  # read before and after each one-step burst: 0.5 s a step
        return clock["now"]

    monkeypatch.setattr("diffusion_edu.loop.perf_counter", fake_perf_counter)
    images, labels = fake_digits(32)
    cfg = TrainConfig(steps=1000, batch_size=8, precision="fp32", warmup_steps=5, minutes=0.5)
    trainer = Trainer(tiny_unet(), DiffusionLoss(NoiseSchedule.linear()),
                      TensorBatches(images, labels), cfg, "cpu", progress=False,
                      expect=lambda steps: f"EXPECT({steps})")  # fmt: skip
    records = list(trainer.run())
    plan = trainer.plan
    assert plan is not None and plan.seconds_per_step == pytest.approx(0.5)
    first = 1 + PROBE_STEPS  # the first burst is not timed (warm-up), then PROBE_STEPS are
    expected = first + int((30 - 0.5 * first) * (1 - BUDGET_RESERVE) / 0.5)
    assert expected == 58 and plan.steps == expected and trainer.step == expected
    assert len(records) == expected and 0.95 * 30 <= records[-1].seconds <= 30  # in the budget
    assert records[-1].lr == pytest.approx(cfg.min_lr)  # the decay ends where training ends
    said = capsys.readouterr().out
    assert "58 steps fit" in said and "1,000 would take 8 minutes" in said
    assert "EXPECT(58)" in said


def test_a_budget_bigger_than_the_steps_changes_nothing(tiny_unet, fake_digits) -> None:
    images, labels = fake_digits(32)
    plain = quiet_trainer(tiny_unet(), images, labels, steps=PROBE_STEPS + 4)
    budget = quiet_trainer(tiny_unet(), images, labels, steps=PROBE_STEPS + 4, minutes=60.0)
    a, b = [r.loss for r in plain.run()], [r.loss for r in budget.run()]
    assert a == b and budget.plan is not None and budget.plan.steps == PROBE_STEPS + 4


# ----------------------------------------------------------------------------- threads
def test_training_a_tiny_model_leaves_the_callers_thread_count_alone(
    tiny_unet, fake_digits
) -> None:
    torch.set_num_threads(2)  # the fixture restores the test's own setting afterwards
    images, labels = fake_digits(32)
    trainer = quiet_trainer(tiny_unet(), images, labels, steps=3)
    assert trainer.threads == 1  # the thread policy: a 32k-parameter model runs on one thread
    for _ in trainer.run():
        assert torch.get_num_threads() == 2  # restored before every record reaches the caller
    assert torch.get_num_threads() == 2


@pytest.mark.slow
def test_compiled_training_matches_eager_and_saves_a_plain_model(
    tiny_unet, fake_digits, monkeypatch
) -> None:
    """compile=True changes speed, not results: same losses (to rounding), plain weights.

    torch.compile runs with its "aot_eager" backend here: the same graph capture and autograd
    tracing as the default, without inductor's C++ code generation (40 s on a 2-core CPU). What
    this test checks is the loop's side (the compiled wrapper trains, the plain model and EMA
    are saved); inductor's numerics are PyTorch's to test.
    """
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kw: compile_(model, backend="aot_eager"))
    images, labels = fake_digits(32)
    eager = quiet_trainer(tiny_unet(), images, labels, steps=3)
    compiled = quiet_trainer(tiny_unet(), images, labels, steps=3, compile=True)
    a = [r.loss for r in eager.run()]
    b = [r.loss for r in compiled.run()]
    torch.testing.assert_close(torch.tensor(b), torch.tensor(a), rtol=1e-4, atol=1e-5)
    assert type(compiled.model) is UNet and type(compiled.ema_model) is UNet
    assert compiled.net is not compiled.model  # the compiled wrapper trains
    assert dataclasses.asdict(compiled.config)["compile"] is True
