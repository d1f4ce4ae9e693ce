"""Lesson 13: where diffusion models came from, as a timeline linked to the course's lessons.

* :class:`Milestone`: one paper, dated by its first public version (arXiv v1), with the lessons
  of this course that implement its idea.
* :data:`MILESTONES`: the milestones issue 14 names, 2015 to 2024, in date order.
* :func:`plot_timeline`: one time axis, a marker per milestone, coloured by the part of the
  course that implements it.
* :func:`milestones_by_lesson`: lesson -> its milestones, so a lesson can link each paper.

Where the facts come from: every date, author list, title and venue below was checked against
the paper's arXiv abstract page (the "Submitted on ... (v1)" line) or a copy of its listing,
and against the proceedings or OpenReview page of its venue; the comment above each entry
names the pages. The arXiv identifier encodes the v1 month too (``YYMM.NNNNN``): 2006.11239 was
first posted in June 2020, and the tests check that every entry agrees with its identifier.
The year of a milestone is therefore often a year *before* its conference: DDIM (arXiv
October 2020) appeared at ICLR 2021, latent diffusion (arXiv December 2021) at CVPR 2022.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Sequence

from matplotlib.backends.backend_agg import RendererAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D

from diffusion_edu.viz.plots import AMBER, FIGURE_WIDTH, INK_BLUE, RED, SLATE, TEAL, LessonFigure

__all__ = [
    "Milestone",
    "MILESTONES",
    "PLANNED_LESSONS",
    "COURSE_PARTS",
    "plot_timeline",
    "milestones_by_lesson",
    "lesson_number",
]

#: Lessons on the course map that are not written yet (lesson 00's map marks them "coming"),
#: number -> title. A milestone may refer to these by number; once the notebook exists, use its
#: file name. Every lesson on the map is written now (12 and 13 were the last), so none is.
PLANNED_LESSONS: dict[str, str] = {}

_LESSON_REF = re.compile(r"^(\d\d)(_[a-z0-9_]+\.ipynb)?$")


@dataclasses.dataclass(frozen=True)
class Milestone:
    """One paper on the timeline.

    Attributes:
        year, month: when the paper first became public: the arXiv v1 date (month 1..12).
        name: the short name the field uses for it ("DDPM", "DiT"), for the figure's label.
        authors: the authors in the paper's order; after three names, "et al." may end the list.
        title: the paper's exact title.
        where: the arXiv identifier and the venue, e.g. "arXiv:2006.11239; NeurIPS 2020".
        idea: one plain sentence: what the paper introduced.
        lessons: the lessons of this course that implement the idea, as notebook file names
            ("08_sampling.ipynb") or, for lessons not written yet, their number ("14"). The
            first one is the lesson most about the idea; it sets the colour on the timeline.
    """

    year: int
    month: int
    name: str
    authors: str
    title: str
    where: str
    idea: str
    lessons: tuple[str, ...]

    def __post_init__(self) -> None:
        if not 1 <= self.month <= 12:
            raise ValueError(f"{self.name}: month must be 1..12, got {self.month}.")
        if not self.lessons:
            raise ValueError(f"{self.name}: name at least one lesson that implements the idea.")
        for ref in self.lessons:
            if not _LESSON_REF.match(ref):
                raise ValueError(
                    f"{self.name}: lesson {ref!r} must be a notebook file name like "
                    "'08_sampling.ipynb' or a planned lesson's number like '14'."
                )

    @property
    def date(self) -> float:
        """Position on the time axis in years: the middle of the month (March 2015 -> 2015.21)."""
        return self.year + (self.month - 0.5) / 12

    @property
    def cite(self) -> str:
        """How the text cites it: "Ho et al.", "Song & Ermon", "Peebles & Xie"."""
        names = [n.strip() for n in self.authors.replace(" et al.", ", +").split(",")]
        surnames = [n.split()[-1] for n in names if n and n != "+"]
        if len(names) > 2:
            return f"{surnames[0]} et al."
        return " & ".join(surnames)

    @property
    def label(self) -> str:
        """The timeline's label: the short name, then who (e.g. "DDPM (Ho et al.)")."""
        return f"{self.name} ({self.cite})"


