"""Drive the lessons in a real JupyterLab in a real browser (Debian's chromium, via Playwright).

Used by the browser tests (``tests/browser/test_lessons.py``) and by the latency benchmark
(``bench/widget_latency.py``). Nothing here downloads a browser: Chromium is the binary that
``shutil.which("chromium")`` finds (Debian: ``apt-get install chromium``).

* :class:`JupyterLabServer`: JupyterLab on 127.0.0.1, a free port, a random token, quick mode on,
  over a *copy* of ``notebooks/`` (running a lesson must never write outputs into the repo).
* :func:`launch_chromium`: headless Chromium with the flags this sandbox needs.
* :class:`LessonPage`: open a lesson, wait for the kernel, run all cells, read the outputs,
  find every widget control, change it as a person would, time the figure's answer, screenshot.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
CHROMIUM_PACKAGE_HINT = (
    "the browser tests need Chromium: install Debian's package with `apt-get install chromium` "
    "(CI's .ci/run does this as root), then run the tests again"
)
CHROMIUM_FLAGS = [
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # this machine's closed network refuses those calls
    "--disable-component-update",
    "--disable-sync",
]
# JupyterLab settings for a test run: every cell rendered (no virtual scrolling, so every
# widget is on the page), no autosave, no news or update checks (no network here).
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


def find_chromium() -> str | None:
    """The Chromium binary on PATH (Debian installs /usr/bin/chromium), or None."""
    return shutil.which("chromium")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterLabServer:
    """JupyterLab serving a throw-away copy of the lessons; use as a context manager."""

    def __init__(
        self, quick: bool = True, notebooks: Path = NOTEBOOKS, env: dict | None = None
    ) -> None:
        self.quick, self.source, self.extra_env = quick, notebooks, dict(env or {})
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def lesson_url(self, name: str) -> str:
        return f"{self.url}/lab/tree/{name}?reset&token={self.token}"

    def __enter__(self) -> JupyterLabServer:
        self._tmp = tempfile.TemporaryDirectory(prefix="diffusion-edu-lab-")
        tmp = Path(self._tmp.name)
        self.root = tmp / "notebooks"
        shutil.copytree(self.source, self.root, ignore=shutil.ignore_patterns("runs", ".ipynb*"))
        settings = tmp / "settings"
        for name, values in LAB_SETTINGS.items():
            path = settings / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # the lab's own backend
        env.update(
            DIFFUSION_EDU_QUICK="1" if self.quick else "0",
            JUPYTERLAB_SETTINGS_DIR=str(settings),
            JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"),
            JUPYTER_CONFIG_DIR=str(tmp / "config"),
            JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
        )
        env.update(self.extra_env)
        command = [
            sys.executable, "-m", "jupyterlab", "--no-browser",
            "--ip=127.0.0.1", f"--port={self.port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
            "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: run all, read the model
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]  # fmt: skip
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-root")  # CI runs as root
        self.log = (tmp / "lab.log").open("w")
        self.process = subprocess.Popen(
            command, cwd=self.root, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        self._wait_until_up()
        return self

    def _wait_until_up(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited at start; its log:\n{self.read_log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/status?token={self.token}", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"JupyterLab did not answer in {timeout_s} s; log:\n{self.read_log()}")

    def read_log(self) -> str:
        self.log.flush()
        return (Path(self._tmp.name) / "lab.log").read_text()[-4000:]

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()
        self._tmp.cleanup()


def launch_chromium(playwright):  # -> playwright Browser
    path = find_chromium()
    if path is None:
        raise RuntimeError(CHROMIUM_PACKAGE_HINT)
    return playwright.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_FLAGS)


# --------------------------------------------------------------------------- the page
# Widget controls as ipywidgets 8 draws them, and how a person changes each kind.
CONTROL_SELECTORS = {
    "slider": ".widget-slider .noUi-target",
    "dropdown": ".widget-dropdown select",
    "toggle": ".widget-toggle-buttons",
    "play": ".widget-play",
    "checkbox": ".widget-checkbox input[type=checkbox]",
    "text": ".widget-text input, .widget-textarea textarea",
    "button": "button.jupyter-button:not(.widget-toggle-button):not(.widget-play button)",
}
_JS_NOTEBOOK = "window.jupyterapp.shell.currentWidget"


@dataclass
class Interaction:
    """One change made to one control, and what the lesson did in answer."""

    lesson: str
    cell: int  # index of the code cell among all cells
    kind: str
    label: str
    action: str
    changed: bool
    seconds: float | None  # change in the browser -> new figure (or text) on screen
    what_changed: str = ""


@dataclass
class LessonReport:
    lesson: str
    run_seconds: float = 0.0
    interactions: list[Interaction] = field(default_factory=list)


class LessonPage:
    """One lesson open in JupyterLab in a Chromium page."""

    def __init__(self, browser, server: JupyterLabServer, lesson: str) -> None:
        self.server, self.lesson = server, lesson
        self.page = browser.new_page(viewport={"width": 1366, "height": 900})
        self.console_errors: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))

    def close(self) -> None:
        self.page.close()

    # ----------------------------------------------------------------------- running
    def open(self, timeout_s: float = 180) -> None:
        self.page.goto(self.server.lesson_url(self.lesson), timeout=timeout_s * 1000)
        self.page.wait_for_function(
            f"""() => window.jupyterapp && {_JS_NOTEBOOK}
                && {_JS_NOTEBOOK}.context && {_JS_NOTEBOOK}.context.path.endsWith({self.lesson!r})
                && {_JS_NOTEBOOK}.sessionContext.isReady
                && {_JS_NOTEBOOK}.sessionContext.session.kernel.status === 'idle'""",
            timeout=timeout_s * 1000,
            polling=250,
        )

    def kernel_status(self) -> str:
        return self.page.evaluate(f"() => {_JS_NOTEBOOK}.sessionContext.session.kernel.status")

    def run_all(self, timeout_s: float = 900) -> float:
        """Run all cells (Run > Run All Cells) and wait until every code cell has run."""
        start = time.monotonic()
        self.page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
        self.page.wait_for_function(
            f"""() => {{
                const nb = {_JS_NOTEBOOK};
                const cells = nb.content.widgets.filter(c => c.model.type === 'code');
                const done = cells.every(c => c.model.executionCount !== null
                    && !c.node.querySelector('.jp-InputArea-prompt').textContent.includes('*'));
                return done && nb.sessionContext.session.kernel.status === 'idle';
            }}""",
            timeout=timeout_s * 1000,
            polling=500,
        )
        self.wait_for_widgets()
        return time.monotonic() - start

    def wait_for_widgets(self, timeout_s: float = 60) -> None:
        """Wait until no widget placeholder says it is still loading."""
        self.page.wait_for_function(
            "() => !document.body.innerText.includes('Loading widget...')",
            timeout=timeout_s * 1000,
            polling=250,
        )

    def wait_idle(self, timeout_s: float = 300) -> None:
        self.page.wait_for_function(
            f"() => {_JS_NOTEBOOK}.sessionContext.session.kernel.status === 'idle'",
            timeout=timeout_s * 1000,
            polling=100,
        )

    # ----------------------------------------------------------------------- reading
    def cells(self) -> list[dict]:
        """Each cell: index, type, source, and its outputs as the notebook model holds them."""
        return self.page.evaluate(
            f"""() => {_JS_NOTEBOOK}.content.widgets.map((c, i) => ({{
                index: i, type: c.model.type, source: c.model.sharedModel.getSource(),
                outputs: c.model.type === 'code' ? c.model.outputs.toJSON() : [],
            }}))"""
        )

    def page_text(self) -> str:
        return self.page.inner_text(".jp-NotebookPanel")

    def cell_locator(self, index: int):
        return self.page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").nth(index)

    def figure_counts(self) -> dict[int, int]:
        """Images drawn in each cell's output area (figures and widget pictures)."""
        return self.page.evaluate(
            """() => Object.fromEntries([...document.querySelectorAll(
                    '.jp-NotebookPanel .jp-Notebook .jp-Cell')].map((c, i) =>
                    [i, c.querySelectorAll('.jp-Cell-outputArea img').length]))"""
        )

    def image_scales(self) -> list[dict]:
        """Every picture in the outputs: its cell, its own width and the width it is shown at."""
        return self.page.evaluate(
            """() => [...document.querySelectorAll('.jp-NotebookPanel .jp-Notebook .jp-Cell')]
                .flatMap((c, i) => [...c.querySelectorAll('.jp-Cell-outputArea img')]
                    .filter(img => img.naturalWidth > 0 && img.offsetParent)
                    .map(img => ({cell: i, natural: img.naturalWidth, shown: img.clientWidth})))"""
        )

    def screenshot_outputs(self, folder: Path) -> list[Path]:
        """A PNG of every cell output that shows a figure or a widget, in ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        saved = []
        cells = self.page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell")
        for i in range(cells.count()):
            area = cells.nth(i).locator(".jp-Cell-outputArea")
            if not area.count():
                continue
            has_picture = area.locator("img, .jupyter-widgets, video, .animation").count()
            if not has_picture:
                continue
            area.scroll_into_view_if_needed()
            path = folder / f"{Path(self.lesson).stem}_cell{i:02d}.png"
            area.screenshot(path=str(path))
            saved.append(path)
        return saved

    # ----------------------------------------------------------------------- widgets
    def controls(self) -> list[dict]:
        """Every visible widget control on the page: kind, cell index, label, a unique id."""
        selectors = json.dumps(CONTROL_SELECTORS)
        return self.page.evaluate(
            f"""() => {{
                const kinds = {selectors};
                const cells = [...document.querySelectorAll(
                    '.jp-NotebookPanel .jp-Notebook .jp-Cell')];
                const found = [];
                for (const [kind, sel] of Object.entries(kinds)) {{
                    for (const el of document.querySelectorAll(
                            '.jp-NotebookPanel .jp-Cell-outputArea ' + sel.split(', ').join(
                            ', .jp-NotebookPanel .jp-Cell-outputArea '))) {{
                        if (!el.offsetParent || el.closest('.widget-play') && kind !== 'play')
                            continue;  // hidden, or a button that belongs to a play widget
                        if (!el.dataset.testId)
                            el.dataset.testId = 'w' + Math.random().toString(36).slice(2);
                        const box = el.closest('.widget-inline-hbox, .widget-checkbox, '
                                               + '.jupyter-widgets') || el;
                        const clean = (t) => (t || '').replace(/[\\u200b\\s]+/g, ' ').trim();
                        const labelEl = box.querySelector('.widget-label');
                        const label = clean(labelEl && labelEl.textContent)
                            || clean(box.textContent) || el.getAttribute('title') || kind;
                        const options = kind === 'toggle'
                            ? el.querySelectorAll('button').length : 2;
                        const cell = cells.findIndex(c => c.contains(el));
                        found.push({{kind, id: el.dataset.testId, label, cell, options}});
                    }}
                }}
                return found;
            }}"""
        )

    def _cell_signature_js(self) -> str:
        # What a control's change can show: the cell's pictures (src) and the texts of its
        # non-control widgets (status lines, HTML), never a control's own read-out.
        return """(cellIndex) => {
            const cell = [...document.querySelectorAll(
                '.jp-NotebookPanel .jp-Notebook .jp-Cell')][cellIndex];
            const area = cell.querySelector('.jp-Cell-outputArea');
            const imgs = [...area.querySelectorAll('img')].map(i => i.src);
            const texts = [...area.querySelectorAll('div.widget-label, .widget-html-content')]
                .filter(e => e.tagName !== 'LABEL')  // a Label widget, not a control's name
                .map(e => e.textContent.trim())
                .map(t => (/^(drawing|preparing)/.test(t) ? '' : t));  // progress: no answer
            return JSON.stringify({imgs, texts});
        }"""

    def signature(self, cell: int) -> dict:
        return json.loads(self.page.evaluate(self._cell_signature_js(), cell))

    def _arm_timer(self, cell: int) -> None:
        """Start watching ``cell``: the time of the first change to its pictures or texts."""
        self.page.evaluate(
            """([cellIndex, sigSource]) => {
                const sig = eval(sigSource);
                const cell = [...document.querySelectorAll(
                    '.jp-NotebookPanel .jp-Notebook .jp-Cell')][cellIndex];
                const before = sig(cellIndex);
                window.__changedAt = null;
                window.__watch && window.__watch.disconnect();
                window.__watch = new MutationObserver(() => {
                    if (window.__changedAt === null && sig(cellIndex) !== before)
                        window.__changedAt = performance.now();
                });
                window.__watch.observe(cell, {subtree: true, childList: true,
                                              attributes: true, characterData: true});
                // The clock starts at the person's input in the page (not when the test
                // process asked for it): the first pointer, key or change event from now on.
                window.__armedAt = performance.now();
                window.__startedAt = null;
                const start = () => {
                    if (window.__startedAt === null) window.__startedAt = performance.now();
                };
                for (const type of ['pointerdown', 'mousedown', 'keydown', 'change', 'input'])
                    document.addEventListener(type, start, {capture: true, once: true});
            }""",
            [cell, self._cell_signature_js()],
        )

    def _elapsed(self) -> float | None:
        t = self.page.evaluate(
            """() => window.__changedAt === null ? null
                : window.__changedAt - (window.__startedAt ?? window.__armedAt)"""
        )
        return None if t is None else t / 1000.0

    def interact(self, control: dict, timeout_s: float = 120, turn: int = 0) -> Interaction:
        """Change ``control`` as a person would; wait for the cell to answer; time the answer.

        ``turn`` picks a different target each time (so repeated calls keep changing it).
        """
        el = self.page.locator(f"[data-test-id='{control['id']}']")
        el.scroll_into_view_if_needed()
        self.wait_idle()
        before = self.signature(control["cell"])
        self._arm_timer(control["cell"])
        kind = control["kind"]
        if kind == "slider":
            box, handle = el.bounding_box(), el.locator(".noUi-handle").bounding_box()
            at = (handle["x"] + handle["width"] / 2 - box["x"]) / box["width"]
            x = (0.8, 0.65, 0.9)[turn % 3] if at < 0.5 else (0.2, 0.35, 0.1)[turn % 3]
            el.click(position={"x": box["width"] * x, "y": box["height"] / 2})
            action = f"clicked the track at {x:.0%}"
        elif kind == "dropdown":
            options = el.locator("option").all_inner_texts()
            current = el.evaluate("e => e.options[e.selectedIndex].text")
            choices = [o for o in options if o != current]
            target = choices[turn % len(choices)]
            el.select_option(label=target)
            action = f"chose {target!r}"
        elif kind == "toggle":
            buttons = el.locator("button")
            unselected = [
                i for i in range(buttons.count())
                if "mod-active" not in (buttons.nth(i).get_attribute("class") or "")
            ]  # fmt: skip
            button = buttons.nth(unselected[turn % len(unselected)])
            action = f"pressed {button.inner_text().strip()!r}"
            button.click()
        elif kind == "play":
            el.locator("button").first.click()
            action = "pressed play"
        elif kind == "checkbox":
            el.click()
            action = "ticked" if el.is_checked() else "unticked"
        elif kind == "text":
            el.fill(el.input_value() + (" x" if turn % 2 == 0 else ""))
            el.press("Enter")
            action = "typed and pressed Enter"
        else:
            el.click()
            action = "clicked"
        deadline = time.monotonic() + timeout_s
        while self._elapsed() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        seconds = self._elapsed()
        if kind == "play":  # let it run to its end (or stop it), then look at the last frame
            self.page.wait_for_timeout(1500)
            stop = el.locator("button").nth(1)  # pause
            if stop.count():
                stop.click()
        self.wait_idle(timeout_s)
        self.page.wait_for_function(
            "() => !/drawing\\.\\.\\.|preparing the animation/.test(document.body.innerText)",
            timeout=timeout_s * 1000,
        )
        after = self.signature(control["cell"])
        what = []
        if after["imgs"] != before["imgs"]:
            what.append("figure")
        if after["texts"] != before["texts"]:
            what.append("text")
        return Interaction(
            lesson=self.lesson, cell=control["cell"], kind=kind, label=control["label"],
            action=action, changed=bool(what), seconds=seconds, what_changed="+".join(what),
        )  # fmt: skip


def play_frames_per_second(page: LessonPage, control: dict, seconds: float = 3.0) -> float:
    """Press a play button whose frames are already drawn; count new pictures per second."""
    el = page.page.locator(f"[data-test-id='{control['id']}']")
    el.scroll_into_view_if_needed()
    page.wait_idle()
    page.page.evaluate(
        """(cellIndex) => {
            const cell = [...document.querySelectorAll(
                '.jp-NotebookPanel .jp-Notebook .jp-Cell')][cellIndex];
            window.__frames = 0;
            window.__frameWatch && window.__frameWatch.disconnect();
            window.__frameWatch = new MutationObserver((records) => {
                for (const r of records)
                    if (r.target.tagName === 'IMG' && r.attributeName === 'src') window.__frames++;
            });
            window.__frameWatch.observe(cell, {subtree: true, attributes: true});
        }""",
        control["cell"],
    )
    buttons = el.locator("button")
    buttons.nth(2 if buttons.count() > 2 else 1).click()  # stop: back to the start
    page.page.evaluate("() => { window.__frames = 0; }")
    buttons.first.click()  # play
    page.page.wait_for_timeout(seconds * 1000)
    frames = page.page.evaluate("() => window.__frames")
    buttons.nth(1).click()  # pause
    page.wait_idle()
    return frames / seconds


def changes_for(control: dict) -> int:
    """How many changes cover a control: every option of a toggle (each can show other
    controls, e.g. a schedule's own parameters), one change of anything else."""
    return max(1, control.get("options", 2) - 1) if control["kind"] == "toggle" else 1


def exercise_every_control(
    page: LessonPage, repeats: int = 1, timeout_s: float = 120
) -> list[tuple[dict, list[Interaction]]]:
    """Change every widget control of the page: each ``max(repeats, changes_for(c))`` times.

    A change can show controls that were hidden (a toggle picks a schedule with its own
    parameter): those are exercised right then, while they are visible. Returns each control
    with its interactions, in the order they were made.
    """
    # (cell, kind, label) names a control: its box can draw it anew (a new DOM element)
    known: set[tuple] = set()
    results: list[tuple[dict, list[Interaction]]] = []

    def key(control: dict) -> tuple:
        return (control["cell"], control["kind"], control["label"])

    def exercise(control: dict) -> None:
        made: list[Interaction] = []
        results.append((control, made))
        for turn in range(max(repeats, changes_for(control))):
            current = [c for c in page.controls() if key(c) == key(control)]
            if not current:  # hidden meanwhile by another control's change
                break
            made.append(page.interact(current[0], timeout_s=timeout_s, turn=turn))
            page.page.wait_for_timeout(300)  # let the page apply what came with the change
            shown = [c for c in page.controls() if key(c) not in known]  # revealed just now
            known.update(key(c) for c in shown)
            for new in shown:
                exercise(new)

    first = page.controls()
    known.update(key(c) for c in first)
    for control in first:
        exercise(control)
    return results


def median_or_none(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None
