"""Lesson 09's plots and widget (diffusion_edu.viz.prompt_viz): guided score fields, the guidance
record and its plots, prompt grids, cross-attention maps, prompt divergence, the prompt widget."""

from __future__ import annotations

import io
import json
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch

from diffusion_edu.samplers import Trajectory, guided_prediction, sample
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.text import VOCABULARY, prompt_tokens, slant, stroke_thickness
from diffusion_edu.toy2d import ToyMLPConfig, ToyNoisePredictor, eps_to_score
from diffusion_edu.viz import prompt_viz
from diffusion_edu.viz.plots import FIGURE_WIDTH

matplotlib.use("Agg")


# ============================================================================= prompt_viz
@pytest.fixture
def toy(one_thread) -> ToyNoisePredictor:  # noqa: ANN001
    torch.manual_seed(0)
    return ToyNoisePredictor(ToyMLPConfig(num_classes=2, hidden=32, depth=2)).eval()


@pytest.fixture(scope="module")
def toy_schedule() -> NoiseSchedule:
    return NoiseSchedule.cosine(T=50)


def test_guided_scores_are_scores_of_the_guided_noise_estimate(toy, toy_schedule) -> None:  # noqa: ANN001
    points, scores = prompt_viz.guided_scores(toy, toy_schedule, t=20, label=1, guidance=(3.0,),
                                              n=5)  # fmt: skip
    assert points.shape == (25, 2) and set(scores) == {"w = 0", "classifier", "w = 1", "w = 3"}
    t = torch.full((25,), 20)
    with torch.no_grad():
        eps_c, eps_u = toy(points, t, torch.full((25,), 1)), toy(points, t, torch.full((25,), 2))
    torch.testing.assert_close(scores["w = 1"], eps_to_score(eps_c, 20, toy_schedule))
    torch.testing.assert_close(scores["w = 0"], eps_to_score(eps_u, 20, toy_schedule))
    guided = guided_prediction(eps_c, eps_u, 3.0)  # the samplers' guided estimate, as a score
    torch.testing.assert_close(scores["w = 3"], eps_to_score(guided, 20, toy_schedule))
    torch.testing.assert_close(scores["classifier"], scores["w = 1"] - scores["w = 0"])


def test_guided_scores_bad_input(toy, toy_schedule) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="t must be in 1..50"):
        prompt_viz.guided_scores(toy, toy_schedule, t=0, label=0)
    torch.manual_seed(0)
    unlabelled = ToyNoisePredictor(ToyMLPConfig(hidden=16, depth=1))
    with pytest.raises(ValueError, match="null_label"):
        prompt_viz.guided_scores(unlabelled, toy_schedule, t=10, label=0)


def test_score_field_figure_has_four_labelled_panels_within_the_width(
    toy, toy_schedule, shown_png_width
) -> None:  # noqa: ANN001
    data, labels = torch.randn(50, 2) * 0.5, torch.arange(50) % 2
    fig = prompt_viz.plot_guided_score_field(toy, toy_schedule, data, labels, label=0, t=10,
                                             guidance=4.0)  # fmt: skip
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title().split(":")[0] for ax in panels] == ["w = 0", "s_cond - s_uncond",
                                                               "w = 1", "w = 4"]  # fmt: skip
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in panels)
    assert shown_png_width(fig) <= FIGURE_WIDTH * 100


def test_guidance_grid_reads_each_digit_and_checks_its_input(fake_digits, shown_png_width) -> None:  # noqa: ANN001
    images, _ = fake_digits(n=6)
    fig = prompt_viz.plot_guidance_grid({0.0: images, 2.0: images}, asked=[0, 1, 2, 3, 4, 5])
    captions = [ax.get_xlabel() for ax in fig.axes]
    assert len(captions) == 12 and all(c.startswith("reads ") for c in captions)
    assert [fig.axes[0].get_ylabel(), fig.axes[6].get_ylabel()] == ["w = 0", "w = 2"]
    assert shown_png_width(fig) <= FIGURE_WIDTH * 100
    with pytest.raises(ValueError, match="same number of images"):
        prompt_viz.plot_guidance_grid({0.0: images, 1.0: images[:3]})
    with pytest.raises(ValueError, match="asked digits"):
        prompt_viz.plot_guidance_grid({0.0: images}, asked=[1, 2])
    with pytest.raises(ValueError, match="at least one row"):
        prompt_viz.plot_guidance_grid({})