def lesson_number(ref: str) -> str:
    """The two-digit lesson number of a lesson reference: "08_sampling.ipynb" -> "08"."""
    return ref[:2]


# Each entry: the page(s) its v1 date, authors and title were checked against, then its venue.
MILESTONES: tuple[Milestone, ...] = (
    # v1 12 Mar 2015: https://arxiv.org/abs/1503.03585 ("Submitted on 12 Mar 2015 (v1)", seen
    # through a mirror of that page); ICML 2015: "Proceedings of the 32nd International
    # Conference on Machine Learning, Lille, France, 2015" on the paper's first page.
    Milestone(
        year=2015,
        month=3,
        name="Diffusion models",
        authors="Jascha Sohl-Dickstein, Eric A. Weiss, Niru Maheswaranathan, Surya Ganguli",
        title="Deep Unsupervised Learning using Nonequilibrium Thermodynamics",
        where="arXiv:1503.03585; ICML 2015",
        idea="Destroy the structure of data slowly with a forward diffusion process, and "
        "learn the reverse process that restores it: a generative model.",
        lessons=("03_forward_markov_chain.ipynb", "05_reverse_2d_toy.ipynb"),
    ),
    # v1 12 Jul 2019: http://arxitics.com/articles/1907.05600/json ("published":
    # "2019-07-12"); NeurIPS 2019: https://papers.nips.cc/paper/9361-generative-modeling-by-
    # estimating-gradients-of-the-data-distribution
    Milestone(
        year=2019,
        month=7,
        name="NCSN",
        authors="Yang Song, Stefano Ermon",
        title="Generative Modeling by Estimating Gradients of the Data Distribution",
        where="arXiv:1907.05600; NeurIPS 2019",
        idea="Learn the score (the gradient of the log density) of the data perturbed with "
        "noise at many levels, and sample with Langevin dynamics from much noise to little.",
        lessons=("05_reverse_2d_toy.ipynb", "12_scores_sdes_flows.ipynb"),
    ),
    # v1 19 Jun 2020: https://gwern.net/metadata/annotation/https%253A%252F%252Farxiv.org%252F
    # abs%252F2006.11239.html ("2020-06-19"); NeurIPS 2020:
    # https://transferlab.appliedai.de/refs/ho_denoising_2020/ (Advances in Neural Information
    # Processing Systems 2020) and https://papers.status.lu/paper/ho-denoising-diffusion-
    # probabilistic-models-2020 ("NeurIPS 2020").
    Milestone(
        year=2020,
        month=6,
        name="DDPM",
        authors="Jonathan Ho, Ajay Jain, Pieter Abbeel",
        title="Denoising Diffusion Probabilistic Models",
        where="arXiv:2006.11239; NeurIPS 2020",
        idea="Train a network to predict the noise that was added (a simple weighted "
        "variational bound), then generate by removing it step by step: a state-of-the-art "
        "FID on CIFAR-10.",
        lessons=(
            "07_training_on_mnist.ipynb",
            "03_forward_markov_chain.ipynb",
            "04_noise_schedules.ipynb",
            "05_reverse_2d_toy.ipynb",
            "06_unet_anatomy.ipynb",
            "08_sampling.ipynb",
        ),
    ),
    # v1 6 Oct 2020: https://mdsite.deno.dev/https://doi.org/10.48550/arXiv.2010.02502 (the
    # arXiv page: "[v1] Tue, 6 Oct 2020"); ICLR 2021: "Published as a conference paper at
    # ICLR 2021", https://object.cloud.sdsc.edu/v1/AUTH_da4962d3368042ac8337e2dfdd3e7bf3/
    # ml-papers-txt/ICLR/2021/denoising_diffusion_implicit_models__4ed58682.txt
    Milestone(
        year=2020,
        month=10,
        name="DDIM",
        authors="Jiaming Song, Chenlin Meng, Stefano Ermon",
        title="Denoising Diffusion Implicit Models",
        where="arXiv:2010.02502; ICLR 2021",
        idea="The same trained network, sampled by a non-Markovian (possibly deterministic) "
        "process that skips steps: 10x to 50x faster generation.",
        lessons=("08_sampling.ipynb",),
    ),
    # v1 26 Nov 2020: https://www.scilynk.com/paper/W3110257065 ("arXiv ... Nov 26, 2020");
    # authors: https://chapterpal.com/s/031a9i50/score-based-generative-modeling-through-
    # stochastic-differential-equations; ICLR 2021: https://openreview.net/forum?id=PxTIG12RRHS
    # ("ICLR 2021 Oral").
    Milestone(
        year=2020,
        month=11,
        name="Score SDEs",
        authors="Yang Song, Jascha Sohl-Dickstein, Diederik P. Kingma et al.",
        title="Score-Based Generative Modeling through Stochastic Differential Equations",
        where="arXiv:2011.13456; ICLR 2021",
        idea="Noise as a stochastic differential equation in continuous time, reversed with "
        "the learned score; DDPM and NCSN become two discretisations, and a probability-flow "
        "ODE samples deterministically.",
        lessons=("12_scores_sdes_flows.ipynb",),
    ),
    # v1 18 Feb 2021: https://ai-papers.xuzou.cn/zh/sources/2021-improved_ddpm_2021.txt/
    # ("arXiv:2102.09672v1 [cs.LG] 18 Feb 2021") and https://pith.science/api/pith-number/
    # GGWSAIGBGVXMX4WGGWPUD4IG5Q/graph.json; ICML 2021: https://icml.cc/virtual/2021/poster/9531
    Milestone(
        year=2021,
        month=2,
        name="Improved DDPM",
        authors="Alex Nichol, Prafulla Dhariwal",
        title="Improved Denoising Diffusion Probabilistic Models",
        where="arXiv:2102.09672; ICML 2021",
        idea="A cosine noise schedule, learned variances and a hybrid loss: better "
        "likelihoods, and good samples in far fewer steps.",
        lessons=("04_noise_schedules.ipynb",),
    ),
    # v1 11 May 2021: https://www.catalyzex.com/paper/arxiv:2105.05233 ("May 11, 2021") and
    # https://researchtrend.ai/papers/2105.05233; NeurIPS 2021: https://openreview.net/forum?
    # id=AAWuCvzaVt ("NeurIPS 2021 Spotlight").
    Milestone(
        year=2021,
        month=5,
        name="Beat GANs",
        authors="Prafulla Dhariwal, Alex Nichol",
        title="Diffusion Models Beat GANs on Image Synthesis",
        where="arXiv:2105.05233; NeurIPS 2021",
        idea="A better U-Net (more attention, adaptive group norm) and classifier guidance, "
        "which trades diversity for fidelity: diffusion beats GANs on ImageNet.",
        lessons=("09_prompts_and_guidance.ipynb", "06_unet_anatomy.ipynb"),
    ),
    # v1 20 Dec 2021: https://centerconsulting.com/ai-library/papers/latent-diffusion-models
    # ("submitted to arXiv on December 20, 2021"); CVPR 2022: https://papers.status.lu/paper/
    # rombach-high-resolution-image-synthesis-with-latent-2022 (IEEE/CVF CVPR 2022) and
    # https://openaccess.thecvf.com/content/CVPR2022/papers/Rombach_High-Resolution_Image_
    # Synthesis_With_Latent_Diffusion_Models_CVPR_2022_paper.pdf
    Milestone(
        year=2021,
        month=12,
        name="Latent diffusion",
        authors="Robin Rombach, Andreas Blattmann, Dominik Lorenz et al.",
        title="High-Resolution Image Synthesis with Latent Diffusion Models",
        where="arXiv:2112.10752; CVPR 2022",
        idea="Diffuse in the small latent space of a pretrained autoencoder instead of on "
        "pixels, and read a prompt through cross-attention: the recipe of Stable Diffusion.",
        lessons=("11_latent_diffusion.ipynb", "09_prompts_and_guidance.ipynb"),
    ),
    # v1 13 Apr 2022: https://summarizepaper.com/en/tree/2204.06125v1 ("Submitted to arXiv on
    # 13 Apr. 2022"; authors Aditya Ramesh, Prafulla Dhariwal, Alex Nichol, Casey Chu, Mark
    # Chen); an arXiv preprint, no conference version found.
    Milestone(
        year=2022,
        month=4,
        name="DALL-E 2",
        authors="Aditya Ramesh, Prafulla Dhariwal, Alex Nichol et al.",
        title="Hierarchical Text-Conditional Image Generation with CLIP Latents",
        where="arXiv:2204.06125; OpenAI technical report (arXiv preprint)",
        idea="A prior turns a caption into a CLIP image embedding, and a diffusion decoder "
        "turns that embedding into an image.",
        lessons=("09_prompts_and_guidance.ipynb",),
    ),
    # v1 23 May 2022: https://summarizepaper.com/en/tree/2205.11487v1 ("Submitted to arXiv on
    # 23 May. 2022") and https://huggingface.co/papers/2205.11487; NeurIPS 2022:
    # https://papers.nips.cc/paper_files/paper/2022/hash/ec795aeadae0b7d230fa35cbaf04c041-
    # Abstract-Conference.html
    Milestone(
        year=2022,
        month=5,
        name="Imagen",
        authors="Chitwan Saharia, William Chan, Saurabh Saxena et al.",
        title="Photorealistic Text-to-Image Diffusion Models with Deep Language Understanding",
        where="arXiv:2205.11487; NeurIPS 2022",
        idea="A large frozen language model (T5-XXL) reads the prompt; growing the text "
        "encoder helps more than growing the image model.",
        lessons=("09_prompts_and_guidance.ipynb",),
    ),
    # v1 26 Jul 2022: https://www.summarizepaper.com/en/tree/2207.12598v1 ("Submitted to arXiv
    # on 26 Jul. 2022"; its comment: "A short version of this paper appeared in the NeurIPS
    # 2021 Workshop on Deep Generative Models and Downstream Applications:
    # https://openreview.net/pdf?id=qw8AKxfYbI"). The timeline uses the arXiv date.
    Milestone(
        year=2022,
        month=7,
        name="Classifier-free guidance",
        authors="Jonathan Ho, Tim Salimans",
        title="Classifier-Free Diffusion Guidance",
        where="arXiv:2207.12598 (July 2022); a short version appeared at the NeurIPS 2021 "
        "Workshop on Deep Generative Models and Downstream Applications",
        idea="Train one model with and without the condition, and mix its two noise "
        "predictions at sampling time: guidance without a classifier.",
        lessons=("09_prompts_and_guidance.ipynb", "05_reverse_2d_toy.ipynb"),
    ),
    # v1 7 Sep 2022: https://centerconsulting.com/ai-library/papers/rectified-flow ("posted to
    # arXiv on September 7, 2022"); authors: https://huggingface.datasetlab.ai/papers/
    # 2209.03003.md; ICLR 2023: https://openreview.net/forum?id=XVjTT1nw5z ("ICLR 2023 notable
    # top 25%").
    Milestone(
        year=2022,
        month=9,
        name="Rectified flow",
        authors="Xingchao Liu, Chengyue Gong, Qiang Liu",
        title="Flow Straight and Fast: Learning to Generate and Transfer Data with Rectified Flow",
        where="arXiv:2209.03003; ICLR 2023",
        idea="Learn an ODE whose paths follow the straight lines between noise and data "
        "points, and straighten them further (reflow): good samples in very few steps.",
        lessons=("12_scores_sdes_flows.ipynb",),
    ),
    # v1 6 Oct 2022: https://www.pith.science/ref/arxiv/2210.02747 ("submitted 2022-10-06")
    # and https://centerconsulting.com/ai-library/papers/flow-matching; ICLR 2023: "Published
    # as a conference paper at ICLR 2023", https://object.cloud.sdsc.edu/v1/AUTH_da4962d3368042
    # ac8337e2dfdd3e7bf3/ml-papers-txt/ICLR/2023/flow_matching_for_generative_modeling__5e8074b7.txt
    Milestone(
        year=2022,
        month=10,
        name="Flow matching",
        authors="Yaron Lipman, Ricky T. Q. Chen, Heli Ben-Hamu et al.",
        title="Flow Matching for Generative Modeling",
        where="arXiv:2210.02747; ICLR 2023",
        idea="Train a continuous normalizing flow without simulating it, by regressing the "
        "velocity of a chosen path from noise to data (straight optimal-transport paths).",
        lessons=("12_scores_sdes_flows.ipynb",),
    ),
    # v1 19 Dec 2022: https://gwern.net/metadata/annotation/https%253A%252F%252Farxiv.org%252F
    # abs%252F2212.09748.html ("2022-12-19"); ICCV 2023: https://openaccess.thecvf.com/content/
    # ICCV2023/html/Peebles_Scalable_Diffusion_Models_with_Transformers_ICCV_2023_paper.html
    Milestone(
        year=2022,
        month=12,
        name="DiT",
        authors="William Peebles, Saining Xie",
        title="Scalable Diffusion Models with Transformers",
        where="arXiv:2212.09748; ICCV 2023",
        idea="Replace the U-Net with a Transformer on latent patches (adaLN-Zero "
        "conditioning); quality improves steadily with the Gflops spent.",
        lessons=("10_diffusion_transformer.ipynb",),
    ),
    # v1 2 Mar 2023: https://thelatestinai.com/paper/2303.01469 ("Submitted: Mar 2, 2023") and
    # https://gwern.net/metadata/annotation/https%253A%252F%252Farxiv.org%252Fabs%252F2303.01469
    # %2523openai.html; ICML 2023: "Proceedings of the 40th International Conference on Machine
    # Learning", https://object.cloud.sdsc.edu/v1/AUTH_da4962d3368042ac8337e2dfdd3e7bf3/
    # ml-papers-txt/ICML/2023/consistency_models__2e441c60.txt
    Milestone(
        year=2023,
        month=3,
        name="Consistency models",
        authors="Yang Song, Prafulla Dhariwal, Mark Chen, Ilya Sutskever",
        title="Consistency Models",
        where="arXiv:2303.01469; ICML 2023",
        idea="Learn to map any point of a probability-flow ODE path straight to the path's "
        "start: generation in one step, or a few.",
        # No lesson implements it: lesson 12 teaches the probability-flow ODE it builds on,
        # and lesson 13 tells where it fits.
        lessons=("13_history_strengths_costs.ipynb",),
    ),
    # v1 5 Mar 2024: https://researchtrend.ai/papers/2403.03206 ("5 March 2024", 17 authors)
    # and https://study.space/p/Scaling_Rectified_Flow_Transformers_for_High-Resolution_Image_
    # Synthesis ("5 Mar 2024"); ICML 2024: https://openreview.net/forum?id=FPnUhsQJ5B ("ICML
    # 2024 Oral").
    Milestone(
        year=2024,
        month=3,
        name="Stable Diffusion 3",
        authors="Patrick Esser, Sumith Kulal, Andreas Blattmann et al.",
        title="Scaling Rectified Flow Transformers for High-Resolution Image Synthesis",
        where="arXiv:2403.03206; ICML 2024",
        idea="Rectified flow with noise levels sampled where perception matters most, and a "
        "multimodal DiT whose text and image tokens attend to each other, scaled to 8B "
        "parameters.",
        lessons=(
            "10_diffusion_transformer.ipynb",
            "12_scores_sdes_flows.ipynb",
            "11_latent_diffusion.ipynb",
        ),
    ),
)

