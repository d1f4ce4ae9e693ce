"""How quickly does each lesson widget answer in a real browser? (JupyterLab in Chromium)

For every widget control of the chosen lessons (quick mode): change it ``--repeats`` times as
a person would (click a slider's track, pick an entry...) and time each change in the browser
until the new picture (or text) is on screen; print the median against the goal. Play buttons
also get frames per second once their frames are drawn.

Goals (issue 10): a slider that redraws a plot answers in <= 250 ms (median); a control that
samples digits or points from a model (guidance, steps) in <= 1 s. Buttons that train a model
are timed but have no goal.

With ``--base REV`` the same run first measures the lessons and library of revision REV (a git
worktree; its kernel imports that revision's library), so the before/after table comes from
one run on one machine:

    .venv/bin/python bench/widget_latency.py --base 86b6298 --repeats 5

Needs Debian's chromium (apt-get install chromium) and the dev extras (Playwright).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "browser"))

from labdriver import (  # noqa: E402  (the browser tests' driver)
    NOTEBOOKS,
    JupyterLabServer,
    LessonPage,
    exercise_every_control,
    launch_chromium,
    median_or_none,
    play_frames_per_second,
)

PLOT_GOAL_S, SAMPLING_GOAL_S = 0.25, 1.0
# Controls that sample from a model on every change (goal 1 s), by lesson prefix and label.
SAMPLING = {("05", "guidance w"), ("07", "guidance w"), ("07", "DDIM steps")}
SAMPLING |= {("08", label) for label in ("sampler", "steps", "eta (DDIM)", "guidance w", "eta",
                                         "DDIM steps", "t*")}  # fmt: skip
SAMPLING |= {("09", label) for label in ("guidance w", "prompt", "same noise for every prompt")}
NO_GOAL = {"button"}  # e.g. "Train (300 steps)": training, not a redraw


def goal_for(lesson: str, kind: str, label: str) -> float | None:
    if kind in NO_GOAL:
        return None
    return SAMPLING_GOAL_S if (lesson[:2], label) in SAMPLING else PLOT_GOAL_S


def measure(
    notebooks: Path, lessons: list[str], repeats: int, env: dict | None = None
) -> dict[tuple[str, str, str], dict]:
    from playwright.sync_api import sync_playwright

    results: dict[tuple[str, str, str], dict] = {}
    with JupyterLabServer(quick=True, notebooks=notebooks, env=env) as lab, sync_playwright() as p:
        browser = launch_chromium(p)
        for lesson in lessons:
            page = LessonPage(browser, lab, lesson)
            try:
                page.open()
                print(f"  {lesson}: running all cells...", flush=True)
                page.run_all()
                for control, made in exercise_every_control(page, repeats=repeats, timeout_s=10):
                    key = (lesson, control["kind"], control["label"])
                    entry = {"median": median_or_none([r.seconds for r in made]), "n": len(made)}
                    if control["kind"] == "play":
                        entry["fps"] = play_frames_per_second(page, control)
                    results[key] = entry
                    print(f"    {key[2]!r:24} {_fmt(entry['median'])}", flush=True)
            finally:
                page.close()
        browser.close()
    return results


def _fmt(seconds: float | None) -> str:
    return "   -   " if seconds is None else f"{1000 * seconds:5.0f} ms"


def _worktree(rev: str) -> tuple[Path, tempfile.TemporaryDirectory]:
    tmp = tempfile.TemporaryDirectory(prefix="widget-latency-base-")
    path = Path(tmp.name) / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), rev],
                   check=True, capture_output=True)  # fmt: skip
    return path, tmp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lessons", nargs="*", help="lesson prefixes, e.g. 01 02 (default: all)")
    parser.add_argument("--repeats", type=int, default=5, help="changes per control (median)")
    parser.add_argument("--base", help="also measure this git revision, as 'before'")
    args = parser.parse_args()
    all_lessons = sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    lessons = [n for n in all_lessons if not args.lessons or n[:2] in args.lessons]
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                if ln.startswith("model name")), platform.processor())  # fmt: skip
    print(f"machine: {cpu}, {os.cpu_count()} cores; quick mode; {args.repeats} changes each")

    before = {}
    if args.base:
        tree, tmp = _worktree(args.base)
        try:
            print(f"before: revision {args.base}")
            before = measure(tree / "notebooks", lessons, args.repeats,
                             env={"PYTHONPATH": str(tree)})  # fmt: skip
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                           check=False)  # fmt: skip
            tmp.cleanup()
    print("after: this working tree")
    after = measure(NOTEBOOKS, lessons, args.repeats)

    print("\nmedian time from a change in the browser to the new picture on screen")
    header = f"{'lesson':7} {'control':26} {'goal':>7} "
    header += f"{'before':>8} {'after':>8} {'ratio':>6} " if before else f"{'median':>8} "
    print(header + " verdict")
    missed = 0
    for key in sorted(set(after) | set(before)):
        lesson, kind, label = key
        goal = goal_for(lesson, kind, label)
        b, a = before.get(key, {}).get("median"), after.get(key, {}).get("median")
        goal_text = _fmt(goal) if goal else "   -   "
        row = f"{lesson[:2]:7} {(kind + ' ' + label)[:26]:26} {goal_text:>7} "
        if before:
            ratio = f"{b / a:5.1f}x" if a and b else "   -  "
            row += f"{_fmt(b):>8} {_fmt(a):>8} {ratio:>6} "
        else:
            row += f"{_fmt(a):>8} "
        verdict = "" if goal is None or a is None else ("ok" if a <= goal else "SLOW")
        missed += verdict == "SLOW"
        fps = after.get(key, {}).get("fps")
        if fps is not None:
            fps_before = before.get(key, {}).get("fps")
            verdict += f"  play: {fps:.1f} frames/s" + (
                f" (before {fps_before:.1f})" if fps_before is not None else ""
            )
        print(row + " " + verdict)
    print(f"\n{missed} control(s) miss their goal." if missed else "\nevery control meets its goal")


if __name__ == "__main__":
    main()
