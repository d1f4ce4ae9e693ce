r"""Build the offline classroom bundle: the pinned wheels and a copy of the course in one folder.

An instructor runs this once on a machine with internet access, copies the folder to USB
sticks, and each student installs from it with no network at all::

    make bundle                     # = .venv/bin/python scripts/make_bundle.py --out bundle
    sh bundle/install.sh            # on a student laptop, after copying the folder there
    bundle/course/.venv/bin/jupyter lab bundle/course/notebooks

The folder holds:

* ``wheels/``: every package a student needs, as wheels (``pip download``): the course's runtime
  pins (``[project].dependencies`` in pyproject.toml), JupyterLab (its pin from the ``dev``
  extra; the rest of ``dev``, i.e. the test and lint tools, only with ``--with-dev``) and the
  build backend (``[build-system].requires``, which ``pip install -e`` needs even offline).
  On Linux the wheel is PyTorch's CPU-only build (``torch==X+cpu``): PyPI's Linux torch pulls
  several GB of CUDA libraries. The script checks the wheel it got and refuses a CUDA one.
* ``course/``: the course itself (notebooks, data, the library, docs, tests): the files git
  tracks plus new ones it does not ignore (``--course-from worktree``, the default), or exactly
  the last commit (``--course-from head``).
* ``install.sh``, ``INSTALL.txt`` (the commands for Linux, macOS and Windows),
  ``requirements.txt`` (what to install besides the course), ``bundle.json`` (the platform and
  Python the wheels are for) and ``SHA256SUMS`` (to check a copied stick).

Wheels are platform-specific: a bundle built on Linux x86-64 with Python 3.11 installs on Linux
x86-64 with Python 3.11 only. For students on macOS or Windows, build the bundle on a computer
with their operating system and Python version (on Windows, without make:
``py -3.11 scripts\make_bundle.py --out bundle``). pip cannot do it from another system:
``pip download --platform ... --python-version ...`` still evaluates the dependencies'
environment markers for the machine it runs on (pypa/pip#11664), so a Windows bundle made on
Linux asks for torch's Linux-only CUDA packages and misses the Windows-only ones (tried here:
the resolution fails for win_amd64 and macosx_11_0_arm64).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
from dataclasses import dataclass
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10: pytest's dependency, in the dev install
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
# What a student needs from the `dev` extra to take the course: JupyterLab (it brings
# ipykernel, nbconvert, jupyter_server). nbval, pytest, playwright and ruff are for `make test`.
STUDENT_DEV_PACKAGES = ("jupyterlab",)
# Wheels that mean a CUDA build of PyTorch came along (hundreds of MB each, useless without a GPU).
CUDA_WHEEL_PREFIXES = ("nvidia_", "nvidia-", "triton-", "cuda_", "cuda-")
TORCH_WHEEL = re.compile(r"^torch-([^-]+)-")
# Not part of the course when there is no git to ask (a downloaded zip): .gitignore's folders.
NOT_COURSE = {
    ".git", ".venv", "bundle", "site", "runs", "build", "browser-artifacts", "__pycache__",
    ".ipynb_checkpoints", ".pytest_cache", ".ruff_cache", ".whl", ".gl", "out",
}  # fmt: skip


@dataclass(frozen=True)
class Target:
    """The platform and Python the wheels are for: this machine's."""

    os_name: str  # "linux", "macos" or "windows"
    python_version: str  # "3.11"
    platform_tag: str  # sysconfig's, e.g. "linux-x86_64"

    def describe(self) -> str:
        return f"{self.os_name} ({self.platform_tag}), CPython {self.python_version}"


def this_target() -> Target:
    os_name = {"linux": "linux", "darwin": "macos", "win32": "windows"}.get(
        sys.platform, sys.platform
    )
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return Target(os_name=os_name, python_version=version, platform_tag=sysconfig.get_platform())


# ----------------------------------------------------------------------------- what to download
def read_pyproject(root: Path = ROOT) -> dict:
    return tomllib.loads((root / "pyproject.toml").read_text())


