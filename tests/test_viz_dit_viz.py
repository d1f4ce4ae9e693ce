"""Lesson 10's Diffusion Transformer pictures (diffusion_edu.viz.dit_viz): patches and tokens
against patchify, attention maps against DiT.attention_maps, the cost numbers against a real
DiT and PyTorch's FLOP counter, the cost widget, and the scaling figure."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import dataclasses
import json
import statistics
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.text import Text
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from diffusion_edu.models.common import forward_flops
from diffusion_edu.models.dit import DiT, DiTConfig, patchify
from diffusion_edu.models.unet import ResBlock, count_parameters
from diffusion_edu.recipes import DIT_SIZES
from diffusion_edu.scaling import ScalingPoint
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.viz import dit_viz
from diffusion_edu.viz.dit_viz import (
    adaln_gates,
    dit_cost_widget,
    dit_costs,
    load_scaling_record,
    plot_adaln_gates,
    plot_adaln_zero,
    plot_attention_maps,
    plot_dit_costs,
    plot_patches,
    plot_scaling,
    query_attention,
)
from diffusion_edu.viz.plots import FIGURE_WIDTH, to_display

TINY_DIT = DiTConfig(hidden_size=16, depth=2, num_heads=2, num_classes=10)


@pytest.fixture(autouse=True)
def _one_thread(one_thread) -> None:  # noqa: ANN001
    """Every test here builds small models: one thread is quickest on a shared CPU."""


def _digit(seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 28, 28, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _texts(fig: Figure) -> list[str]:
    fig.draw_without_rendering()
    return [t.get_text().strip() for t in fig.findobj(Text) if t.get_visible() and t.get_text()]


# ----------------------------------------------------------------------------- patches
@pytest.mark.parametrize("p", [4, 7, 14, 28])
def test_every_patch_is_numbered_and_holds_patchify_token_of_that_number(p: int) -> None:
    x = _digit()
    tokens = patchify(x[None], p)[0]  # (N, p*p): the library's reference
    fig = plot_patches(x, p)
    ax_img = fig.axes[0]
    numbers = [t for t in ax_img.texts if t.get_text().isdigit()]
    assert sorted(int(t.get_text()) for t in numbers) == list(range((28 // p) ** 2))
    for text in numbers:  # the pixels under each number are the token with that number
        cx, cy = text.get_position()
        col, row = int((cx + 0.5) // p), int((cy + 0.5) // p)
        patch = x[0, row * p : (row + 1) * p, col * p : (col + 1) * p].reshape(-1)
        torch.testing.assert_close(patch, tokens[int(text.get_text())])
    plt.close(fig)


@pytest.mark.parametrize("p", [1, 2, 4, 7, 14, 28])
def test_token_panel_is_patchify_output_and_title_counts_tokens(p: int, assert_labelled) -> None:  # noqa: ANN001
    x = _digit(1)
    fig = plot_patches(x, p)
    n = (28 // p) ** 2
    shown = fig.axes[1].get_images()[0].get_array()
    np.testing.assert_allclose(shown, to_display(patchify(x[None], p)[0]), atol=1e-6)
    assert shown.shape == (n, p * p)
    grid_lines = [ln for ln in fig.axes[0].lines]
    assert len(grid_lines) == 2 * (28 // p - 1)  # the inner patch boundaries
    if n > 49:  # too many to read: no numbers
        assert not [t for t in fig.axes[0].texts if t.get_text().isdigit()]
    tokens = "token" if n == 1 else "tokens"
    assert f"N = (28/{p})^2 = {n} {tokens} of {p}*{p} = {p * p} values" in fig._suptitle.get_text()
    assert fig.get_figwidth() <= FIGURE_WIDTH
    assert_labelled(fig)


def test_plot_patches_refuses_a_patch_size_that_does_not_tile_the_image() -> None:
    with pytest.raises(ValueError, match="patch_size=5 must divide .* choose one of 1, 2, 4, 7"):
        plot_patches(_digit(), 5)
    with pytest.raises(ValueError, match="one square grey-scale image"):
        plot_patches(torch.zeros(2, 1, 28, 28), 4)


# ----------------------------------------------------------------------------- attention
def test_query_attention_is_the_head_averaged_row_of_dit_attention_maps() -> None:
    torch.manual_seed(0)
    model = DiT(TINY_DIT).train()
    schedule = NoiseSchedule.linear()
    x_t, maps = query_attention(model, schedule, _digit(), 3, (900, 500, 100), query=10, layer=0)
    assert x_t.shape == (3, 1, 28, 28) and maps.shape == (3, 7, 7)
    torch.testing.assert_close(maps.sum(dim=(1, 2)), torch.ones(3))  # each row of softmax
    model.eval()
    full = model.attention_maps(x_t, torch.tensor([900, 500, 100]), torch.full((3,), 3))[0]
    torch.testing.assert_close(maps, full.mean(dim=1)[:, 10].reshape(3, 7, 7))
    assert not torch.allclose(maps[0], maps[2])  # the noise level changes where it looks
    again = query_attention(model, schedule, _digit(), 3, (900, 500, 100), query=10, layer=0)
    torch.testing.assert_close(again[1], maps)  # seeded noise: deterministic


def test_attention_figure_has_one_column_per_timestep_showing_the_maps() -> None:
    torch.manual_seed(0)
    model = DiT(TINY_DIT)
    schedule = NoiseSchedule.linear()
    for timesteps in [(900, 500, 100), (700, 50)]:
        was_training = model.training
        fig = plot_attention_maps(model, schedule, _digit(), 7, timesteps)
        assert model.training == was_training
        _, maps = query_attention(model, schedule, _digit(), 7, timesteps)
        titles = [ax.get_title() for ax in fig.axes]
        assert [t for t in titles if t.startswith("x_t at t =")] == [
            f"x_t at t = {t}" for t in timesteps
        ]
        heat = [
            im.get_array()
            for ax in fig.axes
            for im in ax.get_images()
            if im.get_cmap().name == "magma"
        ]
        assert len(heat) == len(timesteps)
        for shown, expected in zip(heat, maps, strict=True):
            np.testing.assert_allclose(shown, expected.numpy(), atol=1e-6)
            assert shown.sum() == pytest.approx(1.0, abs=1e-5)
        assert "patch 24" in fig._suptitle.get_text()  # the centre patch of a 7 x 7 grid
        assert fig.get_figwidth() <= FIGURE_WIDTH
        plt.close(fig)


def test_attention_maps_refuse_a_unet_and_bad_queries(tiny_unet) -> None:  # noqa: ANN001
    schedule = NoiseSchedule.linear()
    with pytest.raises(TypeError, match=r"needs a Diffusion Transformer.*got UNet.*mnist-dit"):
        plot_attention_maps(tiny_unet(), schedule, _digit(), 3)
    model = DiT(TINY_DIT)
    with pytest.raises(ValueError, match="query must be a token index in 0..48"):
        plot_attention_maps(model, schedule, _digit(), 3, query=49)
    with pytest.raises(ValueError, match="layer must be in -2..1"):
        query_attention(model, schedule, _digit(), 3, layer=2)


def test_attention_of_the_latent_dit_is_over_latent_patches_of_the_encoded_digit() -> None:
    """load_pretrained("mnist-dit"): the maps are its denoiser's, on z_t = q_sample(E(x) * scale
    factor) with the seeded noise, over the 7 x 7 latent grid; the pictures are decoded z_t,
    and each latent patch is outlined as the 4 x 4 pixels it stands for."""
    from diffusion_edu.forward import q_sample
    from diffusion_edu.pretrained import load_pretrained

    model, schedule = load_pretrained("mnist-dit")
    timesteps = (900, 500, 100)
    x_t, maps = query_attention(model, schedule, _digit(), 3, timesteps, query=10, layer=0)
    assert x_t.shape == (3, 1, 28, 28) and maps.shape == (3, 7, 7)
    assert x_t.min() >= -1 and x_t.max() <= 1
    torch.testing.assert_close(maps.sum(dim=(1, 2)), torch.ones(3))
    with torch.no_grad():
        z0 = model.autoencoder.encode(_digit()[None]) * model.scale_factor  # (1, 4, 7, 7)
        noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(0))
        ts = torch.tensor(timesteps)
        z_t = q_sample(z0.expand(3, -1, -1, -1), ts, schedule, noise.expand(3, -1, -1, -1))
        full = model.denoiser.attention_maps(z_t, ts, torch.full((3,), 3))[0]
        decoded = model.decode_latents(z_t).clamp(-1, 1)
    torch.testing.assert_close(maps, full.mean(dim=1)[:, 10].reshape(3, 7, 7))
    torch.testing.assert_close(x_t, decoded)
    fig = plot_attention_maps(model, schedule, _digit(), 3, timesteps, query=10)
    titles = [ax.get_title() for ax in fig.axes]
    assert [t for t in titles if "at t =" in t] == [f"decoded z_t at t = {t}" for t in timesteps]
    outlines = [p for ax in fig.axes for p in ax.patches if p.get_width() == 4]
    assert len(outlines) == len(
        timesteps
    )  # the query's 4 x 4 pixels (latent patch 10: row 1, col 3)
    assert all(p.get_xy() == (3 * 4 - 0.5, 1 * 4 - 0.5) for p in outlines)
    plt.close(fig)


def test_attention_maps_refuse_a_latent_model_whose_denoiser_is_a_unet() -> None:
    from diffusion_edu.pretrained import load_pretrained

    model, schedule = load_pretrained("mnist-latent")
    with pytest.raises(TypeError, match=r"needs a Diffusion Transformer.*got UNet"):
        query_attention(model, schedule, _digit(), 3)


# ----------------------------------------------------------------------------- costs
def _bmm_flops(model: DiT) -> int:
    """FLOPs of the batched matrix products (q k^T and weights @ v) as PyTorch counts them."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        model(torch.zeros(1, 1, 28, 28), torch.tensor([500]), torch.tensor([0]))
    counts = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    return counts["aten.bmm"]