PURPLE = "#6a4c93"
GREY = "#4a4a4a"

#: The parts of the course a milestone's colour stands for: (lesson numbers, legend, colour).
COURSE_PARTS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("03", "04"), "03-04 forward process, schedules", INK_BLUE),
    (("05", "06", "07"), "05-07 reverse process, U-Net, training", TEAL),
    (("08",), "08 sampling", AMBER),
    (("09",), "09 guidance and prompts", RED),
    (("10", "11"), "10-11 DiT, latent diffusion", PURPLE),
    (("12",), "12 scores, SDEs, flows", SLATE),
    (("13",), "13 told in the history lesson only", GREY),
)


def _course_part(milestone: Milestone) -> tuple[str, str]:
    """(legend text, colour) of the part of the course that holds the milestone's first lesson."""
    number = lesson_number(milestone.lessons[0])
    for numbers, legend, colour in COURSE_PARTS:
        if number in numbers:
            return legend, colour
    raise ValueError(
        f"{milestone.name}: lesson {milestone.lessons[0]!r} is in no part of the course map "
        f"(known lessons: {', '.join(n for part in COURSE_PARTS for n in part[0])})."
    )


def _check_milestones(milestones: Sequence[Milestone], caller: str) -> list[Milestone]:
    """The milestones in date order; a clear error for an empty list or a stranger in it."""
    items = list(milestones)
    if not items:
        raise ValueError(
            f"{caller} needs at least one Milestone, got an empty list; the course's are "
            "diffusion_edu.viz.history_viz.MILESTONES."
        )
    for item in items:
        if not isinstance(item, Milestone):
            raise TypeError(f"{caller} takes Milestone objects, got {type(item).__name__}.")
    return sorted(items, key=lambda m: (m.year, m.month))


