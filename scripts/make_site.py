"""Build the course as a static website: every lesson executed in quick mode, as HTML, in site/.

    make site                                        # = .venv/bin/python scripts/make_site.py
    .venv/bin/python scripts/make_site.py --lessons 00 03 --out /tmp/site
    python -m http.server -d site 8000               # then open http://127.0.0.1:8000/

Each lesson is run top to bottom with nbclient (what ``jupyter nbconvert --execute`` uses), with
``DIFFUSION_EDU_QUICK=1``: the short training runs and the shipped weights, so the whole course
builds in minutes on a laptop CPU. Then nbconvert's ``lab`` template renders it with its outputs:
figures as embedded PNGs, animations as matplotlib's JavaScript players (they play in the page).

Widgets (sliders, dropdowns, play buttons) need a running kernel to move. The page shows each
one as it was when the lesson ran: its picture, its controls at their values (greyed out), with
a note at the top of every page; nothing is loaded from the internet for them. Maths is
typeset by MathJax from its CDN (nbconvert's default); offline it shows as TeX.

``site/index.html`` lists every lesson in course order with its title, its **Goal** and its
**Time** (from the lesson's first cell); each page links to the previous and next lesson.
With ``--lessons`` only those are built; the index still lists every lesson, linking those
that have a page.
"""

from __future__ import annotations

import argparse
import html
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbclient
import nbformat
from nbconvert import HTMLExporter
from nbconvert.filters.markdown_mistune import markdown2html_mistune

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
CELL_TIMEOUT_S = 600  # as tests/test_notebooks.py: a hang fails with the cell named
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_NOTE = (
    "This page is the lesson as it ran (in quick mode: shorter training runs, the shipped "
    "weights). Figures and animations are all here, and the animations play. "
    "<b>Widgets (sliders, dropdowns, play buttons) are shown as they were when the lesson ran: "
    "they move only when you run the lesson in JupyterLab</b> (see the course README)."
)


# ----------------------------------------------------------------------------- lessons
@dataclass(frozen=True)
class Lesson:
    """One lesson as the index lists it, from its notebook's first (markdown) cell."""

    number: str  # "03"
    path: Path
    title: str  # "The forward process as a Markov chain"
    goal: str  # markdown, without the "**Goal:**" label
    time: str  # markdown, the first sentence after "**Time:**"

    @property
    def page(self) -> str:
        return self.path.stem + ".html"


_TITLE = re.compile(r"^#\s+(.+)$", re.M)
_GOAL = re.compile(r"\*\*Goal[^*]*\*\*\s*(.+?)(?=\*\*Time\b|\n\s*\n|\Z)", re.S)
_TIME = re.compile(r"\*\*Time[:.]?\*\*:?\s*(.+?)(?=\n\s*\n|\Z)", re.S)
_FIRST_SENTENCE = re.compile(r"^(.+?[.!?])(?=\s+[A-Z(*]|\s*\Z)", re.S)


def read_lesson(path: Path) -> Lesson:
    """Parse the title, goal and time from a lesson's first cell; a clear error if missing."""
    notebook = nbformat.read(path, as_version=4)
    first = notebook.cells[0] if notebook.cells else None
    if first is None or first.cell_type != "markdown":
        raise ValueError(f"{path.name}: the first cell must be markdown with the title and goal")
    text = first.source
    title, goal, when = _TITLE.search(text), _GOAL.search(text), _TIME.search(text)
    missing = [n for n, m in (("# title", title), ("**Goal**", goal), ("**Time**", when)) if not m]
    if missing:
        raise ValueError(f"{path.name}: the first cell has no {', '.join(missing)}")
    number = path.name[:2]
    title_text = re.sub(rf"^{number}\s*[·:.-]\s*", "", title.group(1).strip())
    time_text = " ".join(when.group(1).split())
    sentence = _FIRST_SENTENCE.match(time_text)
    return Lesson(
        number=number,
        path=path,
        title=title_text,
        goal=" ".join(goal.group(1).split()),
        time=sentence.group(1) if sentence else time_text,
    )


def all_lessons(folder: Path = NOTEBOOKS) -> list[Lesson]:
    return [read_lesson(p) for p in sorted(folder.glob("[0-9][0-9]_*.ipynb"))]


# ----------------------------------------------------------------------------- executing
def execute(notebook: nbformat.NotebookNode, folder: Path) -> None:
    """Run every cell in quick mode, in ``folder``, keeping the widgets' state for the page."""
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # the kernel's inline one
    env["DIFFUSION_EDU_QUICK"] = "1"
    client = nbclient.NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(folder)}},
        store_widget_state=True,
    )
    client.execute(env=env)