# ----------------------------------------------------------------------------- the record
def _run(w: float, interval: list[int] | None, agreement: float, fd: float, seed: int = 0) -> dict:
    name = f"ddim:50:{w:g}" + ("" if interval is None else ":{}-{}".format(*interval))
    return {
        "setting": name, "sampler": "ddim", "steps": 50, "guidance": w,
        "guidance_interval": interval, "eta": 0.0, "seed": seed, "n": 500,
        "class_agreement": agreement, "frechet_distance": fd, "fd_over_floor": fd / 0.5,
        "meets_goal": agreement >= 0.99 and fd <= 0.625, "model_calls_per_image": 100,
        "seconds_per_image": 0.1,
    }  # fmt: skip


@pytest.fixture
def record_file(tmp_path: Path) -> Path:
    """A results file in the format scripts/measure_guidance.py writes."""
    runs = [_run(w, None, a, f) for w, a, f in [(2.0, 0.99, 0.7), (0.0, 0.1, 1.2), (1.0, 0.9, 0.5)]]
    runs += [_run(1.0, None, 0.92, 0.52, seed=1)]
    runs += [_run(3.0, [200, 800], 0.995, 0.55), _run(3.0, [0, 600], 0.99, 0.6)]
    record = {
        "commands": ["python scripts/measure_guidance.py --curve"], "machine": "a CPU",
        "date": "2026-12-01", "goal": "class agreement >= 0.99 and ...",
        "frechet_floor": {"n": 500, "mean": 0.5, "low": 0.4, "high": 0.6, "draws": 10},
        "notes": ["a note"], "runs": runs,
    }  # fmt: skip
    path = tmp_path / "guidance.json"
    path.write_text(json.dumps(record))
    return path


def test_guidance_record_reads_the_scripts_format(record_file: Path) -> None:
    record = prompt_viz.load_guidance_record(record_file)
    assert len(record.runs) == 6 and record.floor["mean"] == 0.5 and record.machine == "a CPU"
    curve = record.curve()
    assert [(r.guidance, r.seed) for r in curve] == [(0.0, 0), (1.0, 0), (1.0, 1), (2.0, 0)]
    assert record.runs[4].guidance_interval == (200, 800)  # JSON list -> tuple
    recommended = {"sampler": "ddim", "steps": 50, "guidance": 3.0, "guidance_interval": (200, 800)}
    assert [r.setting for r in record.matching(**recommended)] == ["ddim:50:3:200-800"]
    assert [r.seed for r in record.matching(sampler="ddim", steps=50, guidance=1.0)] == [0, 1]


def test_guidance_record_bad_files_get_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a guidance results file"):
        prompt_viz.load_guidance_record(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"runs": [{"setting": "x"}]}))
    with pytest.raises(ValueError, match="not a guidance results file"):
        prompt_viz.load_guidance_record(bad)


def test_guidance_curve_marks_the_recommended_setting(record_file: Path, shown_png_width) -> None:  # noqa: ANN001
    record = prompt_viz.load_guidance_record(record_file)
    recommended = {"sampler": "ddim", "steps": 50, "guidance": 3.0, "guidance_interval": (200, 800)}
    fig = prompt_viz.plot_guidance_curve(record, recommended)
    ax_agree, ax_fd = fig.axes
    assert list(ax_agree.lines[0].get_xdata()) == [0.0, 1.0, 2.0]  # the curve, seeds averaged
    np.testing.assert_allclose(ax_agree.lines[0].get_ydata(), [10.0, 91.0, 99.0])
    stars = ax_fd.collections[-1].get_offsets()
    np.testing.assert_allclose(stars, [[3.0, 0.55]])  # the recommended run, at its w
    labels = ax_fd.get_legend_handles_labels()[1]
    assert "recommended: w = 3, t in (200, 800]" in labels
    assert shown_png_width(fig) <= FIGURE_WIDTH * 100
    with pytest.raises(ValueError, match="no full-guidance runs"):
        prompt_viz.plot_guidance_curve(record, sampler="ddpm", steps=1000)