def milestones_by_lesson(
    milestones: Sequence[Milestone] = MILESTONES,
) -> dict[str, list[Milestone]]:
    """Lesson reference ("08_sampling.ipynb", or a number such as "14" for a planned lesson) ->
    its milestones.

    Lessons come in course order, each with its milestones in date order; a milestone shows up
    under every lesson that implements its idea (DDPM under six of them).
    """
    by_lesson: dict[str, list[Milestone]] = {}
    for milestone in _check_milestones(milestones, "milestones_by_lesson"):
        for ref in milestone.lessons:
            by_lesson.setdefault(ref, []).append(milestone)
    return {ref: by_lesson[ref] for ref in sorted(by_lesson)}


# ----------------------------------------------------------------------------- the figure
LABEL_FONTSIZE = 8.0
_LEVEL_HEIGHT_IN = 0.42  # vertical room for one row of two-line labels
_GAP_IN = 0.06  # least horizontal gap between two labels in the same row


def _label_widths_in(labels: Sequence[str], fontsize: float) -> list[float]:
    """Width in inches of each (multi-line) label, measured with the Agg renderer's fonts."""
    renderer = RendererAgg(10, 10, 72)  # at 72 dpi one pixel is one point
    prop = FontProperties(size=fontsize)
    widths = []
    for text in labels:
        lines = text.split("\n")
        points = max(renderer.get_text_width_height_descent(ln, prop, ismath=False)[0]
                     for ln in lines)  # fmt: skip
        widths.append(points / 72)
    return widths


