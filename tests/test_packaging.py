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


# ----------------------------------------------------------------------------- the code's shape
def test_one_training_loop_calls_backward() -> None:
    """Every model the course trains goes through diffusion_edu/loop.py (issue 9's criterion:
    ``grep -rl "\\.backward(" diffusion_edu scripts`` names exactly one file)."""
    found = sorted(
        str(path.relative_to(ROOT))
        for folder in ("diffusion_edu", "scripts")
        for path in (ROOT / folder).rglob("*.py")
        if ".backward(" in path.read_text()
    )
    assert found == ["diffusion_edu/loop.py"], found


def _lesson_imports() -> dict[str, set[str]]:
    """name -> the lessons that import it with ``from diffusion_edu import ...``."""
    import json

    used: dict[str, set[str]] = {}
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        pattern = r"from diffusion_edu import (?:\(([^)]*)\)|([^\n]*))"
        for block in re.findall(pattern, code):
            for name in re.findall(r"\w+", " ".join(block).split("#")[0]):
                used.setdefault(name, set()).add(path.name[:2])
    return used


def test_the_public_api_is_the_course_path() -> None:
    """diffusion_edu exports what the lessons import from it, and nothing no lesson or the
    README's tour uses (the rest is imported from its module)."""
    exported = set(diffusion_edu.__all__)
    lessons = _lesson_imports()
    assert set(lessons) <= exported, set(lessons) - exported
    readme_code = "\n".join(
        re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    )
    unused = {n for n in exported if n not in lessons and not re.search(rf"\b{n}\b", readme_code)}
    assert not unused, f"exported but used by no lesson and not in the README tour: {unused}"


def test_the_readme_library_map_names_every_module() -> None:
    readme = (ROOT / "README.md").read_text()
    library_map = readme.split("## The library", 1)[1].split("```", 2)[1]
    for path in sorted((ROOT / "diffusion_edu").glob("*.py")):
        if path.stem not in ("__init__", "__main__"):
            assert f"{path.stem}.py" in library_map, f"README library map lacks {path.name}"
    for package in ("models", "viz", "exercises"):
        assert f"{package}/" in library_map


def _expected_test_file(module: Path) -> str:
    """Where a module's tests live: diffusion_edu/X.py -> tests/test_X.py; a module in a
    sub-package P -> tests/test_P_X.py; an exercise module lessonNN -> tests/test_lessonNN.py."""
    parts = module.relative_to(ROOT / "diffusion_edu").with_suffix("").parts
    if parts[0] == "exercises" and parts[-1].startswith("lesson"):
        return f"test_{parts[-1]}.py"
    return "test_" + "_".join(parts) + ".py"


def test_every_library_module_has_its_own_test_file() -> None:
    missing = [
        f"{module.relative_to(ROOT)} -> tests/{_expected_test_file(module)}"
        for module in sorted((ROOT / "diffusion_edu").rglob("*.py"))
        if module.stem not in ("__init__", "__main__")
        and not (ROOT / "tests" / _expected_test_file(module)).is_file()
    ]
    assert not missing, "modules without a test file: " + "; ".join(missing)
    expected = {_expected_test_file(m) for m in (ROOT / "diffusion_edu").rglob("*.py")}
    # checks of the repository itself, and of the lessons as whole notebooks, not of one module
    repo_level = {
        "test_packaging.py",
        "test_notebooks.py",
        "test_glossary.py",
        "test_instructor_guide.py",
        "test_bundle.py",
        "test_run_split.py",  # the root conftest.py: how `make test` spreads its work
    }
    stray = {p.name for p in (ROOT / "tests").glob("test_*.py")} - expected - repo_level
    assert not stray, f"test files that belong to no module: {sorted(stray)}"