def check_executed(notebook: nbformat.NotebookNode, name: str) -> None:
    """Refuse a lesson whose run went wrong, naming the cell: an error output, a traceback
    printed on stderr, or a widget shown without its saved state (the page could not draw it).

    ``make site`` runs this on every lesson, so building the site checks that each one
    executes under nbclient; the test run checks a few lessons the same way
    (tests/test_notebooks.py).
    """
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    if not all(c.get("execution_count") for c in code_cells):
        raise RuntimeError(f"{name}: a code cell did not run.")
    for cell in code_cells:
        where = f"{name}, the cell starting {cell.source[:200]!r}"
        for out in cell.outputs:
            if out.output_type == "error":
                raise RuntimeError(f"{out.ename}: {out.evalue} in {where}.")
            if out.output_type == "stream" and out.name == "stderr" and "Traceback" in out.text:
                raise RuntimeError(f"a traceback on stderr in {where}:\n{out.text[:800]}")
    saved = notebook.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    shown = [
        out.data[WIDGET_VIEW]["model_id"]
        for cell in code_cells
        for out in cell.outputs
        if WIDGET_VIEW in out.get("data", {})
    ]
    missing = [model_id for model_id in shown if model_id not in saved]
    if missing:
        raise RuntimeError(
            f"{name}: {len(missing)} shown widget(s) have no saved state (run with "
            "store_widget_state=True; a widget closed before the run ended is not saved)."
        )


# ----------------------------------------------------------------------------- widgets, static
def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _readout(state: dict, value: object) -> str:
    fmt = state.get("readout_format")
    if fmt and isinstance(value, (int, float)):
        try:
            return format(value, fmt)
        except ValueError:
            pass
    return str(value)


def _slider_text(state: dict) -> str:
    if "_options_labels" in state:  # SelectionSlider
        return str(state["_options_labels"][state.get("index", 0)])
    return _readout(state, state.get("value"))


def _range_input(name: str, state: dict) -> str:
    """A greyed-out ``<input type=range>`` with its thumb where the slider's was."""
    if "_options_labels" in state:  # SelectionSlider: positions are the options' indices
        low, high, value = 0, max(len(state["_options_labels"]) - 1, 0), state.get("index", 0)
    else:
        low, high, value = state.get("min", 0), state.get("max", 100), state.get("value", 0)
        if name == "FloatLogSliderModel" and isinstance(value, (int, float)) and value > 0:
            value = round(math.log(value, state.get("base", 10.0)), 9)  # min, max: exponents
    if not all(isinstance(v, (int, float)) for v in (low, high, value)):
        return '<input type="range" disabled>'  # a range slider: (low, high) pairs
    return f'<input type="range" disabled min="{low}" max="{high}" step="any" value="{value}">'


