"""Training loop (DDPM Algorithm 1), EMA, label dropout, divergence stop; and sampling a model.

A tiny U-Net (~32k parameters) on CPU keeps every test fast; precision is fixed to fp32 so
results do not depend on whether this CPU has native bf16.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from diffusion_edu.data import load_mnist
from diffusion_edu.forward import predict_x0_from_eps, q_sample
from diffusion_edu.models.unet import UNet, UNetConfig
from diffusion_edu.samplers import ddim_step, ddim_timesteps, sample, sample_steps
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.training import (
    EMA,
    TrainConfig,
    Trainer,
    TrainingDivergedError,
    diffusion_loss,
    drop_labels,
    learning_rate_at,
    train,
)

TINY = UNetConfig(
    base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention=False, groups=4,
    num_classes=10,
)  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def tiny_model(seed: int = 0, **changes: object) -> UNet:
    torch.manual_seed(seed)
    config = TINY if not changes else UNetConfig(**{**TINY.__dict__, **changes})
    return UNet(config)


def fake_digits(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, 28, 28, generator=g) * 2 - 1  # (N, 1, 28, 28) in [-1, 1]
    labels = torch.randint(0, 10, (n,), generator=g)
    return images, labels


def quiet_trainer(model: nn.Module, images, labels, **config) -> Trainer:
    cfg = TrainConfig(**{"batch_size": 16, "precision": "fp32", "warmup_steps": 2, **config})
    return Trainer(
        model, NoiseSchedule.linear(), images, labels, cfg, "cpu", verbose=False, progress=False
    )


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


def test_drop_labels_replaces_the_requested_fraction_with_the_null_label() -> None:
    labels = torch.arange(20_000) % 10
    g = torch.Generator().manual_seed(0)
    dropped = drop_labels(labels, null_label=10, p=0.25, generator=g)
    is_null = dropped == 10
    # Binomial(20000, 0.25): standard deviation 0.003 of the fraction; 0.015 is 5 sigma.
    assert abs(is_null.float().mean().item() - 0.25) < 0.015
    torch.testing.assert_close(dropped[~is_null], labels[~is_null])  # the rest are untouched
    torch.testing.assert_close(drop_labels(labels, 10, 0.0, g), labels)


def test_diffusion_loss_is_algorithm_1_with_q_sample() -> None:
    """With t and eps given, the loss is mean (eps - model(sqrt(ab) x0 + sqrt(1-ab) eps, t))^2."""
    schedule = NoiseSchedule.linear()
    model = tiny_model()
    for p in model.parameters():  # make the output non-zero (conv_out starts at zero)
        p.data.normal_(0, 0.05, generator=torch.Generator().manual_seed(1))
    x0, labels = fake_digits(4)
    t = torch.tensor([1, 10, 500, 1000])
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(2))
    ab = schedule.alpha_bars[t].float().view(-1, 1, 1, 1)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps  # DDPM Eq. 4, by hand
    expected = ((eps - model(x_t, t, labels)) ** 2).mean()
    got = diffusion_loss(model, x0, schedule, labels, t=t, eps=eps)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_diffusion_loss_draws_t_uniformly_from_1_to_T() -> None:
    seen: list[torch.Tensor] = []

    def spy(x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        seen.append(t)
        return torch.zeros_like(x_t)

    schedule = NoiseSchedule.linear(T=4)
    x0 = torch.zeros(4000, 1, 2, 2)
    loss = diffusion_loss(spy, x0, schedule, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(seen[0], minlength=6)
    assert counts[0] == 0 and counts[5] == 0  # never t = 0, never t = T + 1
    # Uniform over {1..4}: 1000 each, standard deviation ~27; allow 5 sigma.
    assert all(abs(c - 1000) < 140 for c in counts[1:5].tolist())
    # A model predicting 0 has loss E[eps^2] = 1 (16,000 draws: std of the mean ~0.011).
    assert abs(loss.item() - 1.0) < 0.06


def test_drawn_timesteps_take_the_same_path_as_q_sample() -> None:
    """The loop's fast path (device tables, no range check) is exactly Eq. 4 via q_sample."""
    seen: dict[str, torch.Tensor] = {}

    def spy(x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        seen.update(x_t=x_t, t=t)
        return torch.zeros_like(x_t)

    schedule = NoiseSchedule.cosine()
    x0, _ = fake_digits(8)
    diffusion_loss(spy, x0, schedule, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)  # the same draws, in the same order: t, then eps
    t = torch.randint(1, schedule.T + 1, (8,), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    torch.testing.assert_close(seen["t"], t, rtol=0, atol=0)
    torch.testing.assert_close(seen["x_t"], q_sample(x0, t, schedule, eps), rtol=0, atol=0)


def test_min_snr_weights_each_image_by_min_snr_gamma_over_snr() -> None:
    schedule = NoiseSchedule.cosine()
    model = tiny_model()
    for p in model.parameters():
        p.data.normal_(0, 0.05, generator=torch.Generator().manual_seed(1))
    x0, labels = fake_digits(4)
    t = torch.tensor([1, 100, 600, 1000])  # SNR from ~1e5 (almost clean) to ~0 (pure noise)
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(2))
    x_t = q_sample(x0, t, schedule, eps)
    per_image = ((eps - model(x_t, t, labels)) ** 2).flatten(1).mean(1)  # (4,)
    snr = schedule.snr[t].float()
    expected = (torch.clamp(snr, max=5.0) / snr * per_image).mean()
    got = diffusion_loss(model, x0, schedule, labels, t=t, eps=eps, min_snr_gamma=5.0)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    assert got < per_image.mean()  # the nearly clean t=1 image is down-weighted
    plain = diffusion_loss(model, x0, schedule, labels, t=t, eps=eps)
    huge_gamma = diffusion_loss(model, x0, schedule, labels, t=t, eps=eps, min_snr_gamma=1e9)
    torch.testing.assert_close(huge_gamma, plain)  # gamma above every SNR: plain DDPM loss
    with pytest.raises(ValueError, match="min_snr_gamma"):
        TrainConfig(min_snr_gamma=-1.0)


def test_schedule_tables_are_copied_to_a_device_once() -> None:
    schedule = NoiseSchedule.linear(T=10)
    table = schedule.on("sqrt_alpha_bars", "cpu")
    assert table.dtype == torch.float32 and table is schedule.on("sqrt_alpha_bars", "cpu")
    torch.testing.assert_close(table, schedule.sqrt_alpha_bars.float())


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
    with pytest.raises(ValueError, match="ema_decay"):
        TrainConfig(ema_decay=1.5)
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
    assert TrainConfig.from_dict(TrainConfig(lr=3e-4).to_dict()) == TrainConfig(lr=3e-4)


def test_trainer_rejects_0_to_255_images_and_missing_labels() -> None:
    images, labels = fake_digits(8)
    with pytest.raises(ValueError, match="127.5"):
        quiet_trainer(tiny_model(), (images + 1) * 127.5, labels)
    with pytest.raises(ValueError, match="class-conditional"):
        quiet_trainer(tiny_model(), images, None)
    poisoned = images.clone()
    poisoned[3, 0, 5, 5] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        quiet_trainer(tiny_model(), poisoned, labels)


# ----------------------------------------------------------------------------- the loop
def test_same_seed_gives_the_same_losses_and_another_seed_does_not() -> None:
    images, labels = fake_digits(64)
    runs = []
    for seed in (0, 0, 1):
        trainer = quiet_trainer(tiny_model(), images, labels, steps=4, seed=seed)
        runs.append([record.loss for record in trainer.run()])
    assert runs[0] == runs[1]  # bit for bit
    assert runs[0] != runs[2]


def test_train_step_records_are_typed_and_complete() -> None:
    images, labels = fake_digits(32)
    seen = []
    trainer = train(
        tiny_model(), NoiseSchedule.linear(), images, labels,
        TrainConfig(steps=3, batch_size=8, precision="fp32"), "cpu",
        callback=seen.append, verbose=False, progress=False,
    )  # fmt: skip
    assert [r.step for r in seen] == [1, 2, 3]
    assert trainer.history["loss"] == [r.loss for r in seen]
    assert all(r.images_per_s > 0 and math.isfinite(r.grad_norm) for r in seen)
    assert seen[-1].epoch == pytest.approx(3 * 8 / 32)


@pytest.mark.slow
def test_training_reduces_the_loss_on_the_bundled_digits() -> None:
    data = load_mnist(verbose=False)
    trainer = quiet_trainer(
        tiny_model(), data.images, data.labels, steps=40, batch_size=64, lr=3e-3, warmup_steps=5
    )
    losses = [record.loss for record in trainer.run()]
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    # Measured: ~0.9 over the first steps, ~0.15 after 40 steps (the zero-initialised output
    # layer makes the first loss ~1 = E[eps^2]). Ask for a halving.
    assert first > 0.7
    assert last < 0.5 * first, (first, last)


def test_the_ema_model_differs_from_the_raw_model_and_samples() -> None:
    images, labels = fake_digits(32)
    trainer = quiet_trainer(tiny_model(), images, labels, steps=3, ema_decay=0.5)
    list(trainer.run())
    raw = dict(trainer.model.named_parameters())
    assert any(not torch.equal(p, raw[n]) for n, p in trainer.ema_model.named_parameters())
    out = sample(trainer.ema_model, NoiseSchedule.linear(), labels=[1, 2], sampler="ddim",
                 steps=2, seed=0, progress=False)  # fmt: skip
    assert out.shape == (2, 1, 28, 28)


def test_a_huge_learning_rate_stops_training_with_a_clear_message() -> None:
    images, labels = fake_digits(32)
    trainer = quiet_trainer(tiny_model(), images, labels, steps=20, lr=1e6, warmup_steps=0)
    with pytest.raises(TrainingDivergedError) as info:
        for _ in trainer.run():
            pass
    message = str(info.value)
    assert f"step {info.value.step}" in message
    assert "learning rate is too high" in message and "data" in message
    assert info.value.step == trainer.step + 1  # the failing step was not counted


def test_a_nan_from_the_model_stops_before_the_weights_change() -> None:
    class PoisonAtStep3(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = tiny_model()
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


def test_reading_losses_back_every_k_steps_gives_the_same_records() -> None:
    """sync_every=4 (the GPU setting: no waiting for the device each step) loses nothing."""
    images, labels = fake_digits(32)
    every_step = quiet_trainer(tiny_model(), images, labels, steps=10)
    batched = Trainer(
        tiny_model(), NoiseSchedule.linear(), images, labels, every_step.config, "cpu",
        verbose=False, progress=False, sync_every=4,
    )  # fmt: skip
    reads: list[int] = []
    read_back = batched._read_back
    batched._read_back = lambda pending, seconds: (  # type: ignore[method-assign]
        reads.append(len(pending)) or read_back(pending, seconds)
    )
    a, b = list(every_step.run()), list(batched.run())
    assert reads == [4, 4, 2]  # three device -> host copies for ten steps
    assert [r.step for r in b] == list(range(1, 11))
    assert [r.loss for r in b] == [r.loss for r in a]
    assert [r.grad_norm for r in b] == [r.grad_norm for r in a]
    assert batched.history["loss"] == every_step.history["loss"]
    with pytest.raises(ValueError, match="sync_every"):
        Trainer(tiny_model(), NoiseSchedule.linear(), images, labels, sync_every=0)


def test_a_nan_found_in_a_batched_read_back_names_its_step() -> None:
    images, labels = fake_digits(32)
    model = tiny_model()
    trainer = Trainer(
        model, NoiseSchedule.linear(), images, labels,
        TrainConfig(steps=12, batch_size=16, precision="fp32", lr=1e9, warmup_steps=0),
        "cpu", verbose=False, progress=False, sync_every=4,
    )  # fmt: skip
    with pytest.raises(TrainingDivergedError) as info:
        list(trainer.run())
    message = str(info.value)
    assert f"step {info.value.step}" in message and "read back every 4 steps" in message
    assert info.value.step <= trainer.step <= 12 and trainer.step % 4 == 0


def test_bf16_autocast_trains_and_reports_its_precision() -> None:
    images, labels = fake_digits(32)
    trainer = quiet_trainer(tiny_model(), images, labels, steps=2, precision="bf16")
    assert trainer.amp_dtype == torch.bfloat16 and "bfloat16" in trainer.describe()
    losses = [r.loss for r in trainer.run()]
    assert all(math.isfinite(v) for v in losses)
    assert next(trainer.model.parameters()).dtype == torch.float32  # master weights stay fp32


# ----------------------------------------------------------------------------- sampling
def test_sampler_is_deterministic_given_a_seed() -> None:
    model = tiny_model(seed=3, num_classes=10)
    for p in model.parameters():
        p.data.normal_(0, 0.05, generator=torch.Generator().manual_seed(4))
    schedule = NoiseSchedule.linear(T=30)
    kwargs = dict(labels=[0, 7, 7], sampler="ddpm", progress=False)
    a = sample(model, schedule, seed=11, **kwargs)
    b = sample(model, schedule, seed=11, **kwargs)
    c = sample(model, schedule, seed=12, **kwargs)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)
    d = sample(model, schedule, seed=11, labels=[0, 7, 7], sampler="ddim", steps=5, eta=1.0,
               guidance=2.0, progress=False)  # fmt: skip
    e = sample(model, schedule, seed=11, labels=[0, 7, 7], sampler="ddim", steps=5, eta=1.0,
               guidance=2.0, progress=False)  # fmt: skip
    torch.testing.assert_close(d, e, rtol=0, atol=0)


def test_guidance_1_is_plain_conditional_ddim_sampling() -> None:
    """Reference: DDIM (eta=0) written out with ddim_step and model(x, t, labels) directly."""
    model = tiny_model(seed=5)
    for p in model.parameters():
        p.data.normal_(0, 0.05, generator=torch.Generator().manual_seed(6))
    model.eval()
    schedule = NoiseSchedule.linear(T=50)
    labels = torch.tensor([1, 4, 9])
    got = sample(model, schedule, labels=labels, sampler="ddim", steps=10, guidance=1.0,
                 seed=21, progress=False)  # fmt: skip
    x = torch.randn((3, 1, 28, 28), generator=torch.Generator().manual_seed(21))  # x_T
    timesteps = ddim_timesteps(schedule.T, 10)
    with torch.no_grad():
        for t, t_prev in zip(timesteps[:-1], timesteps[1:], strict=True):
            eps_hat = model(x, torch.full((3,), t), labels)
            x = ddim_step(eps_hat, x, t, t_prev, schedule, eta=0.0, clip_x0=True)
    torch.testing.assert_close(got, x.clamp(-1, 1), rtol=1e-5, atol=1e-6)


def test_guidance_calls_the_unconditional_branch_and_mixes_as_ho_and_salimans() -> None:
    """eps = eps_uncond + w (eps_cond - eps_uncond): with eps_cond = 1, eps_uncond = 0, eps = w."""

    class Spy(nn.Module):
        null_label = 10
        config = TINY

        def __init__(self) -> None:
            super().__init__()
            self.seen: list[torch.Tensor] = []

        def forward(self, x_t, t, labels=None):  # noqa: ANN001, ANN202
            self.seen.append(labels.clone())
            is_cond = (labels != self.null_label).float().view(-1, 1, 1, 1)
            return torch.ones_like(x_t) * is_cond  # 1 with a label, 0 without

    schedule = NoiseSchedule.linear(T=20)
    x_T = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([3, 5])
    for w, expect_null in ((1.0, False), (2.5, True), (0.0, True)):
        spy = Spy()
        step = next(sample_steps(spy, schedule, x_T, labels, "ddim", 2, guidance=w, clip_x0=False))
        assert any((s == 10).any() for s in spy.seen) == expect_null
        eps_used = torch.full_like(x_T, w)
        torch.testing.assert_close(step.x0_hat, predict_x0_from_eps(x_T, 20, eps_used, schedule))


@pytest.mark.slow
def test_compiled_training_matches_eager_and_saves_a_plain_model() -> None:
    """--compile changes speed, not results: same losses (to rounding), plain weights saved."""
    images, labels = fake_digits(32)
    eager = quiet_trainer(tiny_model(), images, labels, steps=3)
    compiled = Trainer(
        tiny_model(), NoiseSchedule.linear(), images, labels, eager.config, "cpu",
        verbose=False, progress=False, compile=True,
    )  # fmt: skip
    a = [r.loss for r in eager.run()]
    b = [r.loss for r in compiled.run()]
    torch.testing.assert_close(torch.tensor(b), torch.tensor(a), rtol=1e-4, atol=1e-5)
    assert type(compiled.model) is UNet and type(compiled.ema_model) is UNet
    assert compiled.ddp_model is not compiled.model  # the compiled wrapper trains
