"""The shipped pretrained model: loads offline, matches its record, draws recognisable digits."""

import json

import pytest
import torch

from diffusion_edu import NoiseSchedule, load_pretrained, pretrained_info, sample
from diffusion_edu.checkpoints import save_checkpoint
from diffusion_edu.metrics import class_agreement


def test_load_pretrained_reads_weights_and_schedule_from_the_data_folder(
    tmp_path, monkeypatch, tiny_unet
):
    monkeypatch.setenv("DIFFUSION_EDU_DATA", str(tmp_path))
    model = tiny_unet()
    config = model.config
    torch.nn.init.normal_(model.conv_out.weight)
    schedule = NoiseSchedule.cosine(T=50)
    save_checkpoint(tmp_path / "pretrained" / "mnist_unet.pt", model, schedule, step=7)
    (tmp_path / "pretrained" / "mnist_unet.json").write_text(json.dumps({"command": "train"}))
    loaded, loaded_schedule = load_pretrained("mnist")
    assert loaded.config == config and loaded_schedule == schedule and not loaded.training
    for a, b in zip(loaded.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert pretrained_info("mnist").command == "train"


def test_unknown_name_and_missing_file_give_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="no pretrained model called 'cifar'; available: mnist"):
        load_pretrained("cifar")
    monkeypatch.setenv("DIFFUSION_EDU_DATA", str(tmp_path))
    monkeypatch.setattr("diffusion_edu.data.repo_data_dir", lambda: tmp_path)
    with pytest.raises(FileNotFoundError, match="make_pretrained.py"):
        load_pretrained("mnist")


def test_shipped_model_matches_its_record_and_draws_recognisable_digits():
    info = pretrained_info("mnist")
    assert info.weights.stat().st_size < 20e6, "shipped weights must stay small"
    model, schedule = load_pretrained("mnist")
    assert str(model.config) == info.record["model_config"]
    assert sum(p.numel() for p in model.parameters()) == info.record["parameters"]
    assert "python -m diffusion_edu train" in info.command
    labels = torch.arange(10).repeat(3)  # 30 digits, fixed seed, a quick sampler
    images = sample(model, schedule, labels=labels, sampler="ddim", steps=20, guidance=2.0,
                    seed=0, progress=False)  # fmt: skip
    assert class_agreement(images, labels) >= 0.9


def test_shipped_toy_model_is_small_matches_its_record_and_draws_the_spiral():
    """Lesson 05's quick mode shows this model: its samples must land on the spiral as the
    record says (the record is what scripts/make_pretrained_toy.py measured)."""
    from diffusion_edu.pretrained import pretrained_losses
    from diffusion_edu.toy2d import fraction_within, make_toy_data, sample_points

    info = pretrained_info("spiral")
    assert info.weights.stat().st_size < 300e3, "the toy's weights must stay a few hundred KB"
    assert info.command == "python scripts/make_pretrained_toy.py"
    model, schedule = load_pretrained("spiral")
    assert not model.training and str(model.config) == info.record["model_config"]
    assert schedule == NoiseSchedule.cosine(T=100)  # the lesson's schedule
    losses = pretrained_losses("spiral")
    assert len(losses) == info.record["steps"] == 2000
    assert sum(losses[-100:]) / 100 == pytest.approx(
        info.record["final_loss_mean_last_100"], abs=1e-4
    )
    data = make_toy_data("spiral", n=2000, seed=0)
    samples = sample_points(model, schedule, n=1000, seed=0)
    off = 1 - fraction_within(samples, data, info.record["off_spiral_radius"])
    # Same samples as when recorded, up to CPU rounding: a point or two may cross the radius.
    assert off == pytest.approx(info.record["off_spiral_fraction"], abs=0.005)
    assert off < 0.05  # "almost every sample lands on the spiral", as lesson 05 says


def test_the_mnist_model_keeps_no_losses_and_the_cli_offers_only_image_models():
    from diffusion_edu.cli import build_parser
    from diffusion_edu.pretrained import (
        PRETRAINED_IMAGE_MODELS,
        PRETRAINED_MODELS,
        pretrained_losses,
    )

    assert pretrained_losses("mnist") == []  # exported without its training history
    assert set(PRETRAINED_IMAGE_MODELS) < set(PRETRAINED_MODELS)
    with pytest.raises(SystemExit):  # the 2-D toy draws points, not a PNG grid of images
        build_parser().parse_args(["sample", "--pretrained", "spiral"])


