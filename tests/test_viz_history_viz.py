"""Lesson 13's timeline (diffusion_edu.viz.history_viz): the milestones are the ones issue 14
names, dated consistently with their arXiv identifiers and linked to lessons that exist (or are
on the course map as coming); the figure shows one marker per milestone, labels that do not
overlap (a stem that must cross one passes behind it), and fits JupyterLab's output width."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import dataclasses
import json
import re
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection
from matplotlib.colors import to_rgba
from matplotlib.lines import Line2D
from matplotlib.text import Text

from diffusion_edu.viz.history_viz import (
    COURSE_PARTS,
    MILESTONES,
    PLANNED_LESSONS,
    Milestone,
    milestones_by_lesson,
    plot_timeline,
)
from diffusion_edu.viz.plots import FIGURE_WIDTH

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"

# (title pattern, first author's surname, year of arXiv v1): the works issue 14 (lesson 13,
# item 1) names, in its order.
ISSUE_14_WORKS = [
    ("Nonequilibrium Thermodynamics", "Sohl-Dickstein", 2015),
    ("Estimating Gradients of the Data Distribution", "Song", 2019),
    ("^Denoising Diffusion Probabilistic Models", "Ho", 2020),  # not "Improved ..."
    ("Denoising Diffusion Implicit Models", "Song", 2020),
    ("Improved Denoising Diffusion", "Nichol", 2021),
    ("Stochastic Differential Equations", "Song", 2020),
    ("Diffusion Models Beat GANs", "Dhariwal", 2021),
    ("Classifier-Free Diffusion Guidance", "Ho", 2022),
    ("Latent Diffusion Models", "Rombach", 2021),
    ("Hierarchical Text-Conditional Image Generation with CLIP Latents", "Ramesh", 2022),
    ("Photorealistic Text-to-Image Diffusion Models", "Saharia", 2022),
    ("Scalable Diffusion Models with Transformers", "Peebles", 2022),
    ("Flow Matching for Generative Modeling", "Lipman", 2022),
    ("Flow Straight and Fast", "Liu", 2022),
    ("Consistency Models", "Song", 2023),
    ("Scaling Rectified Flow Transformers", "Esser", 2024),
]


def _coming_lessons_on_course_map() -> dict[str, str]:
    """Lesson number -> title of the rows lesson 00's course map marks "(coming)"."""
    cells = json.loads((NOTEBOOKS / "00_welcome.ipynb").read_text())["cells"]
    text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return dict(re.findall(r"^\| (\d\d) \| ([^|]*?) \(coming\) \|", text, re.M))


# ----------------------------------------------------------------------------- the facts
def test_milestones_are_in_date_order_from_the_2015_paper_to_stable_diffusion_3() -> None:
    dates = [(m.year, m.month) for m in MILESTONES]
    assert dates == sorted(dates)
    assert "Nonequilibrium Thermodynamics" in MILESTONES[0].title
    assert MILESTONES[0].year == 2015
    assert "Scaling Rectified Flow Transformers" in MILESTONES[-1].title
    assert MILESTONES[-1].year == 2024


def test_each_work_issue_14_names_appears_exactly_once_and_nothing_else() -> None:
    for fragment, surname, year in ISSUE_14_WORKS:
        found = [m for m in MILESTONES if re.search(fragment, m.title, re.I)]
        assert len(found) == 1, f"{fragment!r}: {len(found)} milestones"
        assert found[0].authors.split(",")[0].split()[-1] == surname, found[0].authors
        assert found[0].year == year, (fragment, found[0].year)
    assert len(MILESTONES) == len(ISSUE_14_WORKS)


def test_months_are_1_to_12_and_agree_with_the_arxiv_identifier() -> None:
    """An arXiv identifier YYMM.NNNNN is assigned in the month of the first version (v1)."""
    for m in MILESTONES:
        assert 1 <= m.month <= 12, m.name
        found = re.search(r"arXiv:(\d\d)(\d\d)\.\d{4,5}\b", m.where)
        assert found, f"{m.name}: no arXiv identifier in {m.where!r}"
        assert (m.year % 100, m.month) == (int(found[1]), int(found[2])), m.name


def test_author_lists_use_et_al_only_after_three_names() -> None:
    for m in MILESTONES:
        if "et al." in m.authors:
            assert m.authors.endswith(" et al."), m.authors
            assert len(m.authors.removesuffix(" et al.").split(", ")) == 3, m.authors


