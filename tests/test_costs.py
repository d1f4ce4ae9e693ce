"""diffusion_edu.costs: the FLOPs rule (2 P N x grid share) against PyTorch's FLOP counter on course
models, the grid share's independence of width and grid size, the calls with guidance, the
estimate's arithmetic, the throughput's interpolation, Stable Diffusion's preset, clear errors."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from diffusion_edu.costs import (
    SD_V1,
    SD_V1_GRID_SHARE,
    GenerationSetup,
    SpeedRow,
    Throughput,
    calls_per_image,
    estimate_cost,
    flops_per_call,
    flow_speed_row,
    grid_share,
    measure_throughput,
    sd_v1_layout,
    speed_rows,
)
from diffusion_edu.metrics import load_sampling_cost
from diffusion_edu.models import DiT, DiTConfig, UNet, count_parameters, forward_flops
from diffusion_edu.recipes import SMALL_UNET


# ----------------------------------------------------------------------------- the rule
def test_grid_share_is_counted_flops_over_2PN() -> None:
    torch.manual_seed(0)
    model = UNet(SMALL_UNET)  # the shipped pixel model's shape, 200,433 parameters
    flops = forward_flops(model)
    expected = flops / (2 * count_parameters(model) * 28 * 28)
    assert grid_share(model) == pytest.approx(expected, rel=1e-12)
    assert 0.15 < grid_share(model) < 0.3  # most weights on downsampled grids


def test_rule_predicts_forward_flops_of_the_same_unet_on_4x_the_pixels() -> None:
    """Calibrated at 28x28, the rule predicts the count at 56x56 within 2% (the rest is the
    bottleneck attention, which grows as N^2)."""
    model = UNet(SMALL_UNET)
    share = grid_share(model)
    predicted = flops_per_call(count_parameters(model), 56 * 56, share)
    assert predicted == pytest.approx(forward_flops(model, (1, 56, 56)), rel=0.02)


def test_rule_predicts_forward_flops_of_a_wider_unet_from_the_narrow_ones_share() -> None:
    narrow = UNet(SMALL_UNET)
    wide = UNet(dataclasses.replace(SMALL_UNET, base_channels=32))  # about 4x the parameters
    assert count_parameters(wide) > 3.5 * count_parameters(narrow)
    predicted = flops_per_call(count_parameters(wide), 28 * 28, grid_share(narrow))
    assert predicted == pytest.approx(forward_flops(wide), rel=0.02)


def test_a_transformer_on_one_token_per_position_has_a_share_near_one() -> None:
    """Kaplan et al. 2020, Sec. 2.1: 2N FLOPs per token; here 49 tokens of a 7x7x4 latent grid.
    The embeddings (time, label, positions) are parameters not applied per token: share < 1."""
    dit = DiT(DiTConfig(image_size=7, in_channels=4, patch_size=1, hidden_size=64, depth=6,
                        num_heads=4, num_classes=10))  # fmt: skip
    share = grid_share(dit)
    assert 0.6 < share < 1.1
    predicted = flops_per_call(count_parameters(dit), 49, share)
    assert predicted == pytest.approx(forward_flops(dit), rel=1e-9)


def test_sd_layout_share_does_not_depend_on_width_or_grid_and_matches_the_constant() -> None:
    shares = [grid_share(sd_v1_layout(w), (4, g, g)) for w in (8, 16) for g in (16, 32)]
    assert max(shares) / min(shares) < 1.01
    assert grid_share(sd_v1_layout(16)) == pytest.approx(SD_V1_GRID_SHARE, rel=0.01)


def test_grid_share_refuses_a_model_without_an_image_grid() -> None:
    from diffusion_edu.models import ToyMLPConfig, ToyNoisePredictor

    with pytest.raises(ValueError, match="reads no image grid"):
        grid_share(ToyNoisePredictor(ToyMLPConfig()))


@pytest.mark.parametrize(
    ("args", "match"),
    [((0, 10, 0.2), "positive"), ((10, -1, 0.2), "positive"), ((10, 10, 0.0), "grid share"),
     ((10, 10, 3.0), "grid share")],
)  # fmt: skip
def test_flops_per_call_refuses_bad_inputs(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        flops_per_call(*args)


def test_calls_per_image_double_with_guidance_and_refuse_bad_steps() -> None:
    assert calls_per_image(50, guidance=False) == 50
    assert calls_per_image(50, guidance=True) == 100
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match="steps"):
            calls_per_image(bad, guidance=False)


# ----------------------------------------------------------------------------- setups
def test_sd_v1_preset_has_the_published_shapes() -> None:
    """512x512 images, f = 8 -> 64x64 latents, 860M parameters, 50 guided steps (CompVis
    README and scripts/txt2img.py defaults)."""
    assert (SD_V1.image_size, SD_V1.downsampling, SD_V1.grid_side) == (512, 8, 64)
    assert SD_V1.latent and SD_V1.positions == 4096
    assert SD_V1.parameters == 860e6
    assert (SD_V1.steps, SD_V1.guidance) == (50, True)


@pytest.mark.parametrize(
    ("changes", "match"),
    [({"image_size": 0}, "image_size"), ({"downsampling": 0}, "downsampling"),
     ({"latent": False}, "pixel model has downsampling 1"), ({"image_size": 500}, "multiple"),
     ({"batch": 0}, "batch"), ({"steps": 0}, "steps"), ({"parameters": -1}, "positive"),
     ({"share": 5.0}, "grid share")],
)  # fmt: skip
def test_generation_setup_refuses_bad_inputs_with_a_clear_message(
    changes: dict, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(SD_V1, **changes)


def test_latent_f8_saves_64x_per_call_at_512_by_the_rule() -> None:
    pixel = dataclasses.replace(SD_V1, latent=False, downsampling=1)
    fast = Throughput((1,), (1e10,))
    ratio = estimate_cost(pixel, fast).flops_per_call / estimate_cost(SD_V1, fast).flops_per_call
    assert ratio == pytest.approx(64.0, rel=1e-12)


# ----------------------------------------------------------------------------- estimate
def test_estimate_is_flops_per_call_times_calls_over_throughput_by_hand() -> None:
    setup = GenerationSetup("hand", 28, False, 1, 200_000, 0.25, 50, True, batch=4)
    rate = Throughput((1, 16), (1e9, 4e9))
    est = estimate_cost(setup, rate)
    per_call = 2 * 200_000 * 784 * 0.25  # 78.4 MFLOPs
    assert est.flops_per_call == pytest.approx(per_call)
    assert est.calls_per_image == 100
    assert est.flops_per_image == pytest.approx(100 * per_call)
    # batch 4 is halfway between 1 and 16 on a log axis: 2.5e9 FLOP/s
    assert est.flops_per_second == pytest.approx(2.5e9)
    assert est.seconds_per_image == pytest.approx(100 * per_call / 2.5e9)
    assert est.seconds_per_batch == pytest.approx(4 * est.seconds_per_image)
    assert estimate_cost(setup, rate, speedup=10).seconds_per_image == pytest.approx(
        est.seconds_per_image / 10
    )
    with pytest.raises(ValueError, match="speedup"):
        estimate_cost(setup, rate, speedup=0)


def test_sd_estimate_is_hundreds_of_gflops_per_call() -> None:
    est = estimate_cost(SD_V1, Throughput((1,), (1e10,)))
    assert est.flops_per_call == pytest.approx(2 * 860e6 * 4096 * SD_V1_GRID_SHARE)
    assert 3e11 < est.flops_per_call < 1e12
    assert est.calls_per_image == 100


def test_throughput_interpolates_on_log_batch_and_clamps_outside() -> None:
    t = Throughput((1, 4, 16), (1.0, 3.0, 5.0))
    assert t.at(1) == 1.0 and t.at(16) == 5.0
    assert t.at(2) == pytest.approx(2.0)  # log2(2) / log2(4) = 1/2 of the way
    assert t.at(8) == pytest.approx(4.0)
    assert t.at(64) == 5.0  # no extrapolation
    with pytest.raises(ValueError, match="batch"):
        t.at(0)


@pytest.mark.parametrize(
    ("batches", "rates", "match"),
    [((), (), "one throughput"), ((1, 4), (1.0,), "one throughput"),
     ((4, 1), (1.0, 2.0), "increasing"), ((1,), (0.0,), "positive"),
     ((1,), (math.nan,), "positive")],
)  # fmt: skip
def test_throughput_refuses_bad_records(batches: tuple, rates: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Throughput(batches, rates)


def test_measure_throughput_times_a_small_unet(tiny_unet, one_thread) -> None:  # noqa: ANN001
    model = tiny_unet(num_classes=10)
    t = measure_throughput(model, batches=(2, 1), repeats=1, name="tiny")
    assert t.batches == (1, 2)  # sorted
    assert all(r > 1e6 for r in t.flops_per_second)  # more than a MFLOP/s on any CPU
    assert (t.model, t.device, t.threads) == ("tiny", "cpu", torch.get_num_threads())
    with pytest.raises(ValueError, match="repeats"):
        measure_throughput(model, repeats=0)
    with pytest.raises(ValueError, match="batch"):
        measure_throughput(model, batches=(0,))


# ----------------------------------------------------------------------------- sampler rows
def test_speed_rows_read_lesson_08s_record() -> None:
    sweep = load_sampling_cost()
    rows = speed_rows(sweep, [("ddpm", 1000), ("dpm-solver++", 15)])
    assert [r.name for r in rows] == ["DDPM-1000", "DPM-Solver++(2M)-15"]
    ddpm = sweep.get("ddpm", 1000)
    assert rows[0].seconds_per_image == ddpm.seconds_per_image
    assert rows[0].model_calls == 1000
    assert rows[0].seconds_per_image > 20 * rows[1].seconds_per_image  # slow generation


def test_flow_speed_row_reads_the_flow_records_euler_50_at_the_races_guidance() -> None:
    record = {
        "command": "x",
        "euler50_guidance1": {"class_agreement": 0.9, "frechet_distance": 0.7,
                              "seconds_per_image": 0.03},
        "euler50_guidance2": {"class_agreement": 0.99, "frechet_distance": 0.8,
                              "seconds_per_image": 0.06},
    }  # fmt: skip
    row = flow_speed_row(record)
    assert row == SpeedRow("flow matching, Euler-50", 50, 0.03, 0.9, 0.7,
                           "data/pretrained/mnist_flow.json (euler50_guidance1)")  # fmt: skip
    assert flow_speed_row(record, guidance=2.0).model_calls == 100
    with pytest.raises(ValueError, match="no 'euler50_guidance1'"):
        flow_speed_row({"command": "x"})
