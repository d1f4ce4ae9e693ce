"""The Thai glossary, docs/glossary-th.md (issue 15, item 4).

It must cover every Thai term of the source article's outline (the "Thai term used" column of the
source README's table), link only to lessons that exist, summarise every lesson in Thai, and be
linked from the README and from every lesson's recap.
"""

import json
import os
import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GLOSSARY = ROOT / "docs" / "glossary-th.md"
NOTEBOOKS = ROOT / "notebooks"
LESSONS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
GLOSSARY_FROM_A_LESSON = "../docs/glossary-th.md"  # a notebook's relative link to the glossary

# The source outline (README.md beside the Thai article the course was commissioned from) lives
# outside the repository. Where it is reachable, the coverage test reads its table; elsewhere (CI)
# it uses this copy of the "Thai term used" column, and test_term_snapshot_matches_the_source
# keeps the copy current wherever the source is reachable.
SOURCE_README_CANDIDATES = [
    Path(os.environ.get("DIFFUSION_EDU_SOURCE_README", "/nonexistent")),
    ROOT / "shared" / "source" / "README.md",
    ROOT.parent / "shared" / "source" / "README.md",
]
SOURCE_THAI_TERMS = (
    "กระบวนการแพร่",
    "Generative AI",
    "กระบวนการไปข้างหน้า",
    "ย้อนกลับ",
    "การสุ่มตัวอย่าง",
    "Noise",
    "การทำให้เป็นมาตรฐาน",
    "การเพิ่มข้อมูล",
    "Markov Chain",
    "การประเมิน Noise",
    "การลบเสียงทีละขั้น",
    "ไฮเปอร์พารามิเตอร์",
    "U-Net",
    "DiT",
)

THAI = re.compile(r"[\u0E00-\u0E7F]")
LESSON_LINK = re.compile(r"\]\((\.\./notebooks/[^)#\s]+)\)")
TO_COME = re.compile(r"lesson (\d\d) \(to come\)")


def _norm(text: str) -> str:
    """One spelling for comparing terms: NFKC (Thai sara am has two encodings) and case-folded."""
    return unicodedata.normalize("NFKC", text).casefold().strip()


def _table_rows(markdown: str) -> list[list[str]]:
    """The cells of every table row in ``markdown``, without header separators."""
    rows = []
    for line in markdown.splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if all(re.fullmatch(r":?-{3,}:?", c) for c in cells):
            continue
        rows.append(cells)
    return rows


def _source_readme() -> Path | None:
    return next((p for p in SOURCE_README_CANDIDATES if p.is_file()), None)


def _parse_source_terms(readme: str) -> list[str]:
    """The "Thai term used" column of the source README's table, one term per entry.

    Entries such as "กระบวนการไปข้างหน้า / ย้อนกลับ / การสุ่มตัวอย่าง" or "การทำให้เป็นมาตรฐาน,
    การเพิ่มข้อมูล" list several terms; they are split on "/" and "," and kept as written.
    """
    rows = _table_rows(readme)
    header = next(r for r in rows if "Thai term used" in r)
    column = header.index("Thai term used")
    terms = []
    for row in rows[rows.index(header) + 1 :]:
        entry = row[column] if column < len(row) else ""
        terms += [t.strip() for t in re.split(r"[/,]", entry) if t.strip()]
    return terms


def _glossary_rows() -> list[list[str]]:
    """The glossary's term rows: Thai term, English term, Thai and English definitions, lesson."""
    rows = _table_rows(GLOSSARY.read_text(encoding="utf-8"))
    odd = [r[0] for r in rows if len(r) != 5]
    assert not odd, f"glossary rows without exactly 5 cells (a stray '|'?): {odd}"
    return [r for r in rows if not r[0].startswith("คำในบทความ")]  # drop the header rows


def _names(thai_cell: str) -> list[str]:
    """The names a glossary row gives: "ก (A) / ข" -> ["ก", "a", "ข"] (normalised)."""
    names = []
    for variant in thai_cell.split(" / "):
        names.append(_norm(re.sub(r"\([^)]*\)", "", variant)))
        names += [_norm(inner) for inner in re.findall(r"\(([^)]*)\)", variant)]
    return [n for n in names if n]


def _covers(names: list[str], term: str) -> bool:
    """A row covers a source term if one of its names is the term or ends with it: the source
    abbreviates "กระบวนการย้อนกลับ" to "ย้อนกลับ" after "กระบวนการไปข้างหน้า /"."""
    term = _norm(term)
    return any(name == term or name.endswith(term) for name in names)


