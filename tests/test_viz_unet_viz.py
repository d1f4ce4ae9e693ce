"""Lesson 06's U-Net anatomy (diffusion_edu.viz.unet_viz): shape tracing, the parameter
breakdown, removing the skips, the configuration widget, and checks that the figures build
with titles and fit the notebook's width with readable text. The 2015 U-Net's arithmetic is
tested in test_models_unet2015.py."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import statistics
import time

import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.text import Text

from diffusion_edu.models.unet import UNet, UNetConfig, count_parameters
from diffusion_edu.models.unet2015 import skip_pairs
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.viz.plots import figure_to_png
from diffusion_edu.viz.unet_viz import (
    draw_unet2015_diagram,
    draw_unet_diagram,
    parameter_breakdown,
    plot_parameter_breakdown,
    plot_skip_experiment,
    plot_time_embedding,
    plot_unet_config,
    remove_skips,
    run_skip_experiment,
    trace_unet,
    unet_config_widget,
)

NOTEBOOK_WIDTH_INCHES = 9.6  # JupyterLab's default notebook width, ~960 px, at 100 dpi
SMALLEST_TEXT_POINTS = 8


def _titles(fig) -> list[str]:  # noqa: ANN001
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


def _texts(fig: Figure) -> list[str]:
    """Every piece of text drawn in ``fig`` (titles, labels, annotations, legend entries)."""
    fig.draw_without_rendering()  # tick labels are made when the figure is drawn
    texts = [t.get_text().strip() for t in fig.findobj(Text) if t.get_visible()]
    return [text for text in texts if text]


def _assert_legible(fig: Figure) -> None:
    """Shown at its own size in the notebook (not shrunk) and no text smaller than 8 points."""
    assert fig.get_figwidth() <= NOTEBOOK_WIDTH_INCHES, fig.get_figwidth()
    sizes = {t.get_text(): t.get_fontsize() for t in fig.findobj(Text) if t.get_text()}
    small = {text: size for text, size in sizes.items() if size < SMALLEST_TEXT_POINTS}
    assert not small, small


def _config(base_channels: int, levels: int, num_res_blocks: int, attention: bool) -> UNetConfig:
    """The configuration the widget describes (levels -> channel_mults (1, 2, ..., 2))."""
    return UNetConfig(
        base_channels=base_channels,
        channel_mults=(1,) + (2,) * (levels - 1),
        num_res_blocks=num_res_blocks,
        attention=attention,
    )


@pytest.mark.parametrize("size", [28, 32])
def test_trace_unet_shapes(size: int) -> None:
    model = UNet(UNetConfig(image_size=size))  # channels 32, 64, 64; 2 res blocks per level
    stages = trace_unet(model)
    by_name = {s.name: s for s in stages}
    half, quarter = (size + 1) // 2, ((size + 1) // 2 + 1) // 2
    assert by_name["conv_in"].out_shape == (32, size, size)
    assert by_name["down 0.1"].out_shape == (32, size, size)
    assert by_name["downsample 0"].out_shape == (32, half, half)
    assert by_name["down 1.0"].out_shape == (64, half, half)
    assert by_name["downsample 1"].out_shape == (64, quarter, quarter)
    assert by_name["mid attention"].out_shape == (64, quarter, quarter)
    # upsampling blocks see their input concatenated with the skip: 64 + 64 channels
    assert by_name["up 2.0"].in_shape == (128, quarter, quarter)
    assert by_name["up 0.0"].in_shape == (64 + 32, size, size)
    assert stages[-1].out_shape == (1, size, size)  # eps_hat matches x_t pixel for pixel
    assert sum(s.params for s in stages) + count_parameters(model.time_mlp) + sum(
        count_parameters(m) for m in (model.norm_out,)
    ) == count_parameters(model)
    # each skip joins a down block to an up block of the same resolution
    for a, b in skip_pairs(stages):
        assert stages[a].out_shape[1:] == stages[b].in_shape[1:]
    assert len(skip_pairs(stages)) == 6
    assert not model._forward_hooks and not model.conv_in._forward_hooks  # hooks removed


def test_parameter_breakdown_adds_up() -> None:
    model = UNet(UNetConfig(num_classes=10))
    parts = parameter_breakdown(model)
    assert sum(parts.values()) == count_parameters(model)
    assert parts["label embedding"] == 11 * model.config.time_embed_dim


def test_remove_skips_zeroes_only_the_skip_channels() -> None:
    torch.manual_seed(0)
    cfg = UNetConfig(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention=False)
    model = UNet(cfg)
    for p in model.parameters():  # zero-initialised layers would hide any difference
        torch.nn.init.normal_(p, std=0.1)
    x = torch.randn(2, 1, 28, 28)
    with_skips = model(x, 5)
    seen = []
    block = model.up_blocks[-1][0]
    handles = remove_skips(model)
    spy = block.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    without = model(x, 5)
    spy.remove()
    assert not torch.allclose(with_skips, without)
    assert torch.count_nonzero(seen[0][:, -8:]) == 0 and torch.count_nonzero(seen[0][:, :-8]) > 0
    for h in handles:
        h.remove()
    torch.testing.assert_close(model(x, 5), with_skips)


def test_unet_figures_have_titles_and_fit_the_notebook_width() -> None:
    model = UNet(UNetConfig(base_channels=16, channel_mults=(1, 2), num_res_blocks=1))
    for fig in (
        draw_unet_diagram(model),
        draw_unet_diagram(UNet(UNetConfig())),  # lesson 06's model
        draw_unet2015_diagram(),
        plot_parameter_breakdown(model),
        plot_time_embedding(dim=16, T=100),
        plot_unet_config(128, 4, 3, True),  # the widget's widest diagram: 35 stages
    ):
        assert _titles(fig)
        assert all(ax.get_xlabel() for ax in fig.axes if ax.get_title())
        _assert_legible(fig)
        plt.close(fig)


def test_unet2015_diagram_shows_the_real_parameter_count() -> None:
    fig = draw_unet2015_diagram()
    assert any("31,030,658 parameters" in text for text in _texts(fig))  # see test_models_unet2015
    plt.close(fig)


def test_time_embedding_legend_sits_outside_the_curves() -> None:
    fig = plot_time_embedding(dim=32, T=1000)
    fig.draw_without_rendering()
    ax = next(ax for ax in fig.axes if ax.get_legend() is not None)
    legend, plot_area = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert legend.x0 >= plot_area.x1  # to the right of the plot: it cannot cover a peak
    plt.close(fig)


def test_unet_config_figure_matches_a_model_built_on_the_cpu() -> None:
    for choice in [(16, 2, 1, False), (24, 4, 3, True), (8, 1, 2, True)]:
        model = UNet(_config(*choice))  # a real model, weights and all
        fig = plot_unet_config(*choice)
        texts = _texts(fig)
        assert any(f"{count_parameters(model):,} parameters" in t for t in texts)
        for part, count in parameter_breakdown(model).items():
            assert part in texts
            assert any(text.startswith(f"{count:,} (") for text in texts), (part, count)
        shapes = ["x".join(map(str, s.out_shape)) for s in trace_unet(model)]
        drawn = [t for t in texts if t in set(shapes)]
        assert drawn == shapes  # one box per traced stage, in order, labelled by its shape
        plt.close(fig)


@pytest.mark.slow  # about 8 s on a busy 2-core CPU: six redraws, each checked against a real UNet
def test_unet_config_widget_redraws_with_the_parameter_count_of_the_chosen_model() -> None:
    live = unet_config_widget()
    assert {"base_channels", "levels", "num_res_blocks", "attention"} <= set(live.controls)
    default = UNetConfig()
    first = live.last_figure
    assert any(f"{count_parameters(UNet(default)):,} parameters" in t for t in _texts(first))
    moves = [
        ("base_channels", 64),
        ("levels", 4),
        ("num_res_blocks", 1),
        ("attention", False),
        ("levels", 2),
        ("base_channels", 16),
    ]
    seconds = []
    before = _texts(first)
    for name, value in moves:
        start = time.perf_counter()
        live.controls[name].value = value
        seconds.append(time.perf_counter() - start)
        values = {n: c.value for n, c in live.controls.items()}
        total = count_parameters(UNet(_config(**values)))
        after = _texts(live.last_figure)
        assert after != before, name
        assert any(f"{total:,} parameters" in t for t in after), (values, total)
        before = after
    # What a new picture costs: the figure and its PNG at 100 dpi, as the widget shows it.
    draw = []
    for choice in [(40, 3, 2, True), (56, 4, 3, False), (72, 1, 1, True), (104, 2, 2, True)]:
        start = time.perf_counter()
        figure_to_png(plot_unet_config(*choice), dpi=100)
        draw.append(time.perf_counter() - start)
    print(
        f"\nunet_config_widget: control move -> figure, median "
        f"{1000 * statistics.median(seconds):.0f} ms (max {1000 * max(seconds):.0f} ms); "
        f"new figure + PNG, median {1000 * statistics.median(draw):.0f} ms"
    )


def test_unet_config_widget_explains_an_invalid_combination() -> None:
    live = unet_config_widget()
    live.controls["base_channels"].value = 12  # GroupNorm's 8 groups do not divide 12 channels
    texts = " ".join(" ".join(_texts(live.last_figure)).split())  # wrapped lines joined
    assert "not valid" in texts and "groups=8 must divide" in texts and "12" in texts
    live.controls["base_channels"].value = 16  # and a valid one draws the diagram again
    total = count_parameters(UNet(_config(16, 3, 2, True)))
    assert any(f"{total:,} parameters" in t for t in _texts(live.last_figure))


def test_skip_experiment_progress_bars_say_what_is_trained(
    capsys: pytest.CaptureFixture[str], fake_digits, one_thread
) -> None:  # noqa: ANN001
    images, _ = fake_digits(16)
    result = run_skip_experiment(
        images[:12], images[12:], NoiseSchedule.linear(), steps=2, batch_size=4, eval_ts=(50,)
    )
    bars = capsys.readouterr().err
    assert "U-Net with skips" in bars and "U-Net without skips" in bars
    assert "toy" not in bars
    fig = plot_skip_experiment(result)
    _assert_legible(fig)
    plt.close(fig)