def test_guidance_intervals_plot_shows_the_interval_runs_and_the_w1_reference(
    record_file: Path, shown_png_width
) -> None:  # noqa: ANN001
    record = prompt_viz.load_guidance_record(record_file)
    fig = prompt_viz.plot_guidance_intervals(record)
    ax = fig.axes[0]
    texts = {t.get_text() for t in ax.texts}
    assert {"w = 1", "w = 2", "(200, 800]", "(0, 600]"} <= texts  # w = 2: full guidance, >= 90%
    assert "w = 0" not in texts  # 10% agreement: off the chart
    recommended = {"sampler": "ddim", "steps": 50, "guidance": 3.0, "guidance_interval": (0, 600)}
    starred = prompt_viz.plot_guidance_intervals(record, recommended=recommended).axes[0]
    stars = [c for c in starred.collections if list(c.get_sizes()) == [260]]
    assert len(stars) == 1
    np.testing.assert_allclose(stars[0].get_offsets(), [[99.0, 1.2]])  # its agreement, FD / floor
    assert "recommended: ddim:50:3:0-600" in starred.get_legend_handles_labels()[1]
    assert ax.get_xlabel() and ax.get_ylabel()
    assert shown_png_width(fig) <= FIGURE_WIDTH * 100
    with pytest.raises(ValueError, match="no runs"):
        prompt_viz.plot_guidance_intervals(record, guidance=[9.0])


def test_prompt_grid_captions_each_digit_with_its_measurements(
    fake_digits, shown_png_width
) -> None:  # noqa: ANN001
    images, _ = fake_digits(n=3)
    fig = prompt_viz.plot_prompt_grid({"a thin seven leaning left": images, "nine": -images})
    axes = fig.axes  # row by row: (row 0, col 0), (row 0, col 1), (row 1, col 0), ...
    assert [axes[0].get_title(), axes[1].get_title()] == ["a thin seven\nleaning left", "nine"]
    width, lean = stroke_thickness(images[1:2]).item(), slant(images[1:2]).item()
    assert axes[2].get_xlabel() == f"{width:.1f} px, {lean:+.2f}"  # row 1 of the first prompt
    assert shown_png_width(fig) <= FIGURE_WIDTH * 100
    with pytest.raises(ValueError, match="same number of images"):
        prompt_viz.plot_prompt_grid({"one": images, "two": images[:1]})
    with pytest.raises(ValueError, match="at least one prompt"):
        prompt_viz.plot_prompt_grid({})


# ----------------------------------------------------------------------------- attributes
def test_attribute_map_marks_the_examples(fake_digits, shown_png_width) -> None:  # noqa: ANN001
    images, _ = fake_digits(n=20)
    fig = prompt_viz.plot_attribute_map(images, [0, 3, 5], ["a one", "a two", "a thin three"])
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "20 digits, measured"
    assert titles[1:] == ["1: a one", "2: a two", "3: a thin\nthree"]  # wrapped to fit
    assert shown_png_width(fig) <= FIGURE_WIDTH * 100
    with pytest.raises(ValueError, match="captions"):
        prompt_viz.plot_attribute_map(images, [0, 1], ["a one"])


# ----------------------------------------------------------------------------- text model
@pytest.fixture
def text_model(tiny_unet, one_thread):  # noqa: ANN001, ANN201
    net = tiny_unet(seed=5, num_classes=None, text_vocab_size=len(VOCABULARY), text_dim=16).eval()
    with torch.no_grad():  # a fresh U-Net predicts exactly 0 and ignores the prompt
        torch.nn.init.normal_(net.conv_out.weight, std=0.3)  # (zero-initialised output layers):
        for layer in net.cross_attention_layers().values():  # make it depend on its inputs
            torch.nn.init.normal_(layer.out.weight, std=0.3)
    return net


@pytest.fixture(scope="module")
def schedule() -> NoiseSchedule:
    return NoiseSchedule.cosine(T=40)