def test_classifier_free_guidance_gives_the_arxiv_date_and_names_the_2021_workshop() -> None:
    (cfg,) = [m for m in MILESTONES if m.title == "Classifier-Free Diffusion Guidance"]
    assert (cfg.year, cfg.month) == (2022, 7)
    assert "NeurIPS 2021 Workshop" in cfg.where


def test_every_lesson_reference_is_a_notebook_or_a_lesson_the_course_map_says_is_coming() -> None:
    notebooks = {p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")}
    coming = _coming_lessons_on_course_map()
    assert coming == PLANNED_LESSONS, "PLANNED_LESSONS no longer matches lesson 00's map"
    for number in PLANNED_LESSONS:  # a planned lesson stops being planned once it is written
        written = [n for n in notebooks if n.startswith(number)]
        assert not written, f"lesson {number} exists now ({written}): drop it from PLANNED_LESSONS"
    for m in MILESTONES:
        for ref in m.lessons:
            if ref in PLANNED_LESSONS:
                written = [n for n in notebooks if n.startswith(ref)]
                assert not written, f"lesson {ref} exists now ({written}): refer to it by name"
            else:
                assert ref in notebooks, f"{m.name}: no notebook {ref}"
        assert len(set(m.lessons)) == len(m.lessons), m.name


def test_milestone_rejects_a_bad_month_a_bad_lesson_or_no_lesson() -> None:
    good = MILESTONES[2]
    with pytest.raises(ValueError, match="month must be 1..12"):
        dataclasses.replace(good, month=13)
    with pytest.raises(ValueError, match="notebook file name"):
        dataclasses.replace(good, lessons=("sampling",))
    with pytest.raises(ValueError, match="at least one lesson"):
        dataclasses.replace(good, lessons=())
    with pytest.raises(dataclasses.FrozenInstanceError):
        good.year = 2021  # type: ignore[misc]


def test_labels_cite_first_authors_as_the_text_does() -> None:
    by_name = {m.name: m for m in MILESTONES}
    assert by_name["DDPM"].label == "DDPM (Ho et al.)"
    assert by_name["NCSN"].label == "NCSN (Song & Ermon)"
    assert by_name["DiT"].label == "DiT (Peebles & Xie)"
    assert by_name["Score SDEs"].cite == "Song et al."  # "et al." in the author list
    assert by_name["Diffusion models"].cite == "Sohl-Dickstein et al."  # four names listed


def test_milestones_by_lesson_lists_each_milestone_under_each_of_its_lessons() -> None:
    by_lesson = milestones_by_lesson()
    assert list(by_lesson) == sorted(by_lesson)
    for m in MILESTONES:
        for ref in m.lessons:
            assert by_lesson[ref].count(m) == 1
    total = sum(len(v) for v in by_lesson.values())
    assert total == sum(len(m.lessons) for m in MILESTONES)
    for milestones in by_lesson.values():
        assert milestones == sorted(milestones, key=lambda m: (m.year, m.month))
    assert [m.name for m in by_lesson["08_sampling.ipynb"]] == ["DDPM", "DDIM"]
    assert "Flow matching" in [m.name for m in by_lesson["12_scores_sdes_flows.ipynb"]]
    assert [m.name for m in by_lesson["13_history_strengths_costs.ipynb"]] == ["Consistency models"]


# ----------------------------------------------------------------------------- the figure
def test_timeline_has_a_title_an_x_label_one_marker_per_milestone_and_fits() -> None:
    fig = plot_timeline()
    ax = fig.axes[0]
    assert fig.get_suptitle().strip()
    assert "year" in ax.get_xlabel()
    markers = [c for c in ax.collections if isinstance(c, PathCollection)]
    offsets = [tuple(xy) for c in markers for xy in c.get_offsets()]
    assert len(offsets) == len(MILESTONES)
    assert sorted(x for x, _ in offsets) == pytest.approx([m.date for m in MILESTONES])
    xmin, xmax = ax.get_xlim()
    assert xmin <= 2015 and xmax >= 2024
    assert [int(t) for t in ax.get_xticks()] == list(range(2015, 2025))
    assert fig.get_figwidth() <= FIGURE_WIDTH
    labels = {t.get_text().replace("\n", " ") for t in ax.texts}
    assert labels == {m.label for m in MILESTONES}
    plt.close(fig)


def test_each_marker_has_its_lessons_colour() -> None:
    fig = plot_timeline()
    ax = fig.axes[0]
    colour_of = {legend: colour for _, legend, colour in COURSE_PARTS}
    seen = 0
    for collection in ax.collections:
        if isinstance(collection, PathCollection):
            expected = to_rgba(colour_of[collection.get_label()])
            assert tuple(collection.get_facecolor()[0]) == pytest.approx(expected)
            numbers = next(n for n, legend, _ in COURSE_PARTS if legend == collection.get_label())
            for x, _ in collection.get_offsets():
                (m,) = [m for m in MILESTONES if m.date == pytest.approx(x)]
                assert m.lessons[0][:2] in numbers, m.name
                seen += 1
    assert seen == len(MILESTONES)
    plt.close(fig)


def test_labels_do_not_overlap_each_stem_ends_at_its_label_and_all_fit_in_the_figure() -> None:
    fig = plot_timeline()
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    ax = fig.axes[0]
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b), (a, b)
    # the stems: vertical lines in data coordinates from the axis (the year lines are not)
    stems = [
        line
        for line in ax.lines
        if line.get_transform() == ax.transData and len(set(line.get_xdata())) == 1
    ]
    assert len(stems) == len(MILESTONES)
    crossings = 0
    for stem, text, box in zip(
        sorted(stems, key=lambda s: s.get_xdata()[0]), ax.texts, boxes, strict=True
    ):
        x, end = stem.get_xdata()[0], stem.get_ydata()[1]
        assert text.get_position()[1] == end, "the stem ends at the row of its own label"
        (px, py0), (_, py1) = ax.transData.transform([(x, 0), (x, end)])
        assert box.x0 <= px <= box.x1, f"the label of the stem at {x:.2f} is not above it"
        lo, hi = sorted((py0, py1))
        crossings += sum(o.x0 < px < o.x1 and o.y0 < hi and lo < o.y1 for o in boxes if o != box)
    # where a stem has to cross another label, it passes behind its opaque white background
    assert crossings <= 4, f"{crossings} stems cross a label"  # 4 in the 2020-2023 crowd
    for text in ax.texts:
        patch = text.get_bbox_patch()
        assert patch is not None and patch.get_facecolor()[:3] == (1.0, 1.0, 1.0)
        assert text.get_zorder() > max(s.get_zorder() for s in stems)
    width, height = fig.bbox.width, fig.bbox.height
    for text in fig.findobj(Text):
        if text.get_text().strip() and text.get_visible():
            box = text.get_window_extent(renderer)
            assert box.x0 >= 0 and box.x1 <= width and box.y0 >= 0 and box.y1 <= height, text
    plt.close(fig)