def test_missing_toy_weights_name_the_script_that_makes_them(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFUSION_EDU_DATA", str(tmp_path))
    monkeypatch.setattr("diffusion_edu.data.repo_data_dir", lambda: tmp_path)
    with pytest.raises(FileNotFoundError, match="make_pretrained_toy.py"):
        load_pretrained("spiral")


def _record_with(tmp_path, monkeypatch, tiny_unet, **keys):  # noqa: ANN001, ANN202
    """A fake shipped "mnist" model in a temporary data folder, its record holding ``keys``."""
    monkeypatch.setenv("DIFFUSION_EDU_DATA", str(tmp_path))
    save_checkpoint(tmp_path / "pretrained" / "mnist_unet.pt", tiny_unet(),
                    NoiseSchedule.cosine(T=50), step=1)  # fmt: skip
    record = {"command": "train", **keys}
    (tmp_path / "pretrained" / "mnist_unet.json").write_text(json.dumps(record))
    return pretrained_info("mnist")


def test_recommended_settings_are_sample_keyword_arguments_from_the_record(
    tmp_path, monkeypatch, tiny_unet
):
    settings = {"sampler": "ddim", "steps": 10, "guidance": 3.0, "guidance_interval": [10, 40]}
    info = _record_with(tmp_path, monkeypatch, tiny_unet, recommended=settings)
    assert info.recommended == {**settings, "guidance_interval": (10, 40)}  # JSON list -> tuple
    model, schedule = load_pretrained("mnist")
    kwargs = dict(labels=[1, 2], seed=0, progress=False)
    got = sample(model, schedule, **kwargs, **info.recommended)
    expected = sample(model, schedule, sampler="ddim", steps=10, guidance=3.0,
                      guidance_interval=(10, 40), **kwargs)  # fmt: skip
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert _record_with(tmp_path, monkeypatch, tiny_unet).recommended == {}  # no key: nothing


def test_recommended_flags_and_words_say_the_same_settings_as_the_record(
    tmp_path, monkeypatch, tiny_unet
):
    """The flags a lesson prints, read back by the CLI's parser, are the record's settings."""
    from diffusion_edu.cli import build_parser

    settings = {"sampler": "ddim", "steps": 10, "eta": 1.0, "guidance": 1.5,
                "guidance_interval": [10, 40]}  # fmt: skip
    info = _record_with(tmp_path, monkeypatch, tiny_unet, recommended=settings)
    args = build_parser().parse_args(
        ["sample", "--pretrained", "mnist", *info.recommended_flags.split()]
    )
    parsed = {"sampler": args.sampler, "steps": args.steps, "eta": args.eta,
              "guidance": args.guidance,
              "guidance_interval": list(args.guidance_interval)}  # fmt: skip
    assert parsed == settings
    assert info.recommended_text == "DDIM-10 (eta 1), guidance 1.5 at 10 < t <= 40"
    plain = _record_with(tmp_path, monkeypatch, tiny_unet, recommended={"guidance": 2.0})
    assert (plain.recommended_flags, plain.recommended_text) == ("--guidance 2", "guidance 2")
    none = _record_with(tmp_path, monkeypatch, tiny_unet)
    assert (none.recommended_flags, none.recommended_text) == ("", "the samplers' defaults")


@pytest.mark.parametrize(
    "recommended, match",
    [
        ({"sampler": "ddim", "temperature": 0.7}, "'recommended' has temperature"),
        (["ddim", 50], "must be an object of sample\\(\\) keyword arguments"),
    ],
)
def test_a_bad_recommended_key_is_a_clear_error(
    tmp_path, monkeypatch, tiny_unet, recommended, match
):
    from diffusion_edu.checkpoints import CheckpointError

    info = _record_with(tmp_path, monkeypatch, tiny_unet, recommended=recommended)
    with pytest.raises(CheckpointError, match=match):
        info.recommended  # noqa: B018


def test_shipped_model_recommends_measured_settings_that_draw_the_asked_digits():
    """The record's recommended settings are sample() keyword arguments; their recorded
    network calls follow from the interval, and 30 quick digits come out legible."""
    from diffusion_edu.samplers import sampling_timesteps, step_guidance

    info = pretrained_info("mnist")
    settings, scores = info.recommended, info.record["recommended_scores"]
    assert set(settings) >= {"sampler", "guidance"}
    timesteps = sampling_timesteps(settings["sampler"], 1000, settings.get("steps"))[:-1]
    interval = settings.get("guidance_interval")
    calls = sum(
        2 if step_guidance(t, settings["guidance"], interval) != 1 else 1 for t in timesteps
    )
    assert calls == scores["model_calls_per_image"]
    for seed in scores["seeds"].values():
        assert seed["class_agreement"] >= 0.99  # the goal's first half holds on every seed
    model, schedule = load_pretrained("mnist")
    labels = torch.arange(10).repeat(3)
    images = sample(model, schedule, labels=labels, seed=0, progress=False, **settings)
    assert class_agreement(images, labels) >= 0.9


@pytest.mark.parametrize(("name", "denoiser"), [("mnist-latent", "UNet"), ("mnist-dit", "DiT")])
def test_shipped_latent_model_matches_its_record_and_draws_digits_as_pixels(name, denoiser):
    """Lesson 11's model (a U-Net on latents) and lesson 10's (a DiT on the same kind of
    latents): a few MB, its record's settings, and the issue's goal (>= 98% class agreement at
    the recommended setting, 500 samples, DDIM-50) recorded; 30 quick digits come out as
    (B, 1, 28, 28) pixels in [-1, 1] that read as the asked digits."""
    info = pretrained_info(name)
    assert info.weights.stat().st_size < 5e6, "the latent model must stay a few MB"
    model, schedule = load_pretrained(name)
    assert type(model.denoiser).__name__ == denoiser
    assert str(model.config) == info.record["model_config"]
    assert sum(p.numel() for p in model.parameters()) == info.record["parameters"]
    assert "make_pretrained_latent.py" in info.command
    assert f"--denoiser {denoiser.lower()}" in info.command
    settings = info.recommended
    assert settings["sampler"] == "ddim" and settings["steps"] == 50
    key = f"ddim50_guidance{settings['guidance']:g}"
    assert info.record[key]["class_agreement"] >= 0.98
    # the autoencoder's reconstructions read almost as well as the real digits
    ae = info.record["autoencoder"]
    assert ae["heldout_reconstruction_class_agreement"] >= ae["heldout_real_class_agreement"] - 0.01
    labels = torch.arange(10).repeat(3)
    images = sample(model, schedule, labels=labels, seed=0, progress=False, **settings)
    assert images.shape == (30, 1, 28, 28)
    assert images.min() >= -1 and images.max() <= 1
    assert class_agreement(images, labels) >= 0.9


def test_shipped_flow_model_is_the_ddpm_models_network_and_budget_with_a_flow_target():
    """Lesson 12's mnist-flow: the shipped mnist model's architecture and training command
    except --prediction flow (same network, data and budget); it samples with Euler or Heun, its
    recommended setting was measured at >= 98% class agreement on every seed (issue 14), and
    30 quick digits from it read as the digits asked for."""
    info, ddpm = pretrained_info("mnist-flow"), pretrained_info("mnist")
    assert info.weights.stat().st_size < 5e6
    model, schedule = load_pretrained("mnist-flow")
    assert model.prediction == "flow"
    assert str(model.config) == ddpm.record["model_config"].replace("'eps'", "'flow'")
    assert info.record["parameters"] == ddpm.record["parameters"]
    same_run = ddpm.command.replace("runs/pretrained", "runs/flow")
    assert info.command == same_run + " --prediction flow"
    settings, scores = info.recommended, info.record["recommended_scores"]
    assert settings["sampler"] in ("euler", "heun")
    assert all(s["class_agreement"] >= 0.98 for s in scores["seeds"].values())
    labels = torch.arange(10).repeat(3)
    images = sample(model, schedule, labels=labels, seed=0, progress=False, **settings)
    assert class_agreement(images, labels) >= 0.9
    with pytest.raises(ValueError, match="sampler='euler' or 'heun'"):
        sample(model, schedule, labels=[1], sampler="ddim", progress=False)


def test_flow_vs_ddpm_record_says_how_few_steps_each_model_needs():
    """data/results/flow_vs_ddpm.json (scripts/measure_flow_vs_ddpm.py): both models at the same
    step counts and guidance; each line's fewest_steps_to_goal is the first step count whose
    class agreement reaches the goal, and its model calls are the sampler's."""
    import json

    from diffusion_edu.data import repo_data_dir
    from diffusion_edu.samplers import model_calls

    record = json.loads((repo_data_dir() / "results/flow_vs_ddpm.json").read_text())
    assert {line["model"] for line in record["lines"].values()} == {"mnist", "mnist-flow"}
    for line in record["lines"].values():
        steps = sorted(int(k) for k in line["steps"])
        good = [s for s in steps if line["steps"][str(s)]["class_agreement"] >= record["goal"]]
        assert line["fewest_steps_to_goal"] == (good[0] if good else None)
        for s in steps:
            calls = model_calls(line["sampler"], 1000, s, record["guidance"])
            assert line["steps"][str(s)]["model_calls_per_image"] == calls


def test_measure_guidance_scores_autoguidance_points_and_asks_for_the_guide(tmp_path, tiny_unet):
    """scripts/measure_guidance.py: a point's ``auto=WA`` is sample()'s autoguidance, it round-
    trips through the record's keyword arguments, and it needs --guide."""
    from script_modules import load_script

    mg = load_script("measure_guidance")
    point = mg.parse_point("ddim:5:1.5:20-40:eta=1:auto=2")
    assert point.autoguidance == 2.0 and point.name == "ddim:5:1.5:20-40:eta=1:auto=2"
    assert mg.parse_point(point.name) == point
    assert mg.setting_from_kwargs(point.sample_kwargs()) == point
    assert "autoguidance" not in mg.parse_point("ddim:5:1.5").sample_kwargs()
    with pytest.raises(SystemExit, match="auto=WA"):
        mg.parse_point("ddim:5:1.5:auto=two")
    model, guide = tiny_unet(seed=1).eval(), tiny_unet(seed=2).eval()
    schedule, heldout = NoiseSchedule.cosine(T=50), torch.rand(20, 1, 28, 28) * 2 - 1
    with pytest.raises(SystemExit, match="give --guide"):
        mg.measure(model, schedule, point, 10, 0, heldout, 0.3)
    run = mg.measure(model, schedule, point, 10, 0, heldout, 0.3, guide)
    assert run["autoguidance"] == 2.0 and run["setting"] == point.name
    # DDIM-5 visits t = 50, 40, 30, 20, 10: 40 and 30 are guided (two calls), the rest one.
    assert run["model_calls_per_image"] == run["guide_calls_per_image"] == 7
    floor = {"mean": 0.3, "low": 0.25, "high": 0.35}
    keys = mg.recommended_keys(point, [run], floor, "cmd", guide="mnist")
    assert keys["recommended"]["guide_model"] == "mnist"  # a shipped model's name
    assert keys["recommended"]["autoguidance"] == 2.0
    with pytest.raises(SystemExit, match="names its guide as a shipped model"):
        mg.recommended_keys(point, [run], floor, "cmd", guide="runs/guide/checkpoint.pt")
    checkpoint = tmp_path / "model.pt"
    save_checkpoint(checkpoint, model, schedule, step=1)
    loaded, loaded_schedule = mg.load_model(str(checkpoint))
    assert loaded.config == model.config and loaded_schedule == schedule
    with pytest.raises(SystemExit, match="cannot load"):
        mg.load_model(str(tmp_path / "missing.pt"))


def test_a_recommended_guide_model_is_loaded_by_name_and_autoguides(
    tmp_path, monkeypatch, tiny_unet
):
    """A record may recommend autoguidance by another shipped model: ``recommended`` loads it,
    ``recommended_names`` keeps its name for flags and words."""
    from diffusion_edu.checkpoints import CheckpointError
    from diffusion_edu.cli import build_parser
    from diffusion_edu.pretrained import PRETRAINED_MODELS

    monkeypatch.setitem(PRETRAINED_MODELS, "mnist-guide", "mnist_guide")  # a shipped guide
    guide = tiny_unet(seed=4)
    save_checkpoint(tmp_path / "pretrained" / "mnist_guide.pt", guide,
                    NoiseSchedule.cosine(T=50), step=1)  # fmt: skip
    (tmp_path / "pretrained" / "mnist_guide.json").write_text(json.dumps({"command": "train"}))
    settings = {"sampler": "ddim", "steps": 5, "guidance": 1.5, "autoguidance": 2.0,
                "guide_model": "mnist-guide"}  # fmt: skip
    info = _record_with(tmp_path, monkeypatch, tiny_unet, recommended=settings)
    assert info.recommended_names == settings
    loaded = info.recommended["guide_model"]
    for a, b in zip(loaded.state_dict().values(), guide.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    model, schedule = load_pretrained("mnist")
    kwargs = dict(labels=[3, 4], seed=1, progress=False)
    got = sample(model, schedule, **kwargs, **info.recommended)
    expected = sample(model, schedule, sampler="ddim", steps=5, guidance=1.5, autoguidance=2.0,
                      guide_model=guide.eval(), **kwargs)  # fmt: skip
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert info.recommended_text == "DDIM-5, guidance 1.5, autoguidance 2 by mnist-guide"
    args = build_parser().parse_args(
        ["sample", "--pretrained", "mnist", *info.recommended_flags.split()]
    )
    assert (args.autoguidance, args.guide_model) == (2.0, "mnist-guide")
    bad = _record_with(tmp_path, monkeypatch, tiny_unet,
                       recommended={**settings, "guide_model": "cifar"})  # fmt: skip
    with pytest.raises(CheckpointError, match="'cifar', which is not a shipped model"):
        bad.recommended  # noqa: B018
