"""DDPM's loss (diffusion_edu.training): Algorithm 1, prediction targets, Min-SNR, dropout.

The loop itself is tested in test_loop.py; sampling in test_samplers.py.
"""

from __future__ import annotations

import pytest
import torch

from diffusion_edu.forward import q_sample
from diffusion_edu.loop import TensorBatches, Trainer
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.targets import TARGETS, path_coefficients, regression_target, target_snr
from diffusion_edu.training import DiffusionLoss, diffusion_loss, drop_condition, min_snr_weight

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def busy(model: torch.nn.Module) -> torch.nn.Module:
    """Non-zero weights everywhere (the U-Net's output layer starts at zero)."""
    for p in model.parameters():
        p.data.normal_(0, 0.05, generator=torch.Generator().manual_seed(1))
    return model


# ----------------------------------------------------------------------------- dropout
def test_drop_condition_hides_the_requested_fraction_of_rows() -> None:
    labels = torch.arange(20_000) % 10
    g = torch.Generator().manual_seed(0)
    dropped = drop_condition(labels, torch.full_like(labels, 10), p=0.25, generator=g)
    is_null = dropped == 10
    # Binomial(20000, 0.25): standard deviation 0.003 of the fraction; 0.015 is 5 sigma.
    assert abs(is_null.float().mean().item() - 0.25) < 0.015
    torch.testing.assert_close(dropped[~is_null], labels[~is_null])  # the rest are untouched
    assert drop_condition(labels, torch.full_like(labels, 10), 0.0, g) is labels


def test_drop_condition_replaces_whole_token_rows_of_a_prompt() -> None:
    tokens = torch.randint(1, 50, (4000, 6), generator=torch.Generator().manual_seed(0))
    empty = torch.zeros_like(tokens)  # a text model's "no prompt": all padding
    out = drop_condition(tokens, empty, p=0.5, generator=torch.Generator().manual_seed(1))
    row_dropped = (out == 0).all(dim=1)
    row_kept = (out == tokens).all(dim=1)
    assert bool((row_dropped | row_kept).all())  # never half a prompt
    assert abs(row_dropped.float().mean().item() - 0.5) < 0.04


# ----------------------------------------------------------------------------- Algorithm 1
def test_diffusion_loss_is_algorithm_1_with_q_sample(tiny_unet, fake_digits) -> None:
    """With t and eps given, the loss is mean (eps - model(sqrt(ab) x0 + sqrt(1-ab) eps, t))^2."""
    schedule = NoiseSchedule.linear()
    model = busy(tiny_unet())
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


def test_drawn_timesteps_take_the_same_path_as_q_sample(fake_digits) -> None:
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


@pytest.mark.parametrize("target", TARGETS)
def test_each_target_is_compared_with_its_own_regression_target(target, fake_digits) -> None:
    """A model that outputs the right target exactly has zero loss; eps in its place does not."""
    schedule = NoiseSchedule.cosine(T=100)
    x0, _ = fake_digits(6)
    t = torch.tensor([1, 20, 40, 60, 80, 100])
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3))

    def oracle(x_t, t_, cond):  # noqa: ANN001, ANN202
        return regression_target(x0, eps, t_, schedule, target)

    loss = diffusion_loss(oracle, x0, schedule, t=t, eps=eps, target=target)
    assert loss.item() < 1e-10
    if target != "eps":
        wrong = diffusion_loss(lambda *a: eps, x0, schedule, t=t, eps=eps, target=target)
        assert wrong.item() > 0.01


def test_min_snr_weights_each_image_by_min_snr_gamma_over_snr(tiny_unet, fake_digits) -> None:
    schedule = NoiseSchedule.cosine()
    model = busy(tiny_unet())
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
        DiffusionLoss(schedule, min_snr_gamma=-1.0)


@pytest.mark.parametrize("target", TARGETS)
def test_min_snr_gives_every_target_the_same_weight_on_the_x0_error(target) -> None:
    """Hang et al. weight the error of the predicted x0 by min(SNR, gamma): a target's own
    weight times its squared error must equal that, for the same wrong belief about x0."""
    schedule = NoiseSchedule.cosine(T=100)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.rand(5, 1, 4, 4, generator=g) * 2 - 1, torch.randn(5, 1, 4, 4, generator=g)
    t = torch.tensor([3, 25, 50, 75, 97])
    a, b = path_coefficients(t, schedule, target, x0)
    x_t = a * x0 + b * eps
    wrong_x0 = x0 + 0.1 * torch.randn(x0.shape, generator=g)  # the same mistake for every target
    wrong_eps = (x_t - a * wrong_x0) / b  # the noise that belief implies at this x_t
    prediction = regression_target(wrong_x0, wrong_eps, t, schedule, target)
    truth = regression_target(x0, eps, t, schedule, target)
    error = (prediction - truth).pow(2).flatten(1).mean(1)
    x0_error = (wrong_x0 - x0).pow(2).flatten(1).mean(1)
    snr = target_snr(t, schedule, target)
    weighted = min_snr_weight(snr, 5.0, target) * error
    torch.testing.assert_close(weighted, snr.clamp(max=5.0) * x0_error, rtol=1e-4, atol=1e-7)


# ----------------------------------------------------------------------------- DiffusionLoss
def test_the_loss_refuses_0_to_255_images_and_missing_labels(tiny_unet, fake_digits) -> None:
    images, labels = fake_digits(8)
    loss = DiffusionLoss(NoiseSchedule.linear())

    def trainer(images, labels, model=None):  # noqa: ANN001, ANN202
        data = TensorBatches(images, labels) if labels is not None else TensorBatches(images)
        return Trainer(model or tiny_unet(), loss, data, None, "cpu", verbose=False)

    with pytest.raises(ValueError, match="127.5"):
        trainer((images + 1) * 127.5, labels)
    with pytest.raises(ValueError, match="class-conditional"):
        trainer(images, None)
    with pytest.raises(ValueError, match="unconditional"):
        trainer(images, labels, tiny_unet(num_classes=None))
    with pytest.raises(ValueError, match="integer"):
        trainer(images, labels.float())
    with pytest.warns(UserWarning, match=r"\[0, 1\] pixels"):
        trainer((images + 1) / 2, labels)


def test_the_loss_drops_labels_to_the_models_null_label_at_the_asked_rate(fake_digits) -> None:
    seen: list[torch.Tensor] = []

    class Spy(torch.nn.Module):
        null_label = 10

        def forward(self, x_t, t, labels):  # noqa: ANN001, ANN202
            seen.append(labels)
            return torch.zeros_like(x_t)

    x0, labels = fake_digits(4000)
    DiffusionLoss(NoiseSchedule.linear(), cond_dropout=0.2)(
        Spy(), (x0, labels), torch.Generator().manual_seed(0)
    )
    dropped = seen[0] == 10
    assert abs(dropped.float().mean().item() - 0.2) < 0.035
    assert torch.equal(seen[0][~dropped], labels[~dropped])
    assert DiffusionLoss(NoiseSchedule.linear()).to_dict() == {
        "min_snr_gamma": 0.0,
        "cond_dropout": 0.1,
    }
    with pytest.raises(ValueError, match="cond_dropout"):
        DiffusionLoss(NoiseSchedule.linear(), cond_dropout=1.0)
