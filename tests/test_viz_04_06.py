"""Lessons 04-06: U-Net shape tracing, and light checks that the figures and widgets build
(titles, labels) and that slider callbacks redraw without error. The schedule maths is tested
in test_schedule_analysis.py, the 2015 U-Net's arithmetic in test_unet2015.py."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from diffusion_edu import NoiseSchedule, UNet, UNetConfig, count_parameters
from diffusion_edu.models.unet2015 import skip_pairs
from diffusion_edu.toy2d import (
    HyperparameterSweep,
    ToyMLPConfig,
    ToyNoisePredictor,
    make_moons,
    make_moons_labelled,
    toy_schedule,
    train_and_sample_toy,
)
from diffusion_edu.viz.plots import LessonFigure
from diffusion_edu.viz.schedule_viz import (
    ScheduleExplorer,
    evenly_spaced_timesteps,
    plot_noised_rows,
    plot_schedule_comparison,
)
from diffusion_edu.viz.toy2d_viz import (
    HyperparameterTrainer,
    ScoreFieldExplorer,
    animate_reverse_2d,
    guidance_explorer,
    plot_conditional_samples,
    plot_data_quality,
    plot_forward_2d,
    plot_hyperparameter_sweep,
    plot_loss_curve,
    plot_reverse_snapshots,
    plot_samples_vs_data,
    plot_score_fields,
    plot_sweep_losses,
    plot_toy_run,
)
from diffusion_edu.viz.unet_viz import (
    draw_unet2015_diagram,
    draw_unet_diagram,
    parameter_breakdown,
    plot_parameter_breakdown,
    plot_time_embedding,
    remove_skips,
    trace_unet,
)

DIGIT = torch.linspace(-1, 1, 28 * 28).reshape(1, 28, 28)


def _titles(fig) -> list[str]:  # noqa: ANN001
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


# ----------------------------------------------------------------------------- schedule figures
def test_evenly_spaced_timesteps() -> None:
    assert evenly_spaced_timesteps(1000, 5) == [0, 250, 500, 750, 1000]
    with pytest.raises(ValueError):
        evenly_spaced_timesteps(10, 1)


def test_schedule_figures_have_titles_and_labels() -> None:
    fig = plot_schedule_comparison()
    assert isinstance(fig, LessonFigure) and fig._repr_png_()[:4] == b"\x89PNG"
    assert len(_titles(fig)) == 3 and all(ax.get_xlabel() == "step t" for ax in fig.axes)
    fig = plot_noised_rows(DIGIT, n=5)
    assert len(fig.axes) == 10 and fig.axes[0].get_ylabel() == "linear"


def test_schedule_explorer_redraws_and_shows_errors() -> None:
    explorer = ScheduleExplorer(DIGIT, n_images=5)
    first_png = explorer.image_widget.value
    assert first_png[:4] == b"\x89PNG"
    explorer.kind.value = "cosine"  # a slider callback
    assert explorer.image_widget.value != first_png
    assert explorer.lines[1].get_color() == "#00798c"
    explorer.update(kind="linear", T=100)
    _, ab_line, _ = explorer.lines
    torch.testing.assert_close(
        torch.as_tensor(ab_line.get_ydata()), NoiseSchedule.linear(T=100).alpha_bars
    )
    good_png = explorer.image_widget.value
    explorer.beta_end.value = 1.0  # invalid: NoiseSchedule.linear raises ValueError
    assert explorer.error is not None and "beta_end" in explorer.status.value
    assert explorer.image_widget.value == good_png  # the last good plot stays
    explorer.beta_end.value = 0.02
    assert explorer.error is None
    assert explorer.s.layout.display == "none" and explorer.beta_end.layout.display is None
    assert len(explorer.redraw_times) >= 4
    with pytest.raises(ValueError, match="unknown"):
        explorer.update(beta=0.1)


# ----------------------------------------------------------------------------- toy 2-D figures
def test_toy2d_figures_and_widget() -> None:
    torch.manual_seed(0)
    model = ToyNoisePredictor(ToyMLPConfig(hidden=16, depth=1))
    schedule, data = toy_schedule(T=20), make_moons(100)
    for fig in (
        plot_forward_2d(data, schedule, [0, 10, 20]),
        plot_score_fields(model, schedule, data, [1, 10]),
        plot_loss_curve([1.0] * 60 + [0.5] * 60),
    ):
        assert _titles(fig) and all(ax.get_xlabel() for ax in fig.axes if ax.get_title())
    explorer = ScoreFieldExplorer(model, schedule, data)
    before = explorer.image_widget.value
    explorer.t.value = 15
    assert explorer.image_widget.value != before and "t=15" in explorer.ax.get_title()
    xs = torch.randn(21, 30, 2)
    timesteps = list(range(20, -1, -1))
    assert _titles(plot_reverse_snapshots(xs, timesteps, data, k=4))
    assert _titles(plot_samples_vs_data(xs[-1], data, xs[0], (0.1, 0.5)))
    html = animate_reverse_2d(xs, timesteps, data, max_frames=5)
    assert "<script" in html


def test_conditional_figures_and_guidance_slider() -> None:
    torch.manual_seed(0)
    model = ToyNoisePredictor(ToyMLPConfig(hidden=16, depth=1, num_classes=2, T=20))
    schedule = toy_schedule(T=20)
    points, labels = make_moons_labelled(200, seed=0)
    # Samples exactly on class 0 / class 1 data: the titles must say 100%.
    fig = plot_conditional_samples(
        {0: points[labels == 0][:50], 1: points[labels == 1][:50]}, points, labels
    )
    titles = _titles(fig)
    assert len(titles) == 2 and all("100% of samples land on class" in t for t in titles)
    assert all(ax.get_xlabel() for ax in fig.axes)
    live = guidance_explorer(model, schedule, points, labels, n=20)
    assert "w = 1" in live.last_figure._suptitle.get_text()
    live.controls["guidance"].value = 3.0
    assert "w = 3" in live.last_figure._suptitle.get_text()


def _fake_run(lr: float, bs: int, distance: float) -> object:
    from diffusion_edu.toy2d import ToyRunResult

    samples = torch.randn(30, 2, generator=torch.Generator().manual_seed(bs))
    return ToyRunResult(
        lr, bs, "cosine", 20, 40, tuple([1.0] * 20 + [0.5] * 20), samples, distance, 0.1
    )


def test_hyperparameter_figures_and_trainer_widget() -> None:
    data = make_moons(200)
    runs = [_fake_run(lr, bs, d) for lr, d in ((1e-4, 0.5), (1e-2, float("inf"))) for bs in (8, 64)]
    sweep = HyperparameterSweep((1e-4, 1e-2), (8, 64), tuple(runs))
    fig = plot_hyperparameter_sweep(sweep, data)
    titles = _titles(fig)
    assert len(titles) == 4 and "lr=1e-04, batch=8" in titles[0] and "0.500" in titles[0]
    assert "diverged" in titles[-1]
    losses = plot_sweep_losses(sweep, window=5)
    assert [ax.get_title() for ax in losses.axes] == ["lr = 1e-04", "lr = 1e-02"]
    assert all(ax.get_xlabel() == "training step" for ax in losses.axes)
    assert len(losses.axes[0].get_legend().get_texts()) == 2  # one line per batch size
    run = train_and_sample_toy(data, steps=3, n_samples=10, batch_size=4, T=20)
    assert len(_titles(plot_toy_run(run, data))) == 2
    trainer = HyperparameterTrainer(data, steps=3, n_samples=10)
    assert trainer.last_run is None  # nothing trains until Train is pressed
    trainer.lr.value, trainer.batch_size.value = 1e-3, 16
    trainer.schedule.value, trainer.T.value = "linear", 25
    result = trainer.train()
    assert (result.lr, result.batch_size, result.schedule, result.T) == (1e-3, 16, "linear", 25)
    assert result.steps == 3 and "done" in trainer.status.value
    assert "linear schedule, T=25, 3 steps" in trainer.last_figure.axes[0].get_title()


def test_data_quality_figure() -> None:
    data = make_moons(200)
    sets = {"clean": data, "tiny": data[:8]}
    fig = plot_data_quality(sets, {"clean": data[:50], "tiny": data[:8]}, {"tiny": "copies: 90%"})
    titles = _titles(fig)
    assert len(titles) == 4 and "(8 points)" in titles[1] and "copies: 90%" in titles[3]
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)


# ----------------------------------------------------------------------------- U-Net anatomy
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


def test_unet_figures_have_titles() -> None:
    model = UNet(UNetConfig(base_channels=16, channel_mults=(1, 2), num_res_blocks=1))
    for fig in (
        draw_unet_diagram(model),
        draw_unet2015_diagram(),
        plot_parameter_breakdown(model),
        plot_time_embedding(dim=16, T=100),
    ):
        assert _titles(fig)
        assert all(ax.get_xlabel() for ax in fig.axes if ax.get_title())