def test_attention_maps_sum_to_one_over_the_words_at_every_pixel(text_model, schedule) -> None:  # noqa: ANN001
    run = prompt_viz.attention_over_steps(text_model, schedule, "a bold 7", [39, 21, 1], steps=8)
    assert run.words == ("<start>", "a", "bold", "seven")
    assert run.timesteps == (40, 20, 5)  # the run's own steps nearest to those asked for
    assert run.maps.shape == (3, 4, 28, 28) and run.x0_hats.shape == (3, 1, 28, 28)
    torch.testing.assert_close(run.maps.sum(dim=1), torch.ones(3, 28, 28))  # padding gets 0
    assert run.image.shape == (1, 28, 28)
    one = prompt_viz.attention_over_steps(text_model, schedule, "a bold 7", [20], steps=8,
                                          layers=["mid_cross"])  # fmt: skip
    assert one.maps.shape == (1, 4, 28, 28)
    with pytest.raises(ValueError, match="no cross-attention layer"):
        prompt_viz.attention_over_steps(text_model, schedule, "a 7", [20], steps=8,
                                        layers=["nowhere"])  # fmt: skip


def test_cross_attention_figure_has_one_column_per_word(
    text_model, schedule, shown_png_width
) -> None:  # noqa: ANN001
    run = prompt_viz.attention_over_steps(text_model, schedule, "a thin 1 leaning left", [30, 5],
                                          steps=6)  # fmt: skip
    fig = prompt_viz.plot_cross_attention(run)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[1:5] == ["'<start>'", "'a'", "'thin'", "'one'"] and "'leaning left'" in titles
    assert shown_png_width(fig) <= FIGURE_WIDTH * 100
    with pytest.raises(ValueError, match="show must be"):
        prompt_viz.plot_cross_attention(run, show="eps")


def _run_of(model, schedule, prompt: str, x_T: torch.Tensor, steps: int = 6) -> Trajectory:  # noqa: ANN001
    run = sample(model, schedule, prompts=[prompt], x_T=x_T, sampler="ddim", steps=steps,
                 guidance=2.0, return_trajectory=True, progress=False)  # fmt: skip
    assert isinstance(run, Trajectory)
    return run


def test_prompt_divergence_is_the_rms_difference_of_the_runs(text_model, schedule) -> None:  # noqa: ANN001
    x_T = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    a, b = (
        _run_of(text_model, schedule, "a one", x_T),
        _run_of(text_model, schedule, "an eight", x_T),
    )
    d = prompt_viz.prompt_divergence(a, b)
    assert d.timesteps == tuple(a.timesteps) and len(d.x0_hat) == len(d.timesteps) - 1
    want = (a.x0_hats[:, 0] - b.x0_hats[:, 0]).pow(2).flatten(1).mean(dim=1).sqrt()
    np.testing.assert_allclose(d.x0_hat, want.numpy(), rtol=1e-6)
    want = (a.xs[:, 0] - b.xs[:, 0]).pow(2).flatten(1).mean(dim=1).sqrt()
    np.testing.assert_allclose(d.x_t, want.numpy(), rtol=1e-6)
    assert d.x_t[0] == 0.0 and d.x_t[-1] > 0  # the same noise, different images
    half = d.timesteps.index(d.halfway_t)
    assert d.x_t[half] >= 0.5 * d.x_t[-1] > max(d.x_t[:half], default=0.0)
    same = prompt_viz.prompt_divergence(a, a)
    assert set(same.x_t) == {0.0} and set(same.x0_hat) == {0.0}
    fig = prompt_viz.plot_prompt_divergence(a, b, "a one", "an eight", n=4)
    assert fig.axes[-1].get_xlabel().startswith("timestep t") and len(fig.axes[-1].lines) == 3
    with pytest.raises(ValueError, match="same steps"):
        prompt_viz.prompt_divergence(a, _run_of(text_model, schedule, "a one", x_T, steps=3))