def requirements(pyproject: dict, os_name: str, with_dev: bool = False) -> list[str]:
    """The pinned requirements a student's install needs, torch made CPU-only on Linux.

    Returns pip requirement strings: the runtime pins, JupyterLab's pin from the ``dev`` extra
    (all of ``dev`` with ``with_dev``) and the build-system requirements.
    """
    project = pyproject["project"]
    dev = project.get("optional-dependencies", {}).get("dev", [])
    chosen = list(project["dependencies"])
    for req in dev:
        name = re.split(r"[=<>!~ \[;]", req, maxsplit=1)[0].strip().lower()
        if with_dev or name in STUDENT_DEV_PACKAGES:
            chosen.append(req)
    missing = [n for n in STUDENT_DEV_PACKAGES if not any(r.lower().startswith(n) for r in chosen)]
    if missing:
        raise ValueError(f"pyproject.toml's dev extra does not pin {missing}")
    out = []
    for req in chosen:
        if req.startswith("torch=="):
            req = torch_requirement(req.removeprefix("torch=="), os_name)
        out.append(req)
    return out + list(pyproject.get("build-system", {}).get("requires", []))


def torch_requirement(version: str, os_name: str) -> str:
    """``torch==2.13.0+cpu`` on Linux (PyTorch's CPU wheel), ``torch==2.13.0`` elsewhere (PyPI's
    macOS and Windows wheels are CPU-only already; the macOS one uses Apple's GPU via MPS)."""
    if os_name == "linux" and "+" not in version:
        return f"torch=={version}+cpu"
    return f"torch=={version}"


def pip_download_command(
    reqs: list[str], wheels: Path, extra: list[str] | None = None
) -> list[str]:
    command = [sys.executable, "-m", "pip", "download", "--dest", str(wheels), "--prefer-binary"]
    command += ["--disable-pip-version-check", "--progress-bar", "off"]
    return command + list(extra or []) + reqs


def download_wheels(reqs: list[str], wheels: Path, torch_index: str | None = None) -> None:
    """``pip download`` everything into ``wheels``; torch first, from ``torch_index`` if given.

    torch comes first, alone, so that an extra index (PyTorch's CPU index) is asked only for
    torch; the second download then finds it in ``wheels`` and resolves everything else.
    """
    wheels.mkdir(parents=True, exist_ok=True)
    torch_reqs = [r for r in reqs if r.startswith("torch==")]
    if torch_reqs:
        extra = ["--no-deps"] + (["--extra-index-url", torch_index] if torch_index else [])
        if subprocess.run(pip_download_command(torch_reqs, wheels, extra)).returncode != 0:
            hint = ""
            if "+cpu" in torch_reqs[0] and not torch_index:
                hint = (
                    "\nOn Linux the bundle takes PyTorch's CPU-only wheel, which PyPI does not "
                    "have; add\n  --torch-index https://download.pytorch.org/whl/cpu\n"
                    "(with make: make bundle BUNDLE_ARGS='--torch-index "
                    "https://download.pytorch.org/whl/cpu')"
                )
            raise SystemExit(f"pip could not download {torch_reqs[0]}.{hint}")
    command = pip_download_command(reqs, wheels, ["--find-links", str(wheels)])
    if subprocess.run(command).returncode != 0:
        raise SystemExit("pip download failed (its message is above).")
    build_sdists(wheels)


def build_sdists(wheels: Path) -> None:
    """Turn any source archive pip downloaded into a wheel, so the offline install builds
    nothing but the course itself."""
    for sdist in sorted(p for p in wheels.iterdir() if not p.name.endswith(".whl")):
        print(f"building a wheel from {sdist.name} (no wheel for this platform)")
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(wheels), str(sdist)]
        if subprocess.run(command).returncode != 0:
            raise SystemExit(f"could not build a wheel from {sdist.name}")
        sdist.unlink()