def test_dit_costs_match_a_real_dit_and_pytorch_flop_counter() -> None:
    shares = []
    for p in (14, 7, 4, 2):
        costs = dit_costs(p, hidden_size=16, depth=2, num_heads=2)
        model = DiT(dataclasses.replace(TINY_DIT, patch_size=p))
        assert costs.tokens == (28 // p) ** 2
        assert costs.parameters == count_parameters(model)
        assert costs.flops == forward_flops(model)
        assert costs.attention_flops == _bmm_flops(model)  # 2 * 2 * N^2 * D per block
        shares.append(costs.attention_share)
    assert all(a < b for a, b in zip(shares[:-1], shares[1:], strict=True)), (
        shares
    )  # grows as p shrinks
    assert 0 < shares[0] and shares[-1] < 1


def test_dit_costs_refuse_a_patch_size_that_does_not_tile_the_image() -> None:
    with pytest.raises(ValueError, match="patch_size=3 must divide .* sizes that work: 1, 2, 4"):
        dit_costs(3, 64, 6)
    with pytest.raises(ValueError, match="size must be one of tiny, small, default, large"):
        plot_dit_costs(4, "huge")


def test_cost_figure_shows_the_chosen_numbers_and_the_unet_reference(assert_labelled) -> None:  # noqa: ANN001
    fig = plot_dit_costs(2, "tiny")
    base = DIT_SIZES["tiny"]
    costs = dit_costs(2, base.hidden_size, base.depth, base.num_heads)
    texts = _texts(fig)
    assert "196" in texts and f"{costs.attention_share:.0%}" in texts
    assert f"{costs.parameters:,} parameters" in fig._suptitle.get_text()
    unet_lines = [ln for ax in fig.axes for ln in ax.lines if "small U-Net" in ln.get_label()]
    assert len(unet_lines) == 2  # parameters and GFLOPs
    assert fig.get_figwidth() <= FIGURE_WIDTH
    assert_labelled(fig)


def test_cost_widget_redraws_when_a_control_changes() -> None:
    live = dit_cost_widget()
    assert set(live.controls) == {"patch_size", "size"}
    assert list(live.controls["patch_size"].options) == [1, 2, 4, 7, 14]
    assert list(live.controls["size"].options) == list(DIT_SIZES)
    assert "49 tokens" in live.last_figure._suptitle.get_text()  # the course's DiT-default/4
    seconds = []
    for name, value, tokens, size in [
        ("patch_size", 7, 16, "default"),
        ("size", "small", 16, "small"),
        ("patch_size", 2, 196, "small"),
        ("size", "default", 196, "default"),
    ]:
        start = time.perf_counter()
        live.controls[name].value = value
        seconds.append(time.perf_counter() - start)
        title = live.last_figure._suptitle.get_text()
        base = DIT_SIZES[size]
        p = live.controls["patch_size"].value
        params = count_parameters(DiT(dataclasses.replace(base, patch_size=p, num_classes=10)))
        assert f"{tokens} tokens" in title and f"{params:,} parameters" in title, title
    print(
        f"\ndit_cost_widget: control move -> figure (first time), median "
        f"{1000 * statistics.median(seconds):.0f} ms, max {1000 * max(seconds):.0f} ms"
    )


# ----------------------------------------------------------------------------- scaling
def _fake_record() -> dict:
    def points(scale: float) -> list[dict]:
        return [
            {"steps": s, "training_gflops": scale * s, "training_seconds": s / 10,
             "class_agreement": min(1.0, s / 2000), "frechet_distance": 50 / s ** 0.5,
             "seconds_per_image": 0.01}
            for s in (250, 500, 1000)
        ]  # fmt: skip

    return {
        "frechet_floor_same_n": 0.437,
        "models": {
            "dit-tiny": {"parameters": 11504, "points": points(0.4)},
            "dit-small": {"parameters": 220000, "points": points(4.0)},
            "unet-small": {"parameters": 200433, "points": points(20.0)[:2]},  # still running
        },
    }


def test_scaling_figure_draws_one_line_per_model_and_the_floor(assert_labelled) -> None:  # noqa: ANN001
    record = _fake_record()
    fig = plot_scaling(record)
    ax_fd, ax_ca = fig.axes
    for ax, key in ((ax_fd, "frechet_distance"), (ax_ca, "class_agreement")):
        lines = {ln.get_label().split(" ")[0]: ln for ax_ in [ax] for ln in ax_.lines}
        assert set(record["models"]) <= set(lines)
        for name, entry in record["models"].items():
            np.testing.assert_allclose(lines[name].get_ydata(), [q[key] for q in entry["points"]])
            np.testing.assert_allclose(
                lines[name].get_xdata(), [q["training_gflops"] for q in entry["points"]]
            )
    assert len(ax_fd.lines) == len(record["models"]) + 1  # + the floor
    assert ax_fd.get_xscale() == "log" and ax_fd.get_yscale() == "log"
    assert fig.get_figwidth() <= FIGURE_WIDTH
    assert_labelled(fig)


def test_scaling_figure_plots_guided_scores_and_recomputed_points() -> None:
    record = _fake_record()
    for entry in record["models"].values():
        for q in entry["points"]:
            q["class_agreement_guided"] = min(1.0, q["class_agreement"] + 0.2)
            q["frechet_distance_guided"] = q["frechet_distance"] / 2
    star = ScalingPoint(steps=250, training_gflops=100.0, training_seconds=2.0,
                        class_agreement=0.1, frechet_distance=9.0, class_agreement_guided=0.3,
                        frechet_distance_guided=4.0, seconds_per_image=0.01)  # fmt: skip
    fig = plot_scaling(record, guided=True, recomputed=[star], recomputed_label="mine")
    ax_fd, ax_ca = fig.axes
    tiny = next(ln for ln in ax_ca.lines if ln.get_label().startswith("dit-tiny"))
    np.testing.assert_allclose(
        tiny.get_ydata(),
        [q["class_agreement_guided"] for q in record["models"]["dit-tiny"]["points"]],
    )
    mine = [ln for ln in ax_fd.lines if ln.get_label() == "mine"]
    assert len(mine) == 1 and mine[0].get_ydata()[0] == 4.0 and mine[0].get_xdata()[0] == 100.0
    assert "with guidance" in fig._suptitle.get_text()
    with pytest.raises(ValueError, match="no guided scores"):
        plot_scaling(_fake_record(), guided=True)
    by_time = plot_scaling(_fake_record(), x="training_seconds")
    unet = next(ln for ln in by_time.axes[0].lines if ln.get_label().startswith("unet"))
    np.testing.assert_allclose(unet.get_xdata(), [25.0, 50.0])
    assert "time" in by_time.axes[0].get_xlabel()
    assert "training time" in by_time._suptitle.get_text()
    with pytest.raises(ValueError, match="x must be one of"):
        plot_scaling(_fake_record(), x="steps")


def test_scaling_draws_each_model_in_the_same_colour_in_any_subset() -> None:
    record = _fake_record()
    record["models"]["dit-default"] = record["models"].pop("dit-tiny")
    full = plot_scaling(record)
    pair = plot_scaling({**record, "models": {"dit-default": record["models"]["dit-default"]}})

    def colour(fig: Figure) -> str:
        line = next(ln for ln in fig.axes[0].lines if ln.get_label().startswith("dit-default"))
        return line.get_color()

    assert colour(full) == colour(pair) == dit_viz.SCALING_COLOURS["dit-default"]


def test_scaling_refuses_a_record_without_models(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="expected a dict with 'models'.*measure_dit_scaling.py"):
        plot_scaling({"frechet_floor_same_n": 0.4})
    with pytest.raises(ValueError, match="'dit-tiny' needs 'points'"):
        plot_scaling({"models": {"dit-tiny": {"parameters": 3}}})
    path = tmp_path / "dit_scaling.json"
    path.write_text(json.dumps(_fake_record()))
    assert load_scaling_record(path) == _fake_record()
    path.write_text('{"models": ')  # cut short while being written
    with pytest.raises(ValueError, match="not a readable DiT scaling record"):
        load_scaling_record(path)
    monkeypatch.setattr(dit_viz, "SCALING_RESULTS_FILE", "results/no_such_file.json")
    with pytest.raises(FileNotFoundError, match="scripts/measure_dit_scaling.py"):
        load_scaling_record()


# ----------------------------------------------------------------------------- adaLN-Zero
def test_adaln_zero_diagram_states_what_fresh_blocks_do() -> None:
    fig = plot_adaln_zero()
    texts = " ".join(_texts(fig))
    assert "gates start at 0: a fresh block returns x" in texts
    assert "a fresh block returns x (its last conv starts at 0)" in texts
    assert fig.get_figwidth() <= FIGURE_WIDTH
    plt.close(fig)
    # ...and both sentences are true of the library's blocks (random input and condition).
    torch.manual_seed(0)
    x, c = torch.randn(2, 49, 16), torch.randn(2, 16)
    for block in DiT(TINY_DIT).blocks:  # initialised by DiT: adaLN-Zero
        torch.testing.assert_close(block(x, c), x)
    block = ResBlock(16, 16, 32, groups=4, dropout=0.0)
    image = torch.randn(2, 16, 7, 7)
    torch.testing.assert_close(block(image, torch.randn(2, 32)), image)


# ----------------------------------------------------------------------------- adaLN gates
def test_adaln_gates_are_zero_in_a_fresh_dit_and_read_the_modulation_when_trained() -> None:
    torch.manual_seed(0)
    config = DiTConfig(image_size=8, patch_size=2, hidden_size=16, depth=3, num_heads=2,
                       num_classes=10)  # fmt: skip
    fresh = DiT(config)
    gates = adaln_gates(fresh, [900, 10], label=4)
    assert gates.shape == (2, 3, 2)
    assert torch.count_nonzero(gates) == 0  # the "Zero" of adaLN-Zero
    trained = DiT(config)
    for block in trained.blocks:  # stand in for training: open the gates
        torch.nn.init.normal_(block.modulation[1].weight)
        torch.nn.init.normal_(block.modulation[1].bias)
    gates = adaln_gates(trained, [900, 10], label=4)
    t = torch.tensor([900, 10])
    c = trained.embed(t, torch.tensor([4, 4]))
    chunks = trained.blocks[1].modulation(c).chunk(6, dim=1)
    torch.testing.assert_close(gates[:, 1, 0], chunks[2].abs().mean(1).detach())
    torch.testing.assert_close(gates[:, 1, 1], chunks[5].abs().mean(1).detach())
    assert not torch.equal(adaln_gates(trained, [900], None), gates[:1])  # null label differs


def test_adaln_gates_refuse_bad_input_and_plot_one_bar_per_block_and_t(assert_labelled) -> None:  # noqa: ANN001
    model = DiT(DiTConfig(image_size=8, patch_size=2, hidden_size=16, depth=2, num_heads=2,
                          num_classes=10))  # fmt: skip
    with pytest.raises(ValueError, match="label must be in 0..9"):
        adaln_gates(model, [500], label=10)
    with pytest.raises(ValueError, match="at least one timestep"):
        adaln_gates(model, [], label=1)
    with pytest.raises(TypeError, match="needs a Diffusion Transformer"):
        adaln_gates(torch.nn.Linear(2, 2), [500], label=1)
    fig = plot_adaln_gates(model, timesteps=(900, 500, 100), label=1)
    assert [len(ax.patches) for ax in fig.axes] == [2 * 3, 2 * 3]
    assert_labelled(fig)