_SHIFTS = (0.0, -0.3, 0.3, -0.6, 0.6)  # label centre - date, in label half-widths


def _clashes(
    row: int,
    x: float,
    left: float,
    right: float,
    placed: Sequence[tuple[int, float, float, float]],
    stems: bool = True,
) -> bool:
    """Whether a label in signed ``row`` spanning ``left..right``, with its stem at ``x``,
    overlaps a ``placed`` label (signed row, stem x, left, right) on its side of the axis, or
    (``stems``) a stem crosses a label."""
    for row_j, x_j, left_j, right_j in placed:
        if (row_j > 0) != (row > 0):
            continue  # the other side of the axis
        k, r = abs(row_j), abs(row)
        if k == r and left < right_j and left_j < right:
            return True  # same row, boxes overlap
        if stems and k > r and left < x_j < right:
            return True  # their stem runs through this label
        if stems and k < r and left_j < x < right_j:
            return True  # this stem runs through their label
    return False


def _stack_labels(
    dates: Sequence[float],
    half_widths: Sequence[float],
    firsts: Sequence[int] | None,
    shift_orders: Sequence[Sequence[float]] | None,
) -> tuple[list[tuple[int, float, float, float]], int]:
    """One greedy pass of :func:`_place_labels`: (placed labels, how many had to let a stem
    cross a label). ``firsts`` / ``shift_orders`` override, per label, the side tried first and
    the order of the sideways shifts (None: alternate sides; shift away from a close neighbour)."""
    placed: list[tuple[int, float, float, float]] = []  # (signed row, date, left, right)
    n, crossings = len(dates), 0
    for i, (x, half) in enumerate(zip(dates, half_widths, strict=True)):
        if firsts is None:
            first = -1 if placed and placed[-1][0] > 0 else 1
        else:
            first = firsts[i]
        if shift_orders is None:
            crowded = i + 1 < n and dates[i + 1] - x < 1.85 * (half + half_widths[i + 1])
            shifts = sorted(_SHIFTS, key=lambda f: (f > 0, f)) if crowded else _SHIFTS
        else:
            shifts = shift_orders[i]
        choice = None
        for stems in (True, False):
            for row in range(1, n + 2):  # row n + 1 is always free
                for side in (first, -first):
                    for shift in shifts:
                        left, right = x + (shift - 1) * half, x + (shift + 1) * half
                        if not _clashes(side * row, x, left, right, placed, stems):
                            choice = (side * row, x, left, right)
                            break
                    if choice:
                        break
                if choice:
                    break
            if choice:
                crossings += not stems
                break
        assert choice is not None
        placed.append(choice)
    return placed, crossings