class StaticWidgets:
    """Draw ipywidgets from a notebook's saved widget state as plain HTML (no JavaScript).

    The state is what nbclient saves with ``store_widget_state=True``: model id -> the
    model's name, its traits, and binary buffers (an Image's PNG) in base64.
    """

    def __init__(self, saved: dict) -> None:
        self.models: dict[str, dict] = saved.get("state", {})

    def _model(self, ref: str) -> dict | None:
        return self.models.get(ref.removeprefix("IPY_MODEL_"))

    def render(self, model_id: str) -> str:
        return f'<div class="de-widget">{self._render(model_id, depth=0)}</div>'

    def _render(self, model_id: str, depth: int) -> str:
        model = self._model(model_id)
        if model is None or depth > 20:
            return '<span class="de-widget-missing">(a widget: run the lesson to see it)</span>'
        name, state = model.get("model_name", ""), model.get("state", {})
        label = state.get("description") or ""
        label_html = f'<span class="de-label">{_esc(label)}</span>' if label else ""
        if name in ("VBoxModel", "HBoxModel", "BoxModel", "GridBoxModel"):
            direction = "row" if name == "HBoxModel" else "column"
            children = "".join(self._render(c, depth + 1) for c in state.get("children", []))
            return f'<div class="de-box" style="flex-direction:{direction}">{children}</div>'
        if name == "ImageModel":
            data = next(
                (b["data"] for b in model.get("buffers", []) if b.get("path") == ["value"]), ""
            )
            if not data:
                return ""
            width = f' width="{_esc(state["width"])}"' if state.get("width") else ""
            mime = "svg+xml" if state.get("format") == "svg" else state.get("format", "png")
            return f'<img class="de-image" src="data:image/{mime};base64,{data}"{width} alt="">'
        if name in ("HTMLModel", "HTMLMathModel"):
            return f'<div class="de-html">{label_html}{state.get("value", "")}</div>'
        if name == "LabelModel":
            return f'<span class="de-text">{_esc(state.get("value", ""))}</span>'
        if name.endswith("SliderModel") or name in ("PlayModel",):
            if name == "PlayModel":
                return '<button class="de-control" disabled title="in JupyterLab">&#9654;</button>'
            return (
                f'<span class="de-control de-slider">{label_html}{_range_input(name, state)} '
                f'<span class="de-value">{_esc(_slider_text(state))}</span></span>'
            )
        if name in ("DropdownModel", "SelectModel", "RadioButtonsModel", "ToggleButtonsModel"):
            options = state.get("_options_labels", [])
            index = state.get("index")
            items = "".join(
                f"<option{' selected' if i == index else ''}>{_esc(o)}</option>"
                for i, o in enumerate(options)
            )
            return f'<span class="de-control">{label_html}<select disabled>{items}</select></span>'
        if name == "CheckboxModel":
            checked = " checked" if state.get("value") else ""
            return (
                f'<label class="de-control"><input type="checkbox" disabled{checked}> '
                f"{_esc(label)}</label>"
            )
        if name in ("TextModel", "TextareaModel", "IntTextModel", "FloatTextModel"):
            return (
                f'<span class="de-control">{label_html}'
                f'<input type="text" disabled value="{_esc(state.get("value", ""))}"></span>'
            )
        if name in ("FloatProgressModel", "IntProgressModel"):  # tqdm.auto's bars
            low, high = state.get("min", 0), state.get("max", 100)
            done = state.get("value", 0) - low
            return f'<progress class="de-control" max="{high - low}" value="{done}"></progress>'
        if name == "ButtonModel":
            return f'<button class="de-control" disabled>{_esc(label or "button")}</button>'
        if name == "OutputModel":
            return "".join(self._output_html(o) for o in state.get("outputs", []))
        return f'<span class="de-widget-missing">({_esc(name.removesuffix("Model"))})</span>'

    @staticmethod
    def _output_html(output: dict) -> str:
        data = output.get("data", {})
        if "image/png" in data:
            return f'<img class="de-image" src="data:image/png;base64,{data["image/png"]}" alt="">'
        text = output.get("text") or data.get("text/plain", "")
        return f"<pre>{_esc(''.join(text))}</pre>" if text else ""


def freeze_widgets(notebook: nbformat.NotebookNode) -> int:
    """Replace every widget output by static HTML of its saved state; returns how many.

    The widget state is then dropped from the metadata, so nbconvert does not add its widget
    script (which loads the widget manager from a CDN).
    """
    saved = notebook.metadata.get("widgets", {}).get(WIDGET_STATE, {})
    drawer = StaticWidgets(saved)
    count = 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                continue
            output["data"] = {"text/html": drawer.render(view["model_id"])}
            count += 1
    notebook.metadata.pop("widgets", None)
    return count


# ----------------------------------------------------------------------------- pages
STYLE = """
<style type="text/css">
.de-nav { display: flex; justify-content: space-between; gap: 1em; max-width: 1100px;
  margin: 0.5em auto; padding: 0.5em 1em; font-family: var(--jp-ui-font-family, sans-serif); }
.de-note { max-width: 1100px; margin: 0.5em auto; padding: 0.6em 1em; background: #fff8e1;
  border-left: 4px solid #f0a500; font-family: var(--jp-ui-font-family, sans-serif); }
.de-widget { border: 1px dashed #bbb; padding: 4px; }
.de-widget::before { content: "widget snapshot: it moves when the lesson runs in JupyterLab";
  display: block; color: #777; font-size: 85%; }
.de-box { display: flex; flex-wrap: wrap; gap: 4px 12px; }
.de-control { display: inline-flex; align-items: center; gap: 6px; margin: 2px 0; }
.de-label { color: #444; }
.de-image { max-width: 100%; height: auto; }
</style>
"""


def _link(lesson: Lesson | None, kind: str) -> str:
    if lesson is None:
        return "<span></span>"
    name = f"{lesson.number} {_esc(lesson.title)}"
    text = f"&larr; {name}" if kind == "prev" else f"{name} &rarr;"
    return f'<a class="de-{kind}" href="{lesson.page}">{text}</a>'


