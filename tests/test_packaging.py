"""The install path: pins agree, the public API imports, CI runs the README's test command."""

import re
from pathlib import Path

import pytest

import diffusion_edu

ROOT = Path(__file__).resolve().parents[1]

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")


def _pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # The course's environment: runtime + dev. The "bench" extra (diffusers) is for benchmarks.
    reqs = project["dependencies"] + project["optional-dependencies"]["dev"]
    pins = {}
    for req in reqs:
        name, sep, version = req.partition("==")
        assert sep, f"pyproject.toml: {req!r} is not pinned with =="
        pins[name.strip().lower()] = version.strip()
    return pins


def _environment_yml_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "environment.yml").read_text().splitlines():
        m = re.match(r"^\s*-\s*([A-Za-z0-9_.\-]+)==([^\s#]+)", line)
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def test_pyproject_and_environment_yml_pin_the_same_versions():
    py, conda = _pyproject_pins(), _environment_yml_pins()
    assert py == conda, (
        f"pins differ: only in pyproject {py.items() - conda.items()}, "
        f"only in environment.yml {conda.items() - py.items()}"
    )


def test_torch_is_pinned_exactly():
    # An unpinned torch pulls a multi-GB CUDA build; the course is tested with 2.13.0.
    assert _pyproject_pins()["torch"] == "2.13.0"


def test_diffusers_is_only_a_pinned_benchmark_extra():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["optional-dependencies"]["bench"] == ["diffusers==0.42.1"]
    everything_else = project["dependencies"] + project["optional-dependencies"]["dev"]
    assert not [r for r in everything_else if r.startswith("diffusers")]


def test_runtime_dependencies_are_the_small_set():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {r.split("==")[0] for r in project["dependencies"]}
    assert names == {"torch", "numpy", "matplotlib", "ipywidgets", "tqdm"}


def test_every_public_name_imports_from_the_package():
    for name in diffusion_edu.__all__:
        assert getattr(diffusion_edu, name) is not None, name
    assert len(set(diffusion_edu.__all__)) == len(diffusion_edu.__all__)


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make lab" in readme
    commands = [
        ln.strip() for ln in ci.splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]
    assert commands[-1] == "exec make test", commands


def test_makefile_test_target_runs_pytest_and_the_notebooks_in_quick_mode():
    makefile = (ROOT / "Makefile").read_text()
    test_recipe = makefile.split("\ntest:")[1].split("\n\n")[0]
    assert "pytest" in test_recipe and "--nbval-lax" in test_recipe
    assert "DIFFUSION_EDU_QUICK=1" in test_recipe


def test_notebooks_are_committed_without_outputs():
    import json

    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert notebooks, "no notebooks found"
    for path in notebooks:
        nb = json.loads(path.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert not cell.get("outputs"), f"{path.name} has outputs committed"
                assert cell.get("execution_count") is None, f"{path.name} has execution counts"


def test_readme_lists_every_lesson():
    readme = (ROOT / "README.md").read_text()
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        assert path.name in readme, f"README does not list {path.name}"