def _place_labels(
    dates: Sequence[float], half_widths: Sequence[float], tries: int = 200
) -> list[tuple[int, float]]:
    """Where each label goes: (signed row, centre), +k the k-th row above the axis, -k below.

    In date order, each label takes the row nearest the axis where it overlaps no other label
    and no stem (the vertical line from the axis to a label) crosses a label. Its box always
    holds its date but may shift sideways by up to 0.6 half-widths, away from a close next
    label first (so that label's stem will not run through it); it goes on the other side from
    the previous label (alternately above and below) unless the other side has a nearer row.
    Where such greedy stacking leaves a stem crossing a label, ``tries`` seeded variations of
    the sides and shifts tried first are stacked too, and the layout with the fewest crossings,
    then the fewest rows, wins. In a crowded stretch a few crossings may remain (the course's
    timeline keeps some in 2020-2022); labels are drawn on white above the stems, so a stem
    that crosses one passes behind it. ``dates`` and ``half_widths`` share a unit (years).
    """
    rng = random.Random(0)  # the same figure every time

    def score(result: tuple[list[tuple[int, float, float, float]], int]) -> tuple[int, int]:
        placed, crossings = result
        rows = [row for row, *_ in placed]
        return crossings, max(rows, default=0) - min(rows, default=0)

    best = _stack_labels(dates, half_widths, None, None)
    for _ in range(tries if best[1] else 0):
        firsts = [rng.choice((1, -1)) for _ in dates]
        orders = [rng.sample(_SHIFTS, len(_SHIFTS)) for _ in dates]
        candidate = _stack_labels(dates, half_widths, firsts, orders)
        if score(candidate) < score(best):
            best = candidate
    return [(row, (left + right) / 2) for row, _, left, right in best[0]]