def test_timeline_shows_jupyterlab_width_and_readable_text(shown_png_width) -> None:
    fig = plot_timeline()
    assert shown_png_width(fig) <= 950
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_text().strip()]
    assert min(sizes) >= 8
    plt.close(fig)


def test_timeline_of_a_few_milestones_sorts_them_and_draws_only_their_parts() -> None:
    chosen = [MILESTONES[-1], MILESTONES[0]]  # out of order on purpose
    fig = plot_timeline(chosen)
    ax = fig.axes[0]
    assert [t.get_text().split("\n")[0] for t in ax.texts] == [
        "Diffusion models",
        "Stable Diffusion 3",
    ]
    legend_texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert len(legend_texts) == 2
    assert not [h for h in fig.legends[0].legend_handles if not isinstance(h, Line2D)]
    plt.close(fig)


def test_empty_or_wrong_input_raises_a_clear_error() -> None:
    with pytest.raises(ValueError, match="at least one Milestone"):
        plot_timeline([])
    with pytest.raises(ValueError, match="at least one Milestone"):
        milestones_by_lesson([])
    with pytest.raises(TypeError, match="Milestone objects"):
        plot_timeline([MILESTONES[0], "DDPM"])  # type: ignore[list-item]
    unknown = Milestone(2025, 1, "X", "A B", "T", "arXiv:2501.00001", "idea", ("99",))
    with pytest.raises(ValueError, match="no part of the course map"):
        plot_timeline([unknown])