def _nav(previous: Lesson | None, following: Lesson | None) -> str:
    left, right = _link(previous, "prev"), _link(following, "next")
    return (
        f'<nav class="de-nav">{left}<a class="de-index" href="index.html">All lessons</a>'
        f"{right}</nav>"
    )


def render_page(
    notebook: nbformat.NotebookNode,
    lesson: Lesson,
    previous: Lesson | None,
    following: Lesson | None,
    built: set[str],
) -> str:
    """The lesson's HTML page: nbconvert's lab template, plus navigation and the widget note."""
    exporter = HTMLExporter(template_name="lab", embed_images=True)
    resources = {"metadata": {"name": f"{lesson.number} · {lesson.title}", "path": str(NOTEBOOKS)}}
    body, _ = exporter.from_notebook_node(notebook, resources=resources)
    # require.js (from a CDN) serves widgets and old extensions; nothing on these pages uses it.
    body = body.replace(f'<script src="{exporter.require_js_url}"></script>', "")
    # Links to the course's docs (the Thai glossary) point to their pages, made by render_docs.
    body = re.sub(r'href="\.\./docs/([\w.-]+)\.md(#[^"]*)?"', r'href="docs/\1.html\2"', body)
    # The course map's links to other lessons point to their pages (when built).
    body = re.sub(
        r'href="(\d\d_[\w-]+)\.ipynb(#[^"]*)?"',
        lambda m: (
            f'href="{m.group(1)}.html{m.group(2) or ""}"' if m.group(1) in built else m.group(0)
        ),
        body,
    )
    nav = _nav(previous, following)
    top = f'{nav}<div class="de-note" id="widget-note">{WIDGET_NOTE}</div>'
    body = body.replace("</head>", STYLE + "</head>", 1)
    body = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + top, body, count=1)
    return body.replace("</body>", nav + "</body>", 1)


def linked_docs(pages: list[str]) -> set[str]:
    """The docs/*.md files the pages link to (after render_page's rewrite), by name."""
    return {name for page in pages for name in re.findall(r'href="docs/([\w.-]+)\.html', page)}


def render_docs(names: set[str], out: Path) -> None:
    """Each linked doc (e.g. the Thai glossary) as a plain HTML page in ``out/docs``."""
    for name in sorted(names):
        source = ROOT / "docs" / f"{name}.md"
        if not source.is_file():
            continue
        text = markdown2html_mistune(source.read_text(encoding="utf-8"))
        # its links to the lessons point to their pages (one folder up from docs/)
        text = re.sub(r'href="\.\./notebooks/(\d\d_[\w-]+)\.ipynb', r'href="../\1.html', text)
        (out / "docs").mkdir(exist_ok=True)
        (out / "docs" / f"{name}.html").write_text(
            f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>{_esc(name)}</title>
<style>body {{ font-family: system-ui, sans-serif; max-width: 60em; margin: 2em auto;
padding: 0 1em; line-height: 1.5; }} table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 0.2em 0.5em; vertical-align: top; }}</style>
</head><body><p><a href="../index.html">All lessons</a></p>{text}</body></html>
""",
            encoding="utf-8",
        )


def _inline_markdown(text: str) -> str:
    """One paragraph of markdown as HTML without its ``<p>`` (maths is left to MathJax)."""
    return re.sub(r"^<p>(.*)</p>$", r"\1", markdown2html_mistune(text).strip(), flags=re.S)


def render_index(lessons: list[Lesson], built: set[str], mathjax_url: str) -> str:
    """index.html: every lesson in course order with its title, goal and time."""
    items = []
    for lesson in lessons:
        name = f"{lesson.number} · {_esc(lesson.title)}"
        heading = (
            f'<a href="{lesson.page}">{name}</a>'
            if lesson.path.stem in built
            else f'{name} <span class="unbuilt">(no page in this build)</span>'
        )
        goal, time_ = _inline_markdown(lesson.goal), _inline_markdown(lesson.time)
        items.append(
            f'<li class="lesson" data-lesson="{lesson.number}"><h2>{heading}</h2>'
            f'<p class="goal"><b>Goal.</b> {goal}</p><p class="time"><b>Time:</b> {time_}</p></li>'
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>diffusion_edu: the lessons</title>
<style type="text/css">
body {{ font-family: system-ui, sans-serif; max-width: 60em; margin: 2em auto; padding: 0 1em;
  line-height: 1.5; color: #222; }}
ol.lessons {{ list-style: none; padding: 0; }}
li.lesson {{ border-top: 1px solid #ddd; padding: 0.5em 0; }}
li.lesson h2 {{ font-size: 1.2em; margin: 0.3em 0; }}
.unbuilt {{ color: #888; font-weight: normal; font-size: 80%; }}
.note {{ background: #fff8e1; border-left: 4px solid #f0a500; padding: 0.6em 1em; }}
</style>
<script src="{mathjax_url}"></script>
<script type="text/x-mathjax-config">
if (window.MathJax) {{ MathJax.Hub.Config({{tex2jax: {{inlineMath: [['$','$'], ['\\\\(','\\\\)']],
  processEscapes: true}}, messageStyle: 'none'}}); }}
</script>
</head><body>
<h1>diffusion_edu: how diffusion models work</h1>
<p>From an ink drop spreading in water to a neural network that draws handwritten digits. Each
page below is a lesson as it ran in quick mode (shorter training runs, the shipped weights), with
all its figures and animations. To run the lessons yourself, see the course's README
(<code>make lab</code>). Thai readers: <a href="docs/glossary-th.html">อภิธานศัพท์ภาษาไทย</a>
(the course's Thai terms, with their English terms and the lesson that teaches each).</p>
<p class="note" id="widget-note">Widgets (sliders, dropdowns, play buttons) are shown as they
were when the lesson ran: they move only when you run the lesson in JupyterLab.</p>
<ol class="lessons">
{chr(10).join(items)}
</ol>
</body></html>
"""