def plot_timeline(milestones: Sequence[Milestone] = MILESTONES) -> Figure:
    """The milestones on one time axis, each a marker at its arXiv v1 month with a short label
    ("DDPM (Ho et al.)"), labels alternately above and below the axis, further out where they
    would overlap (labels never overlap; see ``_place_labels``), coloured by the part of the
    course that implements the idea (its first lesson; see :data:`COURSE_PARTS`).

    The axis spans at least 2015-2024, widened if a milestone's label needs more room.
    """
    items = _check_milestones(milestones, "plot_timeline")
    parts = [_course_part(m) for m in items]
    labels = [f"{m.name}\n({m.cite})" for m in items]
    widths_in = _label_widths_in(labels, LABEL_FONTSIZE)
    dates = [m.date for m in items]

    # The axes' inch-to-year scale depends on the year range, which depends on how far the
    # outermost labels stick out: two passes settle it.
    left_in, right_in = 0.25, 0.25
    axes_width_in = FIGURE_WIDTH - left_in - right_in
    lo, hi = min(2014.6, dates[0] - 0.4), max(2024.9, dates[-1] + 0.4)
    for _ in range(2):
        years_per_in = (hi - lo) / axes_width_in
        halves = [(w / 2 + _GAP_IN / 2) * years_per_in for w in widths_in]
        reach = [h * (1 + max(_SHIFTS)) for h in halves]  # a label may shift sideways
        lo = min(lo, min(d - r for d, r in zip(dates, reach, strict=True)) - 0.05)
        hi = max(hi, max(d + r for d, r in zip(dates, reach, strict=True)) + 0.05)
    years_per_in = (hi - lo) / axes_width_in
    halves = [(w / 2 + _GAP_IN / 2) * years_per_in for w in widths_in]
    spots = _place_labels(dates, halves)
    rows = [row for row, _ in spots]
    above = max([r for r in rows if r > 0], default=0)
    below = -min([r for r in rows if r < 0], default=0)

    legend_rows = (len({p[0] for p in parts}) + 2) // 3
    top_in, bottom_in = 0.45, 0.75 + 0.2 * legend_rows
    axes_height_in = (above + below + 1.0) * _LEVEL_HEIGHT_IN
    height_in = top_in + axes_height_in + bottom_in
    fig = LessonFigure(figsize=(FIGURE_WIDTH, height_in))
    ax = fig.add_axes(
        (left_in / FIGURE_WIDTH, bottom_in / height_in,
         axes_width_in / FIGURE_WIDTH, axes_height_in / height_in)
    )  # fmt: skip
    ax.set_xlim(lo, hi)
    ax.set_ylim(-(below + 0.5), above + 0.5)
    ax.axhline(0, color="black", lw=1.2, zorder=1)
    for year in range(int(lo) + 1, int(hi) + 1):
        ax.axvline(year, color=SLATE, lw=0.5, alpha=0.35, zorder=0)

    for m, (row, centre), (_, colour), text in zip(items, spots, parts, labels, strict=True):
        ax.plot([m.date, m.date], [0, row], color=colour, lw=0.8, alpha=0.7, zorder=1)
        ax.text(
            centre, row, text, ha="center", va="bottom" if row > 0 else "top",
            fontsize=LABEL_FONTSIZE, color=colour, linespacing=1.1, zorder=3,
            bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none"},
        )  # fmt: skip
    seen: dict[str, list[Milestone]] = {}
    for m, (legend, _) in zip(items, parts, strict=True):
        seen.setdefault(legend, []).append(m)
    for _, legend, colour in COURSE_PARTS:  # one marker set per part, in course order
        group = seen.get(legend, [])
        if group:
            ax.scatter([m.date for m in group], [0] * len(group), s=46, color=colour,
                       edgecolors="white", linewidths=0.8, zorder=4, label=legend)  # fmt: skip

    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    ax.set_xticks(range(min(2015, items[0].year), max(2024, items[-1].year) + 1))
    ax.tick_params(axis="x", labelsize=9)
    ax.set_xlabel(
        "year the paper first appeared (arXiv v1; conference versions often a year later)"
    )
    handles = [
        Line2D([], [], marker="o", ls="", markersize=7, markerfacecolor=colour,
               markeredgecolor="white", label=legend)
        for _, legend, colour in COURSE_PARTS
        if legend in seen
    ]  # fmt: skip
    fig.legend(
        handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False,
        title="colour: the lessons of this course that implement the idea",
        title_fontsize=8, bbox_to_anchor=(0.5, 0.0),
    )  # fmt: skip
    fig.suptitle(
        f"Diffusion models, {items[0].year}-{items[-1].year}: the milestones and the lessons "
        "that implement them",
        fontsize=11, y=1 - 0.12 / height_in, va="top",
    )  # fmt: skip
    return fig