def _summaries() -> str:
    text = GLOSSARY.read_text(encoding="utf-8")
    assert "## สรุปบทเรียน (Lesson summaries)" in text, "the glossary has no lesson summaries"
    return text.split("## สรุปบทเรียน (Lesson summaries)", 1)[1]


def _recap_section(notebook: Path) -> str:
    """The lesson's Recap: from "## Recap" to the next heading, in the cell that holds it. A lesson
    without a Recap (lesson 00) ends with its last markdown cell instead."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    markdown = ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]
    for text in markdown:
        match = re.search(r"^## Recap[ \t]*$", text, re.M)
        if match:
            rest = text[match.end() :]
            following = re.search(r"^#{1,6} ", rest, re.M)
            return rest[: following.start()] if following else rest
    return markdown[-1]


# ----------------------------------------------------------------------------- coverage
def test_term_snapshot_matches_the_source_readme() -> None:
    source = _source_readme()
    if source is None:
        pytest.skip("the source README is not reachable here (set DIFFUSION_EDU_SOURCE_README)")
    assert _parse_source_terms(source.read_text(encoding="utf-8")) == list(SOURCE_THAI_TERMS), (
        "the source README's Thai terms changed: update SOURCE_THAI_TERMS and the glossary"
    )


def test_glossary_covers_every_thai_term_of_the_source_outline() -> None:
    source = _source_readme()
    terms = _parse_source_terms(source.read_text(encoding="utf-8")) if source else SOURCE_THAI_TERMS
    assert len(terms) >= 14, terms  # the parser found the column
    rows = _glossary_rows()
    missing = [t for t in terms if not any(_covers(_names(r[0]), t) for r in rows)]
    assert not missing, f"Thai terms of the source outline missing from the glossary: {missing}"


def test_every_glossary_row_has_both_languages_and_a_lesson() -> None:
    rows = _glossary_rows()
    assert len(rows) >= 40, f"only {len(rows)} terms"
    for thai, english, def_th, def_en, lesson in rows:
        where = f"glossary row {thai!r}"
        assert thai and english and def_th and def_en and lesson, f"{where} has an empty cell"
        assert THAI.search(def_th), f"{where}: the Thai definition has no Thai in it"
        assert len(THAI.findall(def_en)) < len(def_en) // 4, f"{where}: English definition?"
        assert not THAI.search(english), f"{where}: the English term is not English"
        assert LESSON_LINK.search(lesson) or TO_COME.search(lesson), f"{where}: no lesson"
    duplicates = {r[0] for r in rows if [s[0] for s in rows].count(r[0]) > 1}
    assert not duplicates, f"terms listed twice: {duplicates}"


# ----------------------------------------------------------------------------- lessons
def test_every_lesson_link_points_to_a_notebook_that_exists() -> None:
    links = LESSON_LINK.findall(GLOSSARY.read_text(encoding="utf-8"))
    assert links, "the glossary links no lesson"
    broken = sorted({link for link in links if not (GLOSSARY.parent / link).resolve().is_file()})
    assert not broken, f"links to lessons that do not exist: {broken}"


def test_lessons_to_come_do_not_exist_yet() -> None:
    promised = set(TO_COME.findall(GLOSSARY.read_text(encoding="utf-8")))
    exist = sorted(n for n in promised if list(NOTEBOOKS.glob(f"{n}_*.ipynb")))
    assert not exist, f"lessons {exist} exist now: link them in the glossary instead of 'to come'"


@pytest.mark.parametrize("notebook", LESSONS, ids=[p.stem for p in LESSONS])
def test_every_lesson_is_summarised_in_thai(notebook: Path) -> None:
    heading = re.search(
        rf"^### \[[^\]]+\]\(\.\./notebooks/{re.escape(notebook.name)}\)[ \t]*\n(.*?)(?=^#|\Z)",
        _summaries(),
        re.M | re.S,
    )
    assert heading, f"no summary heading linking {notebook.name}"
    assert len(THAI.findall(heading.group(1))) >= 300, f"{notebook.name}: summary too short"


@pytest.mark.parametrize("notebook", LESSONS, ids=[p.stem for p in LESSONS])
def test_every_lesson_recap_links_the_glossary(notebook: Path) -> None:
    assert (notebook.parent / GLOSSARY_FROM_A_LESSON).resolve() == GLOSSARY.resolve()
    assert f"]({GLOSSARY_FROM_A_LESSON})" in _recap_section(notebook), (
        f"{notebook.name}: its Recap does not link {GLOSSARY_FROM_A_LESSON}"
    )


def test_readme_links_the_glossary() -> None:
    assert GLOSSARY.is_file()
    assert "](docs/glossary-th.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
