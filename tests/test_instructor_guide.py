"""The instructor guide, docs/instructor-guide.md (issue 15, item 1).

It must link every lesson, hold two workshop plans whose minutes fit their length, quote each
lesson's reading time (and any run time in seconds) from the lesson's own Time line, answer every
predict-then-check cell and every "things to try" prompt of the lessons, give discussion questions
for every lesson, quote the same version pins as pyproject.toml, and link only files that exist.
"""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "instructor-guide.md"
NOTEBOOKS = ROOT / "notebooks"
LESSONS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
LESSON_IDS = [p.stem for p in LESSONS]

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

LINK = re.compile(r"\]\(([^)\s]+)\)")
# A predict-then-check cell: a line such as `my_ratio = ...  # predict: ...`.
PREDICTION = re.compile(r"^\s*([A-Za-z_]\w*)\s*=\s*\.\.\.\s*#", re.M)
READING_TIME = re.compile(r"\*\*Time:\*\*\s*(?:about\s+)?(\d+)\s+minutes")
SECONDS = re.compile(r"\b(\d+) s\b")
PLANS = [("90-minute workshop plan", 90), ("3-hour workshop plan", 180)]


def _guide() -> str:
    assert GUIDE.is_file(), f"{GUIDE.relative_to(ROOT)} is missing"
    return GUIDE.read_text(encoding="utf-8")


def _section(text: str, heading: str) -> str:
    """The text under the first heading that starts with ``heading`` (e.g. "## 4."), up to the
    next heading of the same or a higher level."""
    level = len(heading) - len(heading.lstrip("#"))
    match = re.search(rf"^{re.escape(heading)}.*$", text, re.M)
    assert match, f"the guide has no heading starting with {heading!r}"
    rest = text[match.end() :]
    following = re.search(rf"^#{{1,{level}}} ", rest, re.M)
    return rest[: following.start()] if following else rest


def _lesson_subsections(part: str) -> dict[str, str]:
    """``### NN · ...`` subsections of one part of the guide, keyed by the lesson number NN."""
    pieces = re.split(r"^### ", part, flags=re.M)[1:]
    return {m.group(1): piece for piece in pieces if (m := re.match(r"(\d\d) ", piece))}


def _table_rows(markdown: str) -> list[list[str]]:
    """The cells of every table row in ``markdown``, without the header separators."""
    rows = []
    for line in markdown.splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if all(re.fullmatch(r":?-{1,}:?", c) for c in cells):
            continue
        rows.append(cells)
    return rows


def _cells(notebook: Path) -> list[dict]:
    return json.loads(notebook.read_text(encoding="utf-8"))["cells"]


def _time_paragraph(notebook: Path) -> str:
    """The paragraph of the lesson's first markdown cell that holds its **Time:** line."""
    first = next(c for c in _cells(notebook) if c["cell_type"] == "markdown")
    text = "".join(first["source"])
    paragraph = next((p for p in text.split("\n\n") if "**Time:**" in p), None)
    assert paragraph, f"{notebook.name}: no **Time:** line in its first markdown cell"
    return paragraph


def _lesson_number(notebook: Path) -> str:
    return notebook.name[:2]


# ----------------------------------------------------------------------------- links
def test_the_guide_exists_and_covers_its_sections() -> None:
    text = _guide()
    for heading in ("## 0.", "## 1.", "## 2.", "## 3.", "## 4.", "## 5.", "## 6."):
        assert _section(text, heading).strip(), f"section {heading} is empty"


@pytest.mark.parametrize("notebook", LESSONS, ids=LESSON_IDS)
def test_every_lesson_is_linked(notebook: Path) -> None:
    link = f"../notebooks/{notebook.name}"
    assert f"]({link})" in _guide(), f"the guide does not link {link}"
    assert (GUIDE.parent / link).resolve() == notebook.resolve()


def test_every_link_points_to_a_file_that_exists() -> None:
    links = LINK.findall(_guide())
    local = [link.split("#")[0] for link in links if not re.match(r"[a-z]+:", link)]
    assert len(local) >= len(LESSONS), "the guide links too few files"
    broken = sorted({link for link in local if link and not (GUIDE.parent / link).exists()})
    assert not broken, f"links to files that do not exist: {broken}"


def test_the_guide_links_the_glossary_and_the_readme() -> None:
    text = _guide()
    assert "](glossary-th.md)" in text, "no link to the Thai glossary"
    assert "](../README.md)" in text, "no link to the README's set-up and test commands"


# ----------------------------------------------------------------------------- plans
@pytest.mark.parametrize(("title", "budget"), PLANS, ids=[t for t, _ in PLANS])
def test_each_workshop_plan_adds_up_to_at_most_its_length(title: str, budget: int) -> None:
    rows = _table_rows(_section(_guide(), f"### {title}"))
    header = rows[0]
    assert "minutes" in header and "lesson" in header, f"{title}: header {header}"
    minutes_col, lesson_col = header.index("minutes"), header.index("lesson")
    total_rows = [r for r in rows[1:] if any("total" in c.lower() for c in r)]
    assert len(total_rows) == 1, f"{title}: expected one total row, found {len(total_rows)}"
    total = int(total_rows[0][minutes_col].strip("* "))
    blocks = [r for r in rows[1:] if r not in total_rows]
    assert len(blocks) >= 5, f"{title}: only {len(blocks)} blocks"
    minutes = [int(r[minutes_col]) for r in blocks]
    assert all(m > 0 for m in minutes), f"{title}: a block without minutes"
    assert sum(minutes) == total, f"{title}: the blocks add up to {sum(minutes)}, not {total}"
    assert total <= budget, f"{title}: {total} minutes do not fit in {budget}"
    taught = [r for r in blocks if r[lesson_col] not in ("-", "")]
    assert len(taught) >= 4, f"{title}: fewer than four lesson blocks"
    for row in taught:
        link = LINK.search(row[lesson_col])
        assert link and (GUIDE.parent / link.group(1)).is_file(), f"{title}: {row} links no lesson"


