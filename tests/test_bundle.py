"""The offline classroom bundle (``make bundle``, scripts/make_bundle.py; issue 15, item 2).

The slow test does what an instructor and a student do: build a bundle for this platform,
install it into a fresh virtual environment with no index and no pip configuration at all (so
nothing on this machine, e.g. a find-links folder in pip.conf, can supply a missing package),
and run lesson 00 from the bundle's copy of the course in quick mode. Lesson 00 is the one to
run: it checks the set-up (every pinned package at its tested version, the bundled data) and
draws a figure, in seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from script_modules import load_script

ROOT = Path(__file__).resolve().parents[1]
LESSON = "00_welcome.ipynb"
make_bundle = load_script("make_bundle")
PYPROJECT = make_bundle.read_pyproject()
DEV_PINS = dict(r.split("==") for r in PYPROJECT["project"]["optional-dependencies"]["dev"])


# ----------------------------------------------------------------------------- what it downloads
def test_linux_bundle_pins_pytorchs_cpu_wheel_and_jupyterlab() -> None:
    reqs = make_bundle.requirements(PYPROJECT, "linux")
    assert "torch==2.13.0+cpu" in reqs
    assert f"jupyterlab=={DEV_PINS['jupyterlab']}" in reqs
    for runtime in PYPROJECT["project"]["dependencies"]:
        if not runtime.startswith("torch"):
            assert runtime in reqs
    assert "setuptools>=64" in reqs  # pip install -e builds the course even offline
    # the test and lint tools are not for students
    for tool in ("pytest", "nbval", "playwright", "ruff", "pytest-xdist"):
        assert not [r for r in reqs if r.startswith(tool + "==")], tool


def test_with_dev_adds_the_test_tools() -> None:
    reqs = make_bundle.requirements(PYPROJECT, "linux", with_dev=True)
    assert f"pytest=={DEV_PINS['pytest']}" in reqs and f"nbval=={DEV_PINS['nbval']}" in reqs


def test_macos_and_windows_bundles_take_pypis_torch() -> None:
    # PyPI's macOS and Windows torch wheels have no CUDA in them; its Linux ones do.
    for os_name in ("macos", "windows"):
        assert "torch==2.13.0" in make_bundle.requirements(PYPROJECT, os_name)


def test_the_bundle_is_for_this_machine() -> None:
    target = make_bundle.this_target()
    assert target.python_version == f"{sys.version_info.major}.{sys.version_info.minor}"
    if sys.platform == "linux":
        assert target.os_name == "linux" and target.platform_tag.startswith("linux")


def test_glibc_needed_is_the_newest_any_linux_wheel_asks_for() -> None:
    names = [
        "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl",
        "psutil-7.2.2-cp36-abi3-manylinux2010_x86_64.manylinux_2_12_x86_64.manylinux_2_28_x86_64.whl",
        "debugpy-1.8.22-cp311-cp311-manylinux_2_34_x86_64.whl",
        "tqdm-4.70.1-py3-none-any.whl",
    ]
    assert make_bundle.glibc_needed(names) == (2, 34)
    assert make_bundle.glibc_needed(names[1:2]) == (2, 12)  # a wheel with 3 tags needs the oldest
    assert make_bundle.glibc_needed(names[3:]) is None


def _touch(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).write_bytes(b"")


def test_check_wheels_refuses_a_cuda_torch(tmp_path: Path) -> None:
    _touch(tmp_path, "torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl")
    with pytest.raises(SystemExit, match="CPU-only"):
        make_bundle.check_wheels(tmp_path, "linux", "2.13.0")
    _touch(tmp_path, "nvidia_cublas_cu12-12.8.4.1-py3-none-manylinux_2_27_x86_64.whl")
    with pytest.raises(SystemExit, match="CUDA wheels"):
        make_bundle.check_wheels(tmp_path, "linux", "2.13.0")


def test_check_wheels_wants_exactly_the_pinned_cpu_torch(tmp_path: Path) -> None:
    name = "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
    _touch(tmp_path, name, "tqdm-4.70.1-py3-none-any.whl")
    assert make_bundle.check_wheels(tmp_path, "linux", "2.13.0+cpu") == name
    with pytest.raises(SystemExit, match="is not torch 2.14.0"):
        make_bundle.check_wheels(tmp_path, "linux", "2.14.0+cpu")
    _touch(tmp_path, "torch-2.12.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl")
    with pytest.raises(SystemExit, match="expected one torch wheel"):
        make_bundle.check_wheels(tmp_path, "linux", "2.13.0+cpu")


def test_the_course_copy_is_what_git_tracks_and_nothing_ignored() -> None:
    files = make_bundle.course_files(exclude=ROOT / "notebooks")
    assert not [f for f in files if f.startswith("notebooks/")]  # a bundle inside the course
    files = make_bundle.course_files()
    for needed in (
        "pyproject.toml", "README.md", "diffusion_edu/__init__.py", "data/mnist_5000.npz",
        "data/pretrained/mnist_unet.pt", f"notebooks/{LESSON}",
    ):  # fmt: skip
        assert needed in files, needed
    ignored = (".venv/", "bundle/", "site/", "browser-artifacts/", "runs/", "notebooks/runs/")
    assert not [f for f in files if f.startswith(ignored) or "__pycache__" in f]


def test_without_git_the_course_is_every_file_but_gitignores_folders(tmp_path: Path) -> None:
    # a course downloaded as a zip: not a git checkout
    for name in ("README.md", "notebooks/00_welcome.ipynb", "data/pretrained/x.pt", ".venv/bin/x",
                 "site/index.html", "bundle/wheels/a.whl", "diffusion_edu.egg-info/PKG-INFO",
                 "diffusion_edu/__pycache__/a.pyc", "diffusion_edu/__init__.py"):  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert make_bundle.course_files(tmp_path) == [
        "README.md", "data/pretrained/x.pt", "diffusion_edu/__init__.py",
        "notebooks/00_welcome.ipynb",
    ]  # fmt: skip


def test_refuses_to_empty_a_folder_that_is_not_a_bundle(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("an instructor's file")
    with pytest.raises(SystemExit, match="not a bundle"):
        make_bundle.build_bundle(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "an instructor's file"


# ----------------------------------------------------------------------------- end to end
def _env_without_pip_sources() -> dict[str, str]:
    """This process's environment with every pip setting removed, and pip's config files off
    (``PIP_CONFIG_FILE=/dev/null`` makes pip read no configuration file at all)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1")
    return env


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="install.sh is for Linux and macOS")
def test_bundle_installs_with_no_index_and_runs_a_lesson(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    seconds = {}
    try:
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "make_bundle.py"), "--out", str(bundle)],
            cwd=ROOT, check=True,
        )  # fmt: skip
        seconds["build"] = time.perf_counter() - start
        info = json.loads((bundle / "bundle.json").read_text())
        assert info["python_version"] == f"{sys.version_info.major}.{sys.version_info.minor}"
        if sys.platform == "linux":
            assert info["torch_wheel"].startswith("torch-2.13.0+cpu-"), info["torch_wheel"]
        install_txt = (bundle / "INSTALL.txt").read_text()
        assert "sh install.sh" in install_txt and info["python_version"] in install_txt
        course = bundle / "course"
        assert (course / "notebooks" / LESSON).is_file()

        # The student's install: no index, no pip.conf, no PIP_* variables from this machine.
        start = time.perf_counter()
        env = _env_without_pip_sources()
        env["PYTHON"] = sys.executable
        # --no-compile (passed on to pip) halves the install here (54 s instead of 108 s on 2
        # cores): no .pyc files made ahead of time, which changes nothing that is tested.
        subprocess.run(
            ["sh", str(bundle / "install.sh"), str(course), "--no-compile"], env=env, check=True
        )
        seconds["install"] = time.perf_counter() - start
        venv_bin = course / ".venv" / "bin"
        where = "import diffusion_edu, torch; print(diffusion_edu.__file__, torch.__version__)"
        shown = subprocess.run(  # cwd: not this checkout, whose package `-c` would import
            [str(venv_bin / "python"), "-c", where],
            env=env, capture_output=True, text=True, check=True, cwd=tmp_path,
        ).stdout.split()  # fmt: skip
        assert Path(shown[0]).resolve().is_relative_to(course.resolve()), shown  # the bundle's
        assert shown[1].split("+")[0] == "2.13.0", shown
        lab = subprocess.run(
            [str(venv_bin / "jupyter-lab"), "--version"], env=env, capture_output=True, text=True
        )
        assert lab.stdout.strip() == DEV_PINS["jupyterlab"], lab  # what the students open

        # Lesson 00 from the bundle, executed by the bundle's own nbconvert and kernel.
        start = time.perf_counter()
        run_env = {k: v for k, v in env.items() if k not in ("MPLBACKEND", "PYTHONPATH")}
        run_env.update(
            DIFFUSION_EDU_QUICK="1",
            PATH=f"{venv_bin}{os.pathsep}{env.get('PATH', '')}",
            JUPYTER_DATA_DIR=str(tmp_path / "jupyter-data"),  # no kernel spec from this machine
            JUPYTER_PREFER_ENV_PATH="1",
            OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"),
        )
        executed = tmp_path / "executed.ipynb"
        subprocess.run(
            [str(venv_bin / "jupyter"), "nbconvert", "--to", "notebook", "--execute",
             "--ExecutePreprocessor.timeout=600", f"--output-dir={tmp_path}", "--output=executed",
             LESSON],
            cwd=course / "notebooks", env=run_env, check=True,
        )  # fmt: skip
        seconds["lesson"] = time.perf_counter() - start
        cells = json.loads(executed.read_text())["cells"]
        outputs = [o for c in cells if c["cell_type"] == "code" for o in c["outputs"]]
        assert not [o for o in outputs if o["output_type"] == "error"]
        printed = "".join("".join(o.get("text", "")) for o in outputs)
        assert "All set" in printed and "WARN" not in printed, printed  # pins, data, device
        assert any("image/png" in o.get("data", {}) for o in outputs), "no figure"
        print(f"bundle: {info['n_wheels']} wheels; seconds: {seconds}")
    finally:
        shutil.rmtree(bundle, ignore_errors=True)  # about a gigabyte once installed
