"""The command line: train a tiny model, sample from it, resume it, and fail clearly."""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch

from diffusion_edu.checkpoints import load_checkpoint
from diffusion_edu.cli import build_parser, main
from diffusion_edu.loop import PROBE_STEPS

REPO = Path(__file__).resolve().parent.parent
TINY_ARGS = ["--model-size", "tiny", "--batch-size", "16", "--no-progress", "--device", "cpu",
             "--precision", "fp32", "--warmup-steps", "2"]  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m diffusion_edu ...`` in a fresh process, as a user would type it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "diffusion_edu", *args],
        cwd=REPO, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model trained for 4 steps (checkpoint every 2) on the bundled digits."""
    out = tmp_path_factory.mktemp("run")
    code = main(["train", *TINY_ARGS, "--steps", "4", "--checkpoint-every", "2", "--out",
                 str(out), "--schedule", "cosine", "--timesteps", "100"])  # fmt: skip
    assert code == 0
    return out


# ----------------------------------------------------------------------------- help
def _option_strings(parser: argparse.ArgumentParser, command: str) -> list[str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [
        opt
        for action in sub.choices[command]._actions
        for opt in action.option_strings
        if opt.startswith("--") and opt != "--help"
    ]


@pytest.mark.parametrize("command", ["train", "sample"])
def test_help_documents_every_option(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    options = _option_strings(build_parser(), command)
    assert len(options) > 8
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    test_only = {"--weights-hash"}  # a flag for the DDP test, kept out of --help
    for option in options:
        assert (option in text) != (option in test_only), option
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for action in sub.choices[command]._actions:
        assert action.help, f"{action.option_strings} has no help text"


def test_python_dash_m_entry_point_runs() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    assert "train" in result.stdout and "sample" in result.stdout


# ----------------------------------------------------------------------------- train + sample
def test_train_writes_checkpoint_loss_log_and_run_info(trained: Path) -> None:
    ckpt = load_checkpoint(trained / "checkpoint.pt")
    assert ckpt.step == 4 and ckpt.schedule.name == "cosine" and ckpt.schedule.T == 100
    assert ckpt.model_config.num_classes == 10 and ckpt.ema_state is not None
    with open(trained / "losses.csv") as file:
        rows = list(csv.DictReader(file))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert [float(r["loss"]) for r in rows] == pytest.approx(ckpt.history["loss"], rel=1e-5)
    info = json.loads((trained / "run.json").read_text())
    assert info["step"] == 4 and info["world_size"] == 1 and info["precision"] == "float32"
    assert not [p for p in trained.iterdir() if p.name.endswith(".tmp")]


def test_sample_writes_a_png_grid_one_row_per_class(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "grid.png"
    ckpt = str(trained / "checkpoint.pt")
    code = main(["sample", "--checkpoint", ckpt, "--out", str(out), "--per-class", "2",
                 "--steps", "3", "--guidance", "2", "--no-progress"])  # fmt: skip
    assert code == 0
    image = plt.imread(out)
    # make_grid: 10 rows x 2 columns of 28x28 images with 2-pixel padding.
    assert image.shape[:2] == (10 * 30 + 2, 2 * 30 + 2)
    assert "s per image" in capsys.readouterr().out


def test_sample_is_reproducible_with_a_seed(trained: Path, tmp_path: Path) -> None:
    paths = []
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        paths.append(tmp_path / f"{name}.png")
        assert main(["sample", "--checkpoint", str(trained / "checkpoint.pt"), "--labels",
                     "1,2,3", "--sampler", "ddim", "--steps", "3", "--eta", "1", "--seed", seed,
                     "--out", str(paths[-1]), "--no-progress", "--zoom", "2"]) == 0  # fmt: skip
    a, b, c = (plt.imread(p) for p in paths)
    assert (a == b).all() and not (a == c).all()
    assert a.shape[:2] == (2 * 62, 2 * 62)  # 3 images: a 2 x 2 grid of 30-pixel cells, zoom 2
    torch.testing.assert_close(a[::2, ::2], a[1::2, 1::2])  # each pixel became a 2 x 2 block


def test_sample_pretrained_needs_no_training_and_draws_the_asked_digits(tmp_path: Path) -> None:
    from diffusion_edu.metrics import class_agreement

    out = tmp_path / "pretrained.png"
    assert main(["sample", "--pretrained", "mnist", "--labels", "0,1,2,3,4,5,6,7,8,9",
                 "--sampler", "ddim", "--steps", "20", "--guidance", "2", "--seed", "0",
                 "--nrow", "10", "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    grid = torch.from_numpy(plt.imread(out)[..., 0].copy())  # (32, 302) grey in [0, 1]
    digits = torch.stack([grid[2:30, 2 + 30 * i : 30 + 30 * i] for i in range(10)])[:, None]
    assert class_agreement(digits * 2 - 1, torch.arange(10)) >= 0.8
    with pytest.raises(SystemExit):  # one source only: a checkpoint or a shipped model
        build_parser().parse_args(["sample", "--pretrained", "mnist", "--checkpoint", "x.pt"])


@pytest.mark.parametrize("name", ["mnist-latent", "mnist-dit"])
def test_sample_pretrained_latent_model_draws_one_row_per_class_as_pixels(
    tmp_path: Path, name: str
) -> None:
    """A latent model's classes are its denoiser's (a U-Net's or a DiT's): --per-class draws
    every digit (it once drew 64 unlabelled images), decoded to pixels."""
    from diffusion_edu.metrics import class_agreement

    out = tmp_path / "latent.png"
    assert main(["sample", "--pretrained", name, "--per-class", "1", "--steps", "20",
                 "--nrow", "10", "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    grid = torch.from_numpy(plt.imread(out)[..., 0].copy())
    assert grid.shape == (32, 302)  # 10 digits in one row: one per class
    digits = torch.stack([grid[2:30, 2 + 30 * i : 30 + 30 * i] for i in range(10)])[:, None]
    assert class_agreement(digits * 2 - 1, torch.arange(10)) >= 0.8


def test_resume_continues_to_the_new_total_like_an_uninterrupted_run(tmp_path: Path) -> None:
    common = [*TINY_ARGS, "--timesteps", "50", "--seed", "5"]
    assert main(["train", *common, "--steps", "3", "--out", str(tmp_path / "a")]) == 0
    assert main(["train", *common, "--steps", "5", "--out", str(tmp_path / "a"),
                 "--resume"]) == 0  # fmt: skip
    assert main(["train", *common, "--steps", "5", "--out", str(tmp_path / "b")]) == 0
    resumed = load_checkpoint(tmp_path / "a" / "checkpoint.pt")
    straight = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert resumed.step == 5 and len(resumed.history["loss"]) == 5
    # Not bit-identical by design: the cosine learning rate was planned for 3 steps in the
    # first run. Same data order and noise, though, so the first 3 steps match exactly.
    assert resumed.history["loss"][:3] == straight.history["loss"][:3]


def test_minutes_fits_the_run_into_a_wall_clock_budget_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "budget"
    argv = ["train", *TINY_ARGS, "--steps", "100000", "--minutes", "0.02", "--timesteps", "50",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    said = capsys.readouterr().out
    assert "Time budget 0.02 minutes" in said and "steps fit (all 100,000 would take" in said
    info = json.loads((out / "run.json").read_text())
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt.step == info["plan"]["steps"] == info["step"] < 100_000
    # The plan fits the budget at the speed it measured (a check of the arithmetic, not of the
    # clock: on a busy machine later steps may run slower than the timed ones).
    plan = info["plan"]
    fits = plan["steps"] * plan["seconds_per_step"] <= 0.02 * 60
    assert fits or plan["steps"] <= PROBE_STEPS + 1  # (or the timed steps alone used it up)
    assert ckpt.plan["steps"] == ckpt.step  # a resume keeps the plan


def test_train_a_dit_and_sample_it_like_the_unet(tmp_path: Path) -> None:
    """``--model dit`` trains a Diffusion Transformer through the same loop; the checkpoint
    rebuilds a DiT and ``sample`` draws a labelled grid from it with guidance."""
    from diffusion_edu.models import DiT

    out = tmp_path / "dit"
    argv = ["train", *TINY_ARGS, "--model", "dit", "--steps", "3", "--timesteps", "50",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt.model_kind == "dit" and ckpt.step == 3
    model = ckpt.build_model()
    assert isinstance(model, DiT) and model.config.num_classes == 10
    png = tmp_path / "dit.png"
    assert main(["sample", "--checkpoint", str(out / "checkpoint.pt"), "--out", str(png),
                 "--per-class", "1", "--steps", "5", "--guidance", "2",
                 "--no-progress"]) == 0  # fmt: skip
    assert png.stat().st_size > 0


@pytest.mark.parametrize("prediction", ["v", "flow"])
def test_train_another_target_and_sample_it_with_the_fitting_sampler(
    prediction: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / prediction
    argv = ["train", *TINY_ARGS, "--steps", "2", "--timesteps", "50", "--prediction",
            prediction, "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    # the "Draw samples" hint names a sampler this kind of model can use
    hint = next(line for line in capsys.readouterr().out.splitlines() if "Draw samples" in line)
    fits = ("--sampler euler", "--sampler heun") if prediction == "flow" else ("--sampler ddim",)
    assert any(flags in hint for flags in fits), hint
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt.model_config.prediction == prediction
    png = tmp_path / f"{prediction}.png"
    assert main(["sample", "--checkpoint", str(out / "checkpoint.pt"), "--out", str(png),
                 "--n", "4", "--steps", "5", "--no-progress"]) == 0  # fmt: skip
    assert png.exists()  # DDIM for v, Euler for flow, chosen from the checkpoint


# ----------------------------------------------------------------------------- failures
@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["train", "--steps", "-3"], "--steps: expected a number >= 1"),
        (["train", "--lr", "fast"], "--lr: expected a number"),
        (["train", "--schedule", "quadratic"], "invalid choice: 'quadratic'"),
        (["train", "--steps", "3", "--epochs", "1"], "not allowed with argument"),
        (["train", "--ema-decay", "1.5"], "--ema-decay: expected a number in [0, 1)"),
        (["sample"], "--checkpoint"),
        (["sample", "--checkpoint", "x.pt", "--labels", "1,two"], "comma-separated"),
        (["fly"], "invalid choice: 'fly'"),
    ],
)
def test_bad_arguments_exit_2_with_one_clear_line(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    line = error_line(capsys)
    assert expected in line and "--help" in line


def test_missing_checkpoint_exits_2_without_a_traceback(tmp_path: Path) -> None:
    result = run_cli("sample", "--checkpoint", str(tmp_path / "nope.pt"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "no such checkpoint file" in result.stderr and len(result.stderr.splitlines()) == 1


def test_a_text_file_as_checkpoint_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not weights\n")
    assert main(["sample", "--checkpoint", str(notes), "--out", str(tmp_path / "s.png")]) == 2
    assert "not a PyTorch checkpoint file" in error_line(capsys)


def test_a_run_of_the_two_minute_recipe_is_told_the_recipes_sampling(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--model-size", "fast", "--batch-size", "32", "--lr", "0.003",
            "--warmup-steps", "50", "--min-snr-gamma", "5", "--schedule", "cosine", "--steps", "1",
            "--no-progress", "--device", "cpu", "--precision", "fp32",
            "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    hint = capsys.readouterr().out.strip().splitlines()[-1]
    assert hint.startswith("Draw samples: python -m diffusion_edu sample --checkpoint"), hint
    assert "--sampler ddim --steps 50 --eta 1 --guidance 2 --out" in hint  # recipe.sampling
    assert load_checkpoint(tmp_path / "checkpoint.pt").model_config.patch_size == 2


def test_a_u_net_only_preset_for_a_dit_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--model", "dit", "--model-size", "fast", "--steps", "1", "--no-progress",
            "--out", str(tmp_path / "run")]  # fmt: skip
    assert main(argv) == 2
    line = error_line(capsys)
    assert "--model-size fast is a U-Net preset; a DiT takes tiny, small, default, large" in line
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_an_unwritable_output_folder_exits_2(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("I am a file, so nothing can be created under me")
    assert main(["train", *TINY_ARGS, "--steps", "1", "--out", str(blocker / "run")]) == 2
    assert "cannot write to the output folder" in error_line(capsys)
    assert main(["sample", "--checkpoint", str(trained / "checkpoint.pt"),
                 "--out", str(blocker / "grid.png")]) == 2  # fmt: skip
    assert "cannot write" in error_line(capsys)


def test_sample_pretrained_with_dpm_solver_pp_in_10_steps(tmp_path: Path) -> None:
    from diffusion_edu.metrics import class_agreement

    out = tmp_path / "dpm.png"
    assert main(["sample", "--pretrained", "mnist", "--labels", "0,1,2,3,4,5,6,7,8,9",
                 "--sampler", "dpm-solver++", "--steps", "10", "--guidance", "2", "--seed", "0",
                 "--nrow", "10", "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    grid = torch.from_numpy(plt.imread(out)[..., 0].copy())  # (32, 302) grey in [0, 1]
    digits = torch.stack([grid[2:30, 2 + 30 * i : 30 + 30 * i] for i in range(10)])[:, None]
    assert class_agreement(digits * 2 - 1, torch.arange(10)) >= 0.8


def test_sample_argument_mistakes_are_explained(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = str(trained / "checkpoint.pt")
    png = str(tmp_path / "s.png")
    cases = [
        (["--labels", "3,12"], "class ids must lie in 0..9"),
        (["--sampler", "ddpm", "--steps", "10"], "takes all T=100 steps"),
        (["--sampler", "euler"], "use sampler='ddim'"),
        (["--steps", "500"], "steps must be a whole number in 1..T=100"),
        (["--out", str(tmp_path / "s.jpg")], "must end in .png"),
    ]
    for extra, expected in cases:
        argv = ["sample", "--checkpoint", ckpt, "--out", png, "--no-progress", *extra]
        assert main(argv) == 2
        assert expected in error_line(capsys)


def test_guidance_on_an_unconditional_model_is_refused_by_the_sampler(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "uncond"
    argv = ["train", *TINY_ARGS, "--steps", "1", "--timesteps", "20", "--unconditional",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    argv = ["sample", "--checkpoint", str(out / "checkpoint.pt"), "--out",
            str(tmp_path / "u.png"), "--n", "2", "--guidance", "2", "--no-progress"]  # fmt: skip
    assert main(argv) == 2
    assert "guidance needs labels" in error_line(capsys)


def test_resume_without_a_checkpoint_and_empty_mnist_folder_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", *TINY_ARGS, "--out", str(tmp_path / "r"), "--resume"]) == 2
    assert "no checkpoint at" in error_line(capsys)
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = ["train", *TINY_ARGS, "--dataset", "mnist", "--data-dir", str(empty), "--out",
            str(tmp_path / "m")]  # fmt: skip
    assert main(argv) == 2
    assert "no MNIST training IDX files" in error_line(capsys)


def test_divergence_stops_with_exit_1_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "boom"
    argv = ["train", *TINY_ARGS, "--steps", "6", "--checkpoint-every", "1", "--lr", "1e6",
            "--warmup-steps", "0", "--out", str(out)]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Training stopped at step" in err and "learning rate is too high" in err
    step = int(err.split("Training stopped at step ")[1].split(":")[0])
    ckpt = load_checkpoint(out / "checkpoint.pt")  # still a valid file...
    assert ckpt.step == step - 1  # ...from the last step that was fine
    assert all(torch.isfinite(v).all() for v in ckpt.model_state.values())


# ----------------------------------------------------------------------------- recommended settings
@pytest.fixture
def shipped_tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_unet) -> Path:  # noqa: ANN001
    """A tiny "mnist" shipped model (T = 50) in a temporary data folder whose record
    recommends DDIM-3 with guidance 2.5 at 10 < t <= 40."""
    from diffusion_edu.checkpoints import save_checkpoint
    from diffusion_edu.schedules import NoiseSchedule

    data = tmp_path / "data"
    monkeypatch.setenv("DIFFUSION_EDU_DATA", str(data))
    model = tiny_unet()
    generator = torch.Generator().manual_seed(1)
    for p in model.parameters():  # weights that make guidance visible
        p.data.normal_(0, 0.05, generator=generator)
    save_checkpoint(data / "pretrained" / "mnist_unet.pt", model, NoiseSchedule.cosine(T=50),
                    step=1)  # fmt: skip
    recommended = {"sampler": "ddim", "steps": 3, "guidance": 2.5, "guidance_interval": [10, 40]}
    record = {"command": "train", "recommended": recommended}
    (data / "pretrained" / "mnist_unet.json").write_text(json.dumps(record))
    return tmp_path


def test_sample_pretrained_uses_the_recommended_settings_and_says_so(
    shipped_tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["sample", "--pretrained", "mnist", "--labels", "1,2,3", "--no-progress"]
    by_record = shipped_tiny / "record.png"
    assert main([*common, "--out", str(by_record)]) == 0
    out = capsys.readouterr().out
    assert "DDIM-3, guidance 2.5 at 10 < t <= 40, seed 0" in out
    assert "Recommended settings of the shipped model 'mnist'" in out
    assert "sampler, steps, guidance, guidance interval" in out
    spelled_out = shipped_tiny / "flags.png"
    flags = ["--sampler", "ddim", "--steps", "3", "--eta", "0", "--guidance", "2.5",
             "--guidance-interval", "10", "40"]  # fmt: skip
    assert main([*common, "--out", str(spelled_out), *flags]) == 0
    assert "Recommended settings" not in capsys.readouterr().out  # every flag given
    assert (plt.imread(by_record) == plt.imread(spelled_out)).all()


def test_a_flag_overrides_one_recommended_setting_and_keeps_the_others(
    shipped_tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["sample", "--pretrained", "mnist", "--labels", "1,2,3", "--no-progress"]
    plain, everywhere, full = (shipped_tiny / f"{name}.png" for name in ("p", "e", "f"))
    assert main([*common, "--out", str(plain), "--guidance", "1"]) == 0
    out = capsys.readouterr().out
    assert "DDIM-3, guidance 1, seed 0" in out and ": sampler, steps, guidance interval." in out
    assert main([*common, "--out", str(everywhere), "--guidance-interval", "0", "50"]) == 0
    assert "guidance 2.5 at 0 < t <= 50" in capsys.readouterr().out
    # The same weights as a plain checkpoint (no recommended settings): guided at every step.
    weights = shipped_tiny / "data" / "pretrained" / "mnist_unet.pt"
    assert main(["sample", "--checkpoint", str(weights), "--labels", "1,2,3", "--no-progress",
                 "--out", str(full), "--steps", "3", "--guidance", "2.5"]) == 0  # fmt: skip
    assert "Recommended settings" not in capsys.readouterr().out
    assert (plt.imread(everywhere) == plt.imread(full)).all()  # 0 < t <= T: every step
    assert not (plt.imread(plain) == plt.imread(full)).all()
    # Another sampler: the recommended steps belong to DDIM, so DDPM takes its own T steps.
    assert main([*common, "--out", str(plain), "--sampler", "ddpm"]) == 0
    out = capsys.readouterr().out
    assert (
        "DDPM-50, guidance 2.5 at 10 < t <= 40" in out and ": guidance, guidance interval." in out
    )


def test_a_bad_guidance_interval_is_explained(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["sample", "--checkpoint", str(trained / "checkpoint.pt"), "--out",
            str(tmp_path / "s.png"), "--no-progress", "--guidance", "2",
            "--guidance-interval"]  # fmt: skip
    assert main([*argv, "80", "20"]) == 2
    assert "0 <= t_lo < t_hi <= T=100" in error_line(capsys)
    with pytest.raises(SystemExit) as info:
        main([*argv, "20"])
    assert info.value.code == 2 and "expected 2 arguments" in error_line(capsys)
    with pytest.raises(SystemExit):
        main([*argv, "-5", "20"])
    capsys.readouterr()


# ----------------------------------------------------------------------------- prompts
@pytest.fixture
def text_checkpoint(tmp_path: Path, tiny_unet) -> Path:  # noqa: ANN001
    """A tiny text-conditioned U-Net (untrained), saved as a checkpoint with T = 20."""
    from diffusion_edu.checkpoints import save_checkpoint
    from diffusion_edu.schedules import NoiseSchedule
    from diffusion_edu.text import VOCABULARY

    model = tiny_unet(num_classes=None, text_vocab_size=len(VOCABULARY))
    path = tmp_path / "text.pt"
    save_checkpoint(path, model, NoiseSchedule.cosine(T=20), step=1)
    return path


def test_sample_draws_one_row_per_prompt_from_a_text_model(
    text_checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "prompts.png"
    assert main(["sample", "--checkpoint", str(text_checkpoint), "--prompt", "a bold seven",
                 "--prompt", "a thin 3 leaning left", "--per-class", "3", "--steps", "2",
                 "--guidance", "2", "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    assert plt.imread(out).shape[:2] == (2 * 30 + 2, 3 * 30 + 2)  # 2 rows (prompts) x 3
    assert main(["sample", "--checkpoint", str(text_checkpoint), "--prompt", "a 1", "--prompt",
                 "a 2", "--n", "5", "--steps", "2", "--out", str(out),
                 "--no-progress"]) == 0  # fmt: skip
    assert plt.imread(out).shape[:2] == (2 * 30 + 2, 3 * 30 + 2)  # 5 images, 3 per row


def test_prompt_mistakes_are_explained(
    trained: Path, text_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = ["--out", str(tmp_path / "s.png"), "--no-progress", "--steps", "2"]
    labelled = ["sample", "--checkpoint", str(trained / "checkpoint.pt"), *png]
    text = ["sample", "--checkpoint", str(text_checkpoint), *png]
    assert main([*labelled, "--prompt", "a bold seven"]) == 2
    assert (
        "--prompt: this model is not text-conditioned (it is class-conditional: use --labels)"
        in (error_line(capsys))
    )
    assert main([*text, "--prompt", "a purple seven"]) == 2
    line = error_line(capsys)
    assert "unknown word 'purple'" in line and "leaning right" in line  # lists the vocabulary
    assert main([*text, "--labels", "1,2"]) == 2
    assert "this model is text-conditioned; give --prompt TEXT" in error_line(capsys)
    with pytest.raises(SystemExit) as info:
        main([*text, "--labels", "1", "--prompt", "a one"])
    assert info.value.code == 2 and "not allowed with argument" in error_line(capsys)


def test_sample_autoguides_by_a_shipped_guide_or_a_checkpoint_and_explains_mistakes(
    shipped_tiny: Path,
    tiny_unet,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--autoguidance W --guide-model NAME|CHECKPOINT: the same images as sample() with the
    guide; a record that recommends autoguidance is followed; a missing guide is explained."""
    from diffusion_edu import load_pretrained, sample
    from diffusion_edu.checkpoints import save_checkpoint
    from diffusion_edu.pretrained import PRETRAINED_MODELS
    from diffusion_edu.schedules import NoiseSchedule
    from diffusion_edu.viz.plots import make_grid

    monkeypatch.setitem(PRETRAINED_MODELS, "mnist-guide", "mnist_guide")  # a shipped guide
    data = shipped_tiny / "data" / "pretrained"
    guide = tiny_unet(seed=9)
    save_checkpoint(data / "mnist_guide.pt", guide, NoiseSchedule.cosine(T=50), step=1)
    (data / "mnist_guide.json").write_text(json.dumps({"command": "train --steps 1"}))
    common = ["sample", "--pretrained", "mnist", "--labels", "1,2,3", "--no-progress"]
    by_name, by_path = shipped_tiny / "n.png", shipped_tiny / "p.png"
    assert main([*common, "--out", str(by_name), "--autoguidance", "2", "--guide-model",
                 "mnist-guide"]) == 0  # fmt: skip
    assert "guidance 2.5 at 10 < t <= 40, autoguidance 2 by mnist-guide" in capsys.readouterr().out
    assert main([*common, "--out", str(by_path), "--autoguidance", "2", "--guide-model",
                 str(data / "mnist_guide.pt")]) == 0  # fmt: skip
    capsys.readouterr()
    assert (plt.imread(by_name) == plt.imread(by_path)).all()
    model, schedule = load_pretrained("mnist")
    images = sample(model, schedule, labels=[1, 2, 3], sampler="ddim", steps=3, guidance=2.5,
                    guidance_interval=(10, 40), guide_model=load_pretrained("mnist-guide")[0],
                    autoguidance=2.0, seed=0, progress=False)  # fmt: skip
    expected = make_grid(images, nrow=2)  # --labels: a square grid
    assert abs(plt.imread(by_name)[..., 0] - expected).max() < 1 / 255 + 1e-6
    plain = shipped_tiny / "plain.png"
    assert main([*common, "--out", str(plain)]) == 0
    capsys.readouterr()
    assert not (plt.imread(plain) == plt.imread(by_name)).all()
    # A record that recommends autoguidance: followed, and said.
    record = json.loads((data / "mnist_unet.json").read_text())
    record["recommended"].update(autoguidance=2.0, guide_model="mnist-guide")
    (data / "mnist_unet.json").write_text(json.dumps(record))
    recorded = shipped_tiny / "r.png"
    assert main([*common, "--out", str(recorded)]) == 0
    out = capsys.readouterr().out
    assert "autoguidance, guide model." in out and "autoguidance 2 by mnist-guide" in out
    assert (plt.imread(recorded) == plt.imread(by_name)).all()
    assert main([*common, "--out", str(plain), "--autoguidance", "1"]) == 0  # the flag wins
    assert "autoguidance" not in capsys.readouterr().out.split("seed 0")[0]
    # Mistakes: no guide, a guide that is not there.
    plain_argv = ["sample", "--checkpoint", str(data / "mnist_unet.pt"), "--labels", "1",
                  "--no-progress", "--out", str(plain)]  # fmt: skip
    assert main([*plain_argv, "--autoguidance", "2"]) == 2
    assert "needs guide_model" in error_line(capsys)
    assert main([*plain_argv, "--autoguidance", "2", "--guide-model", "nowhere.pt"]) == 2
    assert "--guide-model nowhere.pt" in error_line(capsys)