def test_prompt_following_table_prints_every_measurement() -> None:
    scores = {
        "samples_per_prompt": 4, "sampling": {"guidance": 3.0},
        "digit": {"prompts": "'a D'", "samples": 200, "class_agreement": 0.975},
        "thickness": {"pairs": 40, "bold_wider_stroke": 0.95, "bold_more_ink": 0.9,
                      "mean_width_thin_px": 1.6, "mean_width_bold_px": 2.4},
        "slant": {"pairs": 40, "right_leans_further_right": 0.925, "mean_slant_left": -0.12,
                  "mean_slant_right": 0.31},
        "held_out": {"a thin four leaning left": {
            "class_agreement": 0.75, "thickness_pairs_right_way": 1.0,
            "slant_pairs_right_way": 0.5, "measured_words_match": 0.25}},
    }  # fmt: skip
    table = prompt_viz.prompt_following_table({"prompt_following": scores})
    assert table == prompt_viz.prompt_following_table(scores)  # the record or the result itself
    record = {
        "prompt_following": scores, "goals": {"class_agreement": 0.97},
        "recommended": {"guidance": 2.0},
        "prompt_following_by_guidance": {"1": {"class_agreement": 0.905, "bold_wider_stroke": 0.8,
                                               "right_leans_further_right": 0.85}},
    }  # fmt: skip
    full = prompt_viz.prompt_following_table(record)
    assert full.startswith(table) and "90.5%" in full and "85%" in full
    assert "class_agreement >= 0.97" in full and "{'guidance': 2.0}" in full
    for text in ("97.5%", "95.0%", "90.0%", "92.5%", "1.6 -> 2.4 px", "-0.12 -> +0.31",
                 "a thin four leaning left", "75%", "100%", "50%", "25%"):  # fmt: skip
        assert text in table, text
    with pytest.raises(ValueError, match="not a prompt-following record"):
        prompt_viz.prompt_following_table({"command": "x"})


# ----------------------------------------------------------------------------- the widget
def _pixels(explorer) -> np.ndarray:  # noqa: ANN001
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(explorer.live.image.widget.value)))


def test_prompt_widget_answers_unknown_words_in_the_widget(text_model, schedule) -> None:  # noqa: ANN001
    explorer = prompt_viz.prompt_widget(text_model, schedule, prompt="a 7", n=2, steps=3,
                                        preview_steps=1)  # fmt: skip
    assert explorer.message.value == "" and "leaning right" in explorer.vocabulary.value
    first = _pixels(explorer)
    explorer.live.controls["prompt"].value = "a purple seven"  # no exception escapes
    assert "unknown word" in explorer.message.value and "purple" in explorer.message.value
    title = explorer.live.last_figure.texts[0].get_text()
    assert "was not drawn" in title and "purple" in title
    assert not np.array_equal(first, _pixels(explorer))
    explorer.live.controls["guidance"].value = 4.0  # still answered, still no exception
    assert "w = 4" in explorer.live.last_figure.texts[0].get_text()
    explorer.live.controls["prompt"].value = "a bold 7"
    assert explorer.message.value == ""
    assert "'a bold 7', w = 4" in explorer.live.last_figure._suptitle.get_text()


def test_prompt_widget_slider_and_noise_toggle_change_the_picture(text_model, schedule) -> None:  # noqa: ANN001
    explorer = prompt_viz.prompt_widget(text_model, schedule, prompt="a 7", n=2, steps=3,
                                        preview_steps=1)  # fmt: skip
    before = _pixels(explorer)
    explorer.live.controls["guidance"].value = 0.0
    assert not np.array_equal(before, _pixels(explorer))
    # Same noise on: every prompt starts from the same x_T; off: a prompt's own, the same for the
    # same words however they are written.
    shared = explorer._noise("a 7", True)
    torch.testing.assert_close(shared, explorer._noise("a thin one", True))
    own = explorer._noise("a 7", False)
    assert not torch.equal(own, shared) and not torch.equal(own, explorer._noise("a one", False))
    torch.testing.assert_close(own, explorer._noise("A seven!", False))
    at_zero = _pixels(explorer)
    explorer.live.controls["same_noise"].value = False
    assert not np.array_equal(at_zero, _pixels(explorer))
    assert "own noise" in explorer.live.last_figure._suptitle.get_text()


def test_prompt_widget_bad_settings() -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        prompt_viz.prompt_widget(torch.nn.Identity(), NoiseSchedule.cosine(T=10), n=0)
    assert prompt_tokens("A seven!") == prompt_tokens("a 7")  # what the noise key relies on