def check_wheels(wheels: Path, os_name: str, torch_pin: str) -> str:
    """The torch wheel's file name, after checking it is the pinned, CPU-only one."""
    names = sorted(p.name for p in wheels.glob("*.whl"))
    cuda = [n for n in names if n.lower().startswith(CUDA_WHEEL_PREFIXES)]
    if cuda:
        raise SystemExit(f"CUDA wheels came along (a CUDA torch?): {cuda}; delete {wheels}")
    torch_wheels = [n for n in names if TORCH_WHEEL.match(n)]
    if len(torch_wheels) != 1:
        raise SystemExit(f"expected one torch wheel in {wheels}, found {torch_wheels}")
    version = TORCH_WHEEL.match(torch_wheels[0]).group(1).replace("%2B", "+")
    if version != torch_pin:
        raise SystemExit(f"{torch_wheels[0]} is not torch {torch_pin}")
    if os_name == "linux" and not version.endswith("+cpu"):
        raise SystemExit(f"{torch_wheels[0]} is not PyTorch's CPU-only build")
    return torch_wheels[0]


# ----------------------------------------------------------------------------- the course
def course_files(root: Path = ROOT, exclude: Path | None = None) -> list[str]:
    """The course's files: tracked by git, or new and not ignored (what ``git status`` shows);
    without git, every file outside .gitignore's folders. Nothing under ``exclude`` (the bundle
    being built, when it is inside the course)."""
    try:
        listing = subprocess.run(
            ["git", "-C", str(root), "ls-files", "--cached", "--others", "--exclude-standard",
             "-z"],
            capture_output=True, check=True,
        ).stdout.decode()  # fmt: skip
        files = {f for f in listing.split("\0") if f and (root / f).is_file()}
    except (OSError, subprocess.CalledProcessError):  # no git, or not a git checkout
        files = set()
        for folder, dirs, names in os.walk(root):
            dirs[:] = [d for d in dirs if d not in NOT_COURSE and not d.endswith(".egg-info")]
            files |= {(Path(folder) / n).relative_to(root).as_posix() for n in names}
    if exclude is not None:
        inside = exclude.resolve()
        files = {f for f in files if not (root / f).resolve().is_relative_to(inside)}
    return sorted(files)


def copy_course(
    dest: Path, source: str = "worktree", root: Path = ROOT, exclude: Path | None = None
) -> int:
    """Copy the course into ``dest``; returns the number of files."""
    dest.mkdir(parents=True)
    if source == "head":
        archive = subprocess.run(
            ["git", "-C", str(root), "archive", "--format=tar", "HEAD"],
            capture_output=True,
            check=True,
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            members = [m for m in tar.getmembers() if m.isfile() or m.isdir()]
            try:
                tar.extractall(dest, members=members, filter="data")
            except TypeError:  # Python < 3.11.4: no filter argument
                tar.extractall(dest, members=members)
        return sum(1 for m in members if m.isfile())
    files = course_files(root, exclude)
    for name in files:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, dest / name)
    return len(files)


def course_commit(root: Path = ROOT) -> str:
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain"], capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + (" plus uncommitted changes" if dirty else "")


# ----------------------------------------------------------------------------- the bundle's texts
INSTALL_SH = """\
#!/bin/sh
# Install the diffusion_edu course from this folder, with no network.
#   sh install.sh               installs into course/.venv next to this script
#   sh install.sh DIR           installs into DIR/.venv, DIR being a copy of the course
# Extra arguments after DIR go to pip. Another Python: PYTHON=python3.11 sh install.sh
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
COURSE=$(cd "${1:-$HERE/course}" && pwd)
if [ $# -gt 0 ]; then shift; fi
PYTHON=${PYTHON:-python3}
WANT="@PYTHON_VERSION@"
PLATFORM="@PLATFORM@"
HAVE=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])') || {
  echo "no $PYTHON here: install Python $WANT first" >&2; exit 1; }
if [ "$HAVE" != "$WANT" ]; then
  echo "These wheels are for Python $WANT ($PLATFORM); $PYTHON is Python $HAVE." >&2
  echo "Run with that Python, e.g.: PYTHON=python$WANT sh $0" >&2
  exit 1
fi
"$PYTHON" -m venv "$COURSE/.venv"
# --no-index: nothing from the internet; PIP_CONFIG_FILE=/dev/null: no pip.conf adds sources.
# requirements.txt: JupyterLab and the course's pins; -e: the course itself, from its folder.
PIP_CONFIG_FILE=/dev/null "$COURSE/.venv/bin/python" -m pip install --no-index \\
  --disable-pip-version-check --find-links "$HERE/wheels" -r "$HERE/requirements.txt" \\
  -e "$COURSE" "$@" || {
  echo "pip could not install from $HERE/wheels: they are for $PLATFORM, Python $WANT." >&2
  exit 1; }
echo
echo "Installed. Start the course with:"
echo "  $COURSE/.venv/bin/jupyter lab $COURSE/notebooks"
echo "and open 00_welcome.ipynb."
"""

