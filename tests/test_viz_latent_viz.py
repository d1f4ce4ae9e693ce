"""Lesson 11's latent diffusion pictures (diffusion_edu.viz.latent_viz): the arithmetic against
the shapes, every picture against the shipped latent model's own encoder and decoder, the walk
widget, and the side-by-side figure against the records and PyTorch's FLOP counter."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import statistics
import time

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from diffusion_edu.data import load_mnist
from diffusion_edu.pretrained import load_pretrained, pretrained_info
from diffusion_edu.viz.latent_viz import (
    SD_V1_IMAGE_SHAPE,
    SD_V1_LATENT_SHAPE,
    channel_count_widget,
    decoder_flops,
    latent_cost_table,
    latent_walk,
    latent_walk_widget,
    plot_channel_counts,
    plot_latent_arithmetic,
    plot_latent_channels,
    plot_latent_walk,
    plot_reconstructions,
    plot_side_by_side,
    reconstruct,
    side_by_side,
    train_channel_count,
)
from diffusion_edu.viz.plots import FIGURE_WIDTH, to_display


@pytest.fixture(autouse=True)
def _one_thread(one_thread) -> None:  # noqa: ANN001
    """Small models on a shared CPU: one thread is quickest."""


@pytest.fixture(scope="module")
def latent_model() -> torch.nn.Module:
    return load_pretrained("mnist-latent", device="cpu")[0]


@pytest.fixture(scope="module")
def heldout() -> tuple[torch.Tensor, torch.Tensor]:
    digits = load_mnist("test", verbose=False)
    return digits.images, digits.labels


def _shown(ax: plt.Axes) -> np.ndarray:
    return np.asarray(ax.get_images()[0].get_array())


# ----------------------------------------------------------------------------- arithmetic
def test_cost_table_numbers_come_from_the_shapes(latent_model) -> None:  # noqa: ANN001
    sd, digits = latent_cost_table(latent_model)
    # Stable Diffusion v1 (CompVis/stable-diffusion, configs/stable-diffusion/v1-inference.yaml)
    assert (SD_V1_IMAGE_SHAPE, SD_V1_LATENT_SHAPE) == ((3, 512, 512), (4, 64, 64))
    assert (sd.pixel_values, sd.latent_values) == (512 * 512 * 3, 64 * 64 * 4) == (786_432, 16_384)
    assert sd.ratio == 48 and sd.downsampling == 8
    # the shipped digits' autoencoder, read from the model
    assert digits.image_shape == tuple(latent_model.image_shape) == (1, 28, 28)
    assert digits.latent_shape == tuple(latent_model.latent_shape) == (4, 7, 7)
    assert (digits.pixel_values, digits.latent_values, digits.ratio) == (784, 196, 4)
    assert digits.downsampling == 4
    assert latent_cost_table()[1] == digits  # the default config has the same shapes


def test_arithmetic_figure_bars_and_title_show_the_table(latent_model, assert_labelled) -> None:  # noqa: ANN001
    fig = plot_latent_arithmetic(latent_model)
    ax = fig.axes[0]
    assert [p.get_height() for p in ax.patches] == [786_432, 16_384, 784, 196]
    assert ax.get_yscale() == "log"
    title = ax.get_title()
    assert "786,432 / 16,384 = 48x" in title and "784 / 196 = 4x" in title, title
    texts = [t.get_text() for t in ax.texts]
    assert "48x fewer (f = 8)" in texts and "4x fewer (f = 4)" in texts, texts
    assert fig.get_figwidth() <= FIGURE_WIDTH
    assert_labelled(fig)


# ----------------------------------------------------------------------------- reconstructions
def test_reconstruction_figure_shows_the_autoencoders_round_trip(latent_model, heldout) -> None:  # noqa: ANN001
    images, labels = heldout
    x = images[::50][:6]  # one digit of each of six classes
    ae = latent_model.autoencoder
    with torch.no_grad():
        expected = ae.decode(ae.encode(x))  # unscaled latents: independent of the scale factor
    mse = (expected - x).square().mean(dim=(1, 2, 3))
    recon, got_mse = reconstruct(latent_model, x)
    torch.testing.assert_close(recon, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(got_mse, mse, atol=1e-7, rtol=1e-4)
    fig = plot_reconstructions(latent_model, x, labels[::50][:6])
    axes = np.asarray(fig.axes).reshape(3, 6)
    for j in range(6):
        np.testing.assert_allclose(_shown(axes[0, j]), to_display(x[j, 0]), atol=1e-6)
        np.testing.assert_allclose(_shown(axes[1, j]), to_display(expected[j, 0]), atol=1e-5)
        error = (x[j, 0] - expected[j, 0]).abs().numpy()
        np.testing.assert_allclose(_shown(axes[2, j]), error, atol=1e-5)
        title = axes[0, j].get_title()
        assert f"digit {int(labels[50 * j])}" in title and f"MSE {float(mse[j]):.4f}" in title
    assert fig.get_figwidth() <= FIGURE_WIDTH
    plt.close(fig)


def test_heldout_reconstruction_error_matches_the_shipped_record(latent_model, heldout) -> None:  # noqa: ANN001
    recorded = pretrained_info("mnist-latent").record["autoencoder"]["heldout_reconstruction_mse"]
    _, mse = reconstruct(latent_model, heldout[0])
    assert float(mse.mean()) == pytest.approx(recorded, abs=5e-5)  # recorded to 3 digits


# ----------------------------------------------------------------------------- channels
def test_latent_channels_are_the_models_scaled_latents(latent_model, heldout) -> None:  # noqa: ANN001
    x = heldout[0][7]
    z = latent_model.encode_images(x[None])[0]  # (4, 7, 7)
    fig = plot_latent_channels(latent_model, x)
    panels = [ax for ax in fig.axes if ax.get_title().startswith("latent channel")]
    assert len(panels) == 4
    limit = float(z.abs().max())
    for k, ax in enumerate(panels):
        np.testing.assert_allclose(_shown(ax), z[k].numpy(), atol=1e-6)
        image = ax.get_images()[0]
        assert image.get_clim() == pytest.approx((-limit, limit))  # shared, centred on 0
        assert image.get_cmap().name == "RdBu_r"
    assert len(fig.axes) == 6  # the digit, 4 channels, one shared colour bar
    assert "196 latent numbers" in fig._suptitle.get_text()
    assert fig.get_figwidth() <= FIGURE_WIDTH
    plt.close(fig)


# ----------------------------------------------------------------------------- walk
def test_latent_walk_ends_decode_the_digits_and_the_midpoint_is_the_average(
    latent_model,  # noqa: ANN001
    heldout,  # noqa: ANN001
) -> None:
    a, b = heldout[0][0], heldout[0][350]  # a 0 and a 7
    walk = latent_walk(latent_model, a, b, steps=9)
    torch.testing.assert_close(walk.weights, torch.linspace(0, 1, 9))
    z = latent_model.encode_images(torch.stack([a, b]))  # (2, 4, 7, 7)
    ends = latent_model.decode_latents(z)
    torch.testing.assert_close(walk.decoded[0], ends[0])
    torch.testing.assert_close(walk.decoded[-1], ends[1])
    torch.testing.assert_close(walk.latents[4], (z[0] + z[1]) / 2)
    torch.testing.assert_close(walk.decoded[4], latent_model.decode_latents(walk.latents[4:5])[0])
    torch.testing.assert_close(walk.crossfade[4], (a + b) / 2)
    torch.testing.assert_close(walk.crossfade[0], a)
    # the middle of the walk is not the pixel mix: decoding is not linear
    assert (walk.decoded[4] - walk.crossfade[4]).abs().mean() > 0.05
    fig = plot_latent_walk(latent_model, a, b, steps=9)
    axes = np.asarray(fig.axes).reshape(2, 9)
    for j in (0, 4, 8):
        np.testing.assert_allclose(_shown(axes[0, j]), to_display(walk.decoded[j, 0]), atol=1e-6)
        np.testing.assert_allclose(_shown(axes[1, j]), to_display(walk.crossfade[j, 0]), atol=1e-6)
    assert axes[0, 4].get_title() == "w = 0.50"
    assert fig.get_figwidth() <= FIGURE_WIDTH
    plt.close(fig)


def test_walk_widget_redraws_the_decoded_mix_when_a_control_moves(latent_model, heldout) -> None:  # noqa: ANN001
    images, labels = heldout
    live = latent_walk_widget(latent_model, images, labels)
    start, end, step = live.controls["start"], live.controls["end"], live.controls["step"]
    firsts = [int((labels == d).nonzero()[0, 0]) for d in range(10)]
    assert [value for _, value in start.options] == firsts
    assert (step.min, step.max, step.value) == (0, 10, 5)
    seconds = []
    for name, value in [("step", 2), ("end", firsts[8]), ("start", firsts[3]), ("step", 10)]:
        begin = time.perf_counter()
        live.controls[name].value = value
        seconds.append(time.perf_counter() - begin)
        w = step.value / 10
        x_a, x_b = images[start.value], images[end.value]
        z = latent_model.encode_images(torch.stack([x_a, x_b]))
        decoded = latent_model.decode_latents((1 - w) * z[:1] + w * z[1:])[0, 0]
        fig = live.last_figure
        np.testing.assert_allclose(_shown(fig.axes[0]), to_display(x_a[0]), atol=1e-6)
        np.testing.assert_allclose(_shown(fig.axes[1]), to_display(decoded), atol=1e-5)
        mix = to_display((1 - w) * x_a[0] + w * x_b[0])
        np.testing.assert_allclose(_shown(fig.axes[2]), mix, atol=1e-6)
        np.testing.assert_allclose(_shown(fig.axes[3]), to_display(x_b[0]), atol=1e-6)
        assert f"w = {w:.1f}" in fig._suptitle.get_text()
    assert "digit 3 -> digit 8" in live.last_figure._suptitle.get_text()
    assert live.last_figure.get_figwidth() <= FIGURE_WIDTH
    print(
        f"\nlatent_walk_widget: control move -> figure, median "
        f"{1000 * statistics.median(seconds):.0f} ms, max {1000 * max(seconds):.0f} ms"
    )
    assert statistics.median(seconds) < 0.3  # the lesson's goal for a redraw


# ----------------------------------------------------------------------------- side by side
def test_side_by_side_numbers_are_the_records_and_counted_flops(
    latent_model,  # noqa: ANN001
    assert_labelled,  # noqa: ANN001
) -> None:
    pixel_model = load_pretrained("mnist", device="cpu")[0]
    f = side_by_side(models=(pixel_model, latent_model))
    keys = ("ddim50_guidance1", "ddim50_guidance2")
    for name in ("mnist", "mnist-latent"):
        record = pretrained_info(name).record
        for field, got in (
            ("class_agreement", f.class_agreement),
            ("frechet_distance", f.frechet_distance),
            ("seconds_per_image", f.seconds_per_image),
        ):
            assert got[name] == tuple(record[k][field] for k in keys), (name, field)
    # FLOPs counted here, independently: the U-Net on pixels, the denoiser on 7 x 7 x 4 latents
    counts = []
    for model, shape in ((pixel_model, (1, 1, 28, 28)), (latent_model.denoiser, (1, 4, 7, 7))):
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(torch.zeros(shape), torch.full((1,), 500), torch.zeros(1, dtype=torch.long))
        counts.append(counter.get_total_flops())
    assert [f.model_call_flops["mnist"], f.model_call_flops["mnist-latent"]] == counts
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        latent_model.autoencoder.decoder(torch.zeros(1, 4, 7, 7))
    assert f.decoder_flops == decoder_flops(latent_model) == counter.get_total_flops() > 0
    fig = plot_side_by_side(f)
    ax_ca, ax_fd, ax_s, ax_fl = fig.axes
    for ax, values in ((ax_ca, f.class_agreement), (ax_fd, f.frechet_distance),
                       (ax_s, f.seconds_per_image)):  # fmt: skip
        heights = [p.get_height() for p in ax.patches]
        assert heights == [*values["mnist"], *values["mnist-latent"]]
        texts = {t.get_text() for t in ax.texts}
        assert {f"{v:g}" for v in heights} <= texts
    assert [p.get_height() for p in ax_fl.patches] == pytest.approx(
        [counts[0] / 1e6, counts[1] / 1e6, f.decoder_flops / 1e6]
    )
    assert "mnist 2, mnist-latent 1" in ax_s.get_xlabel()  # the records' thread counts
    assert fig.get_figwidth() <= FIGURE_WIDTH
    assert_labelled(fig)


# ----------------------------------------------------------------------------- bad input
def test_a_pixel_model_is_refused_with_what_to_load_instead(tiny_unet, heldout) -> None:  # noqa: ANN001
    unet, x = tiny_unet(), heldout[0][:2]
    for call in (
        lambda: plot_reconstructions(unet, x),
        lambda: plot_latent_channels(unet, x[0]),
        lambda: latent_walk(unet, x[0], x[1]),
        lambda: latent_walk_widget(unet, x, heldout[1][:2]),
        lambda: latent_cost_table(unet),
    ):
        with pytest.raises(
            TypeError, match=r"needs a latent diffusion model.*got UNet.*mnist-latent"
        ):
            call()


def test_bad_images_and_settings_are_refused_clearly(latent_model, heldout) -> None:  # noqa: ANN001
    images, labels = heldout
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 1, 28, 28\).*load_mnist"):
        plot_reconstructions(latent_model, torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"expected images of shape .*got \(3, 28, 28\)"):
        plot_latent_channels(latent_model, torch.zeros(3, 28, 28))
    with pytest.raises(ValueError, match="shows one digit"):
        plot_latent_channels(latent_model, images[:2])
    with pytest.raises(ValueError, match="steps must be an integer >= 2"):
        latent_walk(latent_model, images[0], images[1], steps=1)
    with pytest.raises(ValueError, match="pass one image each"):
        latent_walk(latent_model, images[:2], images[2])
    with pytest.raises(ValueError, match="got 3 labels for 2 images"):
        plot_reconstructions(latent_model, images[:2], [0, 1, 2])
    with pytest.raises(ValueError, match="at least two classes"):
        latent_walk_widget(latent_model, images[:5], torch.zeros(5, dtype=torch.long))
    with pytest.raises(TypeError, match="first model .* must be a pixel-space model"):
        side_by_side(models=(latent_model, latent_model))


# ----------------------------------------------------------------------------- channel count
def test_channel_count_trains_that_many_channels_and_reports_its_heldout_error(heldout) -> None:  # noqa: ANN001
    images = heldout[0]
    result = train_channel_count(2, images[:64], images[64:128], steps=3)
    assert result.autoencoder.latent_shape == (2, 7, 7) and result.steps == 3
    with torch.no_grad():  # the held-out error, computed here
        recon = result.autoencoder.decode(result.autoencoder.encode(images[64:128]))
    expected = float((recon.double() - images[64:128].double()).square().mean())
    assert result.heldout_mse == pytest.approx(expected, rel=1e-6)
    assert result.seconds > 0
    with pytest.raises(ValueError, match="latent_channels must be an integer >= 1"):
        train_channel_count(0, images[:64], images[64:128], steps=3)
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        train_channel_count(2, images[:64], images[64:128], steps=0)


@pytest.fixture(scope="module")
def channel_results(heldout) -> list:  # noqa: ANN001
    images = heldout[0]
    return [train_channel_count(c, images[:64], images[64:128], steps=2) for c in (4, 1)]


def _reconstructed(autoencoder: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return autoencoder.decode(autoencoder.encode(x))


def test_channel_count_figure_marks_the_chosen_count_and_shows_its_reconstructions(
    channel_results,  # noqa: ANN001
    heldout,  # noqa: ANN001
) -> None:
    x = heldout[0][:3]
    fig = plot_channel_counts(channel_results, x, selected=1)
    curve, marker = fig.axes[0].lines
    one = next(r for r in channel_results if r.latent_channels == 1)
    four = next(r for r in channel_results if r.latent_channels == 4)
    np.testing.assert_allclose(curve.get_xdata(), [1, 4])  # sorted by channel count
    np.testing.assert_allclose(curve.get_ydata(), [one.heldout_mse, four.heldout_mse])
    np.testing.assert_allclose(marker.get_ydata(), [one.heldout_mse])
    recon = _reconstructed(one.autoencoder, x)
    for j in range(3):  # original, reconstruction, column by column
        np.testing.assert_allclose(_shown(fig.axes[1 + 2 * j]), to_display(x[j, 0]), atol=1e-6)
        np.testing.assert_allclose(_shown(fig.axes[2 + 2 * j]), to_display(recon[j, 0]), atol=1e-5)
    assert "1 latent channel (49 numbers per digit), 2 training steps" in fig._suptitle.get_text()
    assert fig.axes[0].get_xlabel() and fig.axes[0].get_ylabel() and fig.axes[0].get_title()
    assert fig.get_figwidth() <= FIGURE_WIDTH
    with pytest.raises(ValueError, match="one of the channel counts"):
        plot_channel_counts(channel_results, x, selected=3)


def test_channel_count_widget_redraws_the_reconstructions_when_the_slider_moves(
    channel_results,  # noqa: ANN001
    heldout,  # noqa: ANN001
) -> None:
    x = heldout[0][:4]
    live = channel_count_widget(channel_results, x)
    slider = live.controls["channels"]
    assert list(slider.options) == [1, 4] and slider.value == 4
    before = live.image.widget.value
    for value in (1, 4):
        slider.value = value
        chosen = next(r for r in channel_results if r.latent_channels == value)
        fig = live.last_figure
        recon = _reconstructed(chosen.autoencoder, x)
        for j in range(4):
            np.testing.assert_allclose(
                _shown(fig.axes[2 + 2 * j]), to_display(recon[j, 0]), atol=1e-5
            )
        np.testing.assert_allclose(fig.axes[0].lines[1].get_ydata(), [chosen.heldout_mse])
        assert f"{value} latent channel" in fig._suptitle.get_text()
        if value == 1:
            assert live.image.widget.value != before  # a new picture was shown


def test_channel_count_pictures_refuse_bad_input_clearly(channel_results, heldout) -> None:  # noqa: ANN001
    x = heldout[0][:4]
    with pytest.raises(TypeError, match="list of ChannelCountResult"):
        plot_channel_counts([1, 2], x)
    with pytest.raises(ValueError, match="each channel count once"):
        plot_channel_counts([channel_results[0], channel_results[0]], x)
    with pytest.raises(ValueError, match="1 to 12 digits"):
        channel_count_widget(channel_results, heldout[0][:13])
    with pytest.raises(ValueError, match="at least two channel counts"):
        channel_count_widget(channel_results[:1], x)