# ----------------------------------------------------------------------------- main
def select(lessons: list[Lesson], wanted: list[str] | None) -> list[Lesson]:
    if not wanted:
        return lessons
    by_number = {lesson.number: lesson for lesson in lessons}
    unknown = [w for w in wanted if w.zfill(2) not in by_number]
    if unknown:
        raise ValueError(f"no lesson numbered {unknown}; there are {sorted(by_number)}")
    return [lesson for lesson in lessons if lesson.number in {w.zfill(2) for w in wanted}]


def build_site(out: Path, wanted: list[str] | None = None, run: bool = True) -> dict[str, float]:
    """Build the pages of ``wanted`` lessons (all by default) and the index into ``out``.

    Returns the seconds each lesson took (execution and rendering).
    """
    lessons = all_lessons()
    chosen = select(lessons, wanted)
    built = {lesson.path.stem for lesson in chosen}
    out.mkdir(parents=True, exist_ok=True)
    seconds, pages = {}, []
    for i, lesson in enumerate(chosen):
        start = time.perf_counter()
        print(f"[{i + 1}/{len(chosen)}] {lesson.path.name}: ", end="", flush=True)
        notebook = nbformat.read(lesson.path, as_version=4)
        if run:
            execute(notebook, lesson.path.parent)
            check_executed(notebook, lesson.path.name)
        n_widgets = freeze_widgets(notebook)
        previous = chosen[i - 1] if i > 0 else None
        following = chosen[i + 1] if i + 1 < len(chosen) else None
        page = render_page(notebook, lesson, previous, following, built)
        (out / lesson.page).write_text(page, encoding="utf-8")
        pages.append(page)
        seconds[lesson.number] = time.perf_counter() - start
        print(f"{seconds[lesson.number]:.0f} s, {n_widgets} widgets, {len(page) / 1e6:.1f} MB")
    index = render_index(lessons, built, HTMLExporter().mathjax_url)
    (out / "index.html").write_text(index, encoding="utf-8")
    render_docs(linked_docs(pages) | {"glossary-th"}, out)
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lessons", nargs="+", metavar="NN", help="only these, e.g. 00 03")
    parser.add_argument("--out", type=Path, default=Path("site"), help="folder (default site/)")
    parser.add_argument(
        "--no-execute", dest="run", action="store_false",
        help="render the notebooks as they are (committed without outputs: text and code only)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        lessons = select(all_lessons(), args.lessons)
    except ValueError as err:
        parser.error(str(err))
    start = time.perf_counter()
    seconds = build_site(args.out, [lesson.number for lesson in lessons], run=args.run)
    total = time.perf_counter() - start
    size = sum(p.stat().st_size for p in args.out.glob("*.html")) / 1e6
    print(f"site: {args.out}/index.html, {len(seconds)} lessons, {size:.1f} MB, {total:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