INSTALL_TXT = r"""diffusion_edu: offline classroom bundle
=======================================

Made {created} from course version {commit}.
The wheels are for: {platform}.
Wheels are platform-specific: they install only on that operating system and processor, with
that Python version ({python}). For students on another system, the instructor builds another
bundle on a computer with their system and Python version (`make bundle`; on Windows, without
make: `py -3.11 scripts\make_bundle.py --out bundle` in the course folder).

On a student laptop (no network needed)
---------------------------------------
1. Copy this whole folder from the USB stick onto the laptop (install from the copy, not from
   the stick: the virtual environment remembers where it was made).
2. Linux or macOS, in a terminal inside the copied folder, two commands:

       sh install.sh
       course/.venv/bin/jupyter lab course/notebooks

   Windows (PowerShell or cmd), inside the copied folder:

       py -{python} -m venv course\.venv
       course\.venv\Scripts\python -m pip install --no-index -f wheels -r requirements.txt -e course
       course\.venv\Scripts\jupyter lab course\notebooks

   (By hand on Linux/macOS, what install.sh does:
       python{python} -m venv course/.venv
       course/.venv/bin/python -m pip install --no-index -f wheels -r requirements.txt -e course
    --no-index: nothing from the internet; -f wheels: the packages from this folder.)
3. JupyterLab opens in the browser: start with 00_welcome.ipynb, which checks the set-up.

Needs Python {python} on the laptop{needs}.
The install takes a few minutes and {installed} of disk.

What is here
------------
  wheels/      {n_wheels} packages: the course's pinned versions, JupyterLab, and {torch_wheel}
  course/      the course: notebooks/, data/, diffusion_edu/ (the library), docs/, tests/
  install.sh   the install above, with a check of the Python version
  requirements.txt  what to install from wheels/ besides the course: its pins and JupyterLab
  bundle.json  the platform and Python the wheels are for, and the pip command that got them
  SHA256SUMS   checksums of the wheels: `cd wheels && sha256sum -c ../SHA256SUMS` checks a copy
"""


# manylinux tags without the glibc version in their name (PEP 513, 571, 599)
_LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


def glibc_needed(wheel_names: list[str]) -> tuple[int, int] | None:
    """The newest glibc any of these Linux wheels needs (a wheel with several tags needs the
    oldest of them), or None when no wheel is a manylinux one."""
    needed = None
    for name in wheel_names:
        platform_tag = name.removesuffix(".whl").split("-")[-1]
        versions = []
        for tag in platform_tag.split("."):
            m = re.match(r"manylinux_(\d+)_(\d+)_", tag)
            if m:
                versions.append((int(m.group(1)), int(m.group(2))))
            elif tag.split("_")[0] in _LEGACY_MANYLINUX:
                versions.append(_LEGACY_MANYLINUX[tag.split("_")[0]])
        if versions:
            needed = max(needed or (0, 0), min(versions))
    return needed


def write_texts(out: Path, info: dict) -> None:
    platform_line = info["target"]
    (out / "install.sh").write_text(
        INSTALL_SH.replace("@PYTHON_VERSION@", info["python_version"]).replace(
            "@PLATFORM@", platform_line
        )
    )
    (out / "install.sh").chmod(0o755)
    (out / "INSTALL.txt").write_text(
        INSTALL_TXT.format(
            created=info["created"],
            commit=info["course_commit"],
            platform=platform_line,
            python=info["python_version"],
            n_wheels=info["n_wheels"],
            torch_wheel=info["torch_wheel"],
            installed="about 1.3 GB",  # measured on Linux (the venv)
            needs=f" and {info['needs']}" if info.get("needs") else "",
        )
    )
    (out / "bundle.json").write_text(json.dumps(info, indent=2) + "\n")
    (out / "requirements.txt").write_text("\n".join(info["install"]) + "\n")
    sums = []
    for wheel in sorted((out / "wheels").iterdir()):
        sums.append(f"{hashlib.sha256(wheel.read_bytes()).hexdigest()}  {wheel.name}")
    (out / "SHA256SUMS").write_text("\n".join(sums) + "\n")


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def megabytes(n: int) -> str:
    return f"{n / 1e6:,.0f} MB"