@pytest.mark.parametrize(("title", "budget"), PLANS, ids=[t for t, _ in PLANS])
def test_no_plan_gives_a_lesson_more_than_its_reading_time(title: str, budget: int) -> None:
    rows = _table_rows(_section(_guide(), f"### {title}"))
    header = rows[0]
    minutes_col, lesson_col = header.index("minutes"), header.index("lesson")
    planned: dict[str, int] = {}
    for row in rows[1:]:
        link = LINK.search(row[lesson_col])
        if link:
            name = Path(link.group(1)).name
            planned[name] = planned.get(name, 0) + int(row[minutes_col])
    for name, minutes in planned.items():
        reading = READING_TIME.search(_time_paragraph(NOTEBOOKS / name))
        assert reading, f"{name}: no reading time in its Time line"
        assert minutes <= int(reading.group(1)), (
            f"{title} gives {name} {minutes} minutes, more than its Time line's {reading.group(1)}"
        )


# ----------------------------------------------------------------------------- times
@pytest.mark.parametrize("notebook", LESSONS, ids=LESSON_IDS)
def test_the_glance_table_quotes_the_lessons_time_line(notebook: Path) -> None:
    rows = _table_rows(_section(_guide(), "## 0."))
    row = next((r for r in rows if f"../notebooks/{notebook.name}" in r[0]), None)
    assert row, f"the lessons-at-a-glance table has no row linking {notebook.name}"
    paragraph = _time_paragraph(notebook)
    reading = READING_TIME.search(paragraph)
    assert reading, f"{notebook.name}: no reading time in its Time line"
    assert f"{reading.group(1)} minutes" in row[1], (
        f"{notebook.name}: its Time line says {reading.group(1)} minutes, the guide {row[1]!r}"
    )
    quoted = " ".join(row[2:])
    for seconds in SECONDS.findall(paragraph):  # every run time the lesson records
        assert f"{seconds} s" in quoted, f"{notebook.name}: the guide does not quote {seconds} s"
    if "TIME_LINE" in paragraph:  # not measured yet: the guide must not invent a figure
        assert "measured in the lesson" in quoted and not SECONDS.search(quoted)


# ----------------------------------------------------------------------------- answers
def test_the_prediction_parser_finds_the_lessons_questions() -> None:
    found = [
        name
        for notebook in LESSONS
        for cell in _cells(notebook)
        if cell["cell_type"] == "code"
        for name in PREDICTION.findall("".join(cell["source"]))
    ]
    assert len(found) >= 15, f"only {len(found)} predict-then-check variables found: {found}"


@pytest.mark.parametrize("notebook", LESSONS, ids=LESSON_IDS)
def test_every_predict_then_check_cell_is_answered(notebook: Path) -> None:
    answers = _lesson_subsections(_section(_guide(), "## 4."))
    number = _lesson_number(notebook)
    names = [
        name
        for cell in _cells(notebook)
        if cell["cell_type"] == "code"
        for name in PREDICTION.findall("".join(cell["source"]))
    ]
    if not names:
        pytest.skip(f"{notebook.name} has no predict-then-check cell")
    assert number in answers, f"no answers subsection '### {number} · ...' in section 4"
    missing = [name for name in names if f"`{name}`" not in answers[number]]
    assert not missing, f"{notebook.name}: predictions without an answer in the guide: {missing}"


def test_every_things_to_try_prompt_is_answered() -> None:
    answers = _lesson_subsections(_section(_guide(), "## 4."))
    prompted = [
        notebook
        for notebook in LESSONS
        if "things to try"
        in " ".join(
            "".join(c["source"]) for c in _cells(notebook) if c["cell_type"] == "markdown"
        ).lower()
    ]
    assert len(prompted) >= 3, f"only {len(prompted)} lessons with 'things to try' found"
    missing = [
        notebook.name
        for notebook in prompted
        if "things to try" not in answers.get(_lesson_number(notebook), "").lower()
    ]
    assert not missing, f"'things to try' prompts not answered in section 4: {missing}"


@pytest.mark.parametrize("notebook", LESSONS, ids=LESSON_IDS)
def test_every_lesson_has_discussion_questions(notebook: Path) -> None:
    questions = _lesson_subsections(_section(_guide(), "## 5."))
    number = _lesson_number(notebook)
    assert number in questions, f"no discussion subsection '### {number} · ...' in section 5"
    items = re.findall(r"^\d\. (.+?)(?=^\d\. |\Z)", questions[number], re.M | re.S)
    assert len(items) >= 2, f"lesson {number}: fewer than two discussion questions"
    assert all("Good answer" in " ".join(item.split()) for item in items), (
        f"lesson {number}: a question without a note on what a good answer contains"
    )


# ----------------------------------------------------------------------------- installing
def test_the_guide_quotes_the_same_pins_as_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = dict(
        req.lower().split("==")
        for req in project["dependencies"] + project["optional-dependencies"]["dev"]
    )
    quoted = re.findall(r"\b([A-Za-z][A-Za-z0-9_-]*)==(\d[\w.]*\d)", _guide())
    assert {name.lower() for name, _ in quoted} >= {"torch", "ipywidgets", "jupyterlab"}
    wrong = sorted(
        f"{name}=={version} (pyproject: {pins[name.lower()]})"
        for name, version in quoted
        if name.lower() in pins and pins[name.lower()] != version
    )
    assert not wrong, f"the guide quotes pins that pyproject.toml does not have: {wrong}"
    assert "torchvision" not in "".join(project["dependencies"]), "the guide says it is not one"