# ----------------------------------------------------------------------------- main
def build_bundle(
    out: Path,
    with_dev: bool = False,
    course_from: str = "worktree",
    torch_index: str | None = None,
    root: Path = ROOT,
) -> dict:
    """Build the bundle in ``out``, afresh (pip's cache makes a second build quick).

    Returns what ``bundle.json`` records. ``out`` must be new, empty, or an earlier bundle.
    """
    if out.is_dir() and any(out.iterdir()) and not (out / "bundle.json").is_file():
        raise SystemExit(f"{out} is not empty and not a bundle (no bundle.json): choose --out")
    target = this_target()
    pyproject = read_pyproject(root)
    reqs = requirements(pyproject, target.os_name, with_dev=with_dev)
    build_requires = list(pyproject.get("build-system", {}).get("requires", []))
    torch_pin = next(r for r in reqs if r.startswith("torch==")).removeprefix("torch==")
    wheels = out / "wheels"
    # Afresh: wheels of older pins or another platform would ride along to every laptop.
    for old in (wheels, out / "course"):
        shutil.rmtree(old, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bundle.json").write_text('{"status": "being built"}\n')  # marks the folder as ours
    print(f"downloading wheels for {target.describe()} into {wheels}")
    download_wheels(reqs, wheels, torch_index)
    torch_wheel = check_wheels(wheels, target.os_name, torch_pin)
    n_files = copy_course(out / "course", course_from, root, exclude=out)
    info = {
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "course_commit": course_commit(root),
        "course_from": course_from,
        "course_files": n_files,
        "target": target.describe(),
        "os": target.os_name,
        "python_version": target.python_version,
        "platform": target.platform_tag,
        "built_on": f"{platform.system()} {platform.machine()}, Python {platform.python_version()}",
        "requirements": reqs,
        # what a student installs besides the course (-e course): everything but the build backend
        "install": [r for r in reqs if r not in build_requires],
        "pip_download": " ".join(pip_download_command(reqs, wheels)[1:]),
        "torch_wheel": torch_wheel,
        "n_wheels": len(list(wheels.glob("*.whl"))),
    }
    glibc = glibc_needed([p.name for p in wheels.glob("*.whl")])
    if glibc:
        info["needs"] = f"glibc {glibc[0]}.{glibc[1]} or newer (`ldd --version` shows it)"
    write_texts(out, info)
    return info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("bundle"), help="folder (default bundle/)")
    parser.add_argument(
        "--with-dev", action="store_true",
        help="also the dev extra (pytest, nbval, playwright, ruff: to run `make test` offline)",
    )  # fmt: skip
    parser.add_argument(
        "--course-from", choices=("worktree", "head"), default="worktree",
        help="copy the working tree's files (tracked + new, not ignored) or the last commit",
    )  # fmt: skip
    parser.add_argument(
        "--torch-index", metavar="URL",
        help="where to find the CPU-only torch wheel on Linux, asked for torch only "
        "(e.g. https://download.pytorch.org/whl/cpu); default: pip's own configuration",
    )  # fmt: skip
    args = parser.parse_args(argv)
    info = build_bundle(args.out, args.with_dev, args.course_from, args.torch_index)
    out = args.out
    wheels, course = megabytes(folder_size(out / "wheels")), megabytes(folder_size(out / "course"))
    print(f"\nbundle: {out}/ for {info['target']}")
    print(f"  wheels/  {info['n_wheels']} wheels, {wheels} (torch: {info['torch_wheel']})")
    print(f"  course/  {info['course_files']} files, {course} ({info['course_commit']})")
    print(f"  total    {megabytes(folder_size(out))}")
    print(f"On a student laptop: see {out}/INSTALL.txt (sh install.sh, then jupyter lab).")


if __name__ == "__main__":
    main()
