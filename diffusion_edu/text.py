"""From a typed sentence to token ids, and from a digit's pixels to the words that describe it.

Lesson 09's text-conditioned model learns from captions such as "a bold seven leaning right".
MNIST has no captions, so we *measure* each training digit and write its caption:

* **the digit**: its label ("zero" ... "nine");
* **stroke thickness** (:func:`stroke_thickness`): the width of the pen stroke in pixels,
  estimated as ``2 * area / perimeter`` of the digit's binarised ink (a stroke of width w and
  length L has area about w L and perimeter about 2 L). Below :data:`THIN_BELOW` pixels it is
  "thin", above :data:`BOLD_ABOVE` "bold", in between no word;
* **slant** (:func:`slant`): how far the digit's ink moves to the right per row going up, from
  the image moments (``-mu11 / mu02``, the measure used to deskew MNIST digits). Below
  :data:`LEFT_BELOW` it is "leaning left", within ``+-UPRIGHT_WITHIN`` "upright", above
  :data:`RIGHT_ABOVE` "leaning right", in the gaps no word.

The same functions later score the model's samples: does a "bold" prompt give a thicker
stroke than a "thin" one from the same noise?

The tokenizer (:func:`tokenize`) is word-level with a fixed, documented vocabulary
(:data:`VOCABULARY`): real text-to-image models use sub-word tokenizers with tens of thousands
of entries (CLIP's BPE has 49,408), but the idea is the same: a sentence becomes a short row of
integer ids, padded to a fixed length, that an embedding table turns into vectors.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = [
    "VOCABULARY",
    "DIGIT_WORDS",
    "THICKNESS_WORDS",
    "SLANT_WORDS",
    "PROMPT_LENGTH",
    "PAD",
    "START",
    "PromptError",
    "prompt_tokens",
    "tokenize",
    "detokenize",
    "vocabulary_text",
    "ink",
    "stroke_thickness",
    "slant",
    "thickness_word",
    "slant_word",
    "DigitAttributes",
    "digit_attributes",
    "caption",
    "HELD_OUT",
    "is_held_out",
    "training_captions",
    "caption_dataset",
    "THIN_BELOW",
    "BOLD_ABOVE",
    "LEFT_BELOW",
    "UPRIGHT_WITHIN",
    "RIGHT_ABOVE",
]

DIGIT_WORDS: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
)  # fmt: skip
THICKNESS_WORDS: tuple[str, ...] = ("thin", "bold")
SLANT_WORDS: tuple[str, ...] = ("leaning left", "upright", "leaning right")
#: Every token, in id order. "<pad>" fills a prompt up to PROMPT_LENGTH; "<start>" begins
#: every prompt, so even the empty prompt (the "no condition" of guidance) has one token to
#: attend to. "leaning left" / "leaning right" are one token each (a two-word phrase).
VOCABULARY: tuple[str, ...] = (
    ("<pad>", "<start>", "a", "an") + DIGIT_WORDS + THICKNESS_WORDS + SLANT_WORDS
)
PAD, START = 0, 1
#: Token ids per prompt: "<start>" + up to 7 words (the longest caption needs 5).
PROMPT_LENGTH = 8
_IDS = {word: i for i, word in enumerate(VOCABULARY)}
_ALIASES = {str(d): word for d, word in enumerate(DIGIT_WORDS)}  # "7" -> "seven"
_PHRASES = {"leaning": ("left", "right")}  # "leaning" must be followed by one of these

# Thresholds. On the 4,500 bundled training digits the stroke width has median 1.93 px, with
# 26% of digits below 1.65 ("thin") and 30% above 2.2 ("bold"); the slant has median 0.14
# (MNIST digits lean right), with 19% below -0.1, 19% within +-0.07 and 41% above 0.2.
THIN_BELOW = 1.65  # pixels
BOLD_ABOVE = 2.2  # pixels
LEFT_BELOW = -0.1  # columns per row (about 6 degrees)
UPRIGHT_WITHIN = 0.07
RIGHT_ABOVE = 0.2  # about 11 degrees


class PromptError(ValueError):
    """A prompt uses a word outside the vocabulary, or has too many words."""


def vocabulary_text() -> str:
    """The vocabulary as a person reads it (for error messages and widgets)."""
    return (
        "digits: " + ", ".join(DIGIT_WORDS) + " (or 0-9); thickness: thin, bold; "
        "slant: leaning left, upright, leaning right; articles: a, an"
    )


def prompt_tokens(prompt: str) -> list[str]:
    """The vocabulary entries of one prompt, in order: ``"A bold 7, leaning right"`` ->
    ``["a", "bold", "seven", "leaning right"]``. Case and punctuation are ignored."""
    if not isinstance(prompt, str):
        raise PromptError(f"a prompt must be a string, got {type(prompt).__name__}.")
    words = re.findall(r"[a-z0-9]+", prompt.lower())
    tokens: list[str] = []
    i = 0
    while i < len(words):
        word = _ALIASES.get(words[i], words[i])
        if word in _PHRASES:
            follower = words[i + 1] if i + 1 < len(words) else None
            if follower not in _PHRASES[word]:
                raise PromptError(
                    f"in {prompt!r}: 'leaning' must be followed by 'left' or 'right'. "
                    f"The words the model knows: {vocabulary_text()}."
                )
            word, i = f"{word} {follower}", i + 1
        if word not in _IDS or word.startswith("<"):
            raise PromptError(
                f"unknown word {words[i]!r} in {prompt!r}. The words the model knows: "
                f"{vocabulary_text()}."
            )
        tokens.append(word)
        i += 1
    if len(tokens) > PROMPT_LENGTH - 1:
        raise PromptError(
            f"{prompt!r} has {len(tokens)} words; at most {PROMPT_LENGTH - 1} fit "
            "(a caption needs at most 5, e.g. 'a bold seven leaning right')."
        )
    return tokens


def tokenize(prompts: str | Sequence[str]) -> torch.Tensor:
    """Token ids ``(B, PROMPT_LENGTH)`` of one prompt or a list: ``<start>``, the words, padding.

    Raises :class:`PromptError` (a ``ValueError``) naming the unknown word and listing the
    vocabulary.
    """
    if isinstance(prompts, str):
        prompts = [prompts]
    if len(prompts) == 0:
        raise PromptError("no prompts given: pass a string or a non-empty list of strings.")
    ids = torch.full((len(prompts), PROMPT_LENGTH), PAD, dtype=torch.long)
    ids[:, 0] = START
    for row, prompt in enumerate(prompts):
        for col, token in enumerate(prompt_tokens(prompt), start=1):
            ids[row, col] = _IDS[token]
    return ids


def detokenize(ids: torch.Tensor) -> list[str]:
    """The prompts (as space-separated vocabulary entries) that ``ids (B, L)`` encode."""
    if ids.ndim != 2:
        raise ValueError(f"ids must have shape (B, L), got {tuple(ids.shape)}.")
    return [" ".join(VOCABULARY[i] for i in row.tolist() if i not in (PAD, START)) for row in ids]


# ----------------------------------------------------------------------------- attributes


def _check_images(images: torch.Tensor) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 1:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be grey-scale (B, 1, H, W) in [-1, 1], got {shape}.")
    return (images.detach().float().cpu().clamp(-1.0, 1.0) + 1.0) / 2.0  # brightness in [0, 1]


def ink(images: torch.Tensor) -> torch.Tensor:
    """Mean brightness of each image ``(B,)`` in [0, 1] (images in [-1, 1], white ink)."""
    return _check_images(images).mean(dim=(1, 2, 3))


def stroke_thickness(images: torch.Tensor) -> torch.Tensor:
    """Stroke width in pixels ``(B,)``: ``2 * area / perimeter`` of the ink (brightness > 0.5).

    The perimeter counts the edges between an inked and a blank pixel (the image border
    counts as blank). An image without ink has width 0.
    """
    on = (_check_images(images) > 0.5).float()[:, 0]  # (B, H, W)
    padded = torch.nn.functional.pad(on, (1, 1, 1, 1))
    edges = (padded[:, :, 1:] != padded[:, :, :-1]).sum(dim=(1, 2)) + (
        padded[:, 1:, :] != padded[:, :-1, :]
    ).sum(dim=(1, 2))
    area = on.sum(dim=(1, 2))
    return torch.where(edges > 0, 2.0 * area / edges.clamp(min=1), torch.zeros_like(area))


def slant(images: torch.Tensor) -> torch.Tensor:
    """How far the ink moves right per row going up ``(B,)``: ``-mu11 / mu02`` (image moments).

    With x the column and y the row (downwards), ``mu11`` is the ink-weighted covariance of x
    and y and ``mu02`` the variance of y. A digit leaning right has its top to the right:
    x falls as y grows, so mu11 < 0 and the slant is positive. 0 = upright; 0.2 = the top
    row is 0.2 columns further right per row (about 11 degrees). An image without ink has
    slant 0.
    """
    m = _check_images(images)[:, 0]  # (B, H, W)
    _, H, W = m.shape
    ys = torch.arange(H, dtype=m.dtype)[:, None].expand(H, W)
    xs = torch.arange(W, dtype=m.dtype)[None, :].expand(H, W)
    total = m.sum(dim=(1, 2)).clamp(min=1e-8)
    cx = (m * xs).sum(dim=(1, 2)) / total
    cy = (m * ys).sum(dim=(1, 2)) / total
    dx, dy = xs - cx[:, None, None], ys - cy[:, None, None]
    mu11 = (m * dx * dy).sum(dim=(1, 2)) / total
    mu02 = (m * dy * dy).sum(dim=(1, 2)) / total
    return torch.where(mu02 > 1e-8, -mu11 / mu02.clamp(min=1e-8), torch.zeros_like(mu11))


def thickness_word(width: float) -> str | None:
    """ "thin" below :data:`THIN_BELOW` px, "bold" above :data:`BOLD_ABOVE`, else None."""
    if width < THIN_BELOW:
        return "thin"
    if width > BOLD_ABOVE:
        return "bold"
    return None


def slant_word(value: float) -> str | None:
    """ "leaning left" / "upright" / "leaning right" (see the thresholds), None in the gaps."""
    if value < LEFT_BELOW:
        return "leaning left"
    if abs(value) <= UPRIGHT_WITHIN:
        return "upright"
    if value > RIGHT_ABOVE:
        return "leaning right"
    return None


@dataclass(frozen=True)
class DigitAttributes:
    """What the captions say about one digit, and the measurements behind the words."""

    digit: int
    width: float
    slant: float
    thickness: str | None
    slant_word: str | None

    @property
    def caption(self) -> str:
        return caption(self.digit, self.thickness, self.slant_word)


def digit_attributes(
    images: torch.Tensor, labels: Sequence[int] | torch.Tensor
) -> list[DigitAttributes]:
    """Measure every image and name its attributes (one :class:`DigitAttributes` each)."""
    labels = torch.as_tensor(labels).tolist()
    if len(labels) != images.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {len(labels)} labels: give one each.")
    widths, slants = stroke_thickness(images).tolist(), slant(images).tolist()
    return [
        DigitAttributes(int(d), w, s, thickness_word(w), slant_word(s))
        for d, w, s in zip(labels, widths, slants, strict=True)
    ]


def caption(digit: int | None, thickness: str | None = None, slant: str | None = None) -> str:
    """The canonical caption: ``caption(7, "bold", "leaning right")`` ->
    "a bold seven leaning right" (missing parts are left out)."""
    if digit is not None and not 0 <= int(digit) <= 9:
        raise ValueError(f"digit must be 0..9 or None, got {digit!r}.")
    if thickness not in (None, *THICKNESS_WORDS):
        raise ValueError(f"thickness must be one of {THICKNESS_WORDS} or None, got {thickness!r}.")
    if slant not in (None, *SLANT_WORDS):
        raise ValueError(f"slant must be one of {SLANT_WORDS} or None, got {slant!r}.")
    words = [w for w in (thickness, None if digit is None else DIGIT_WORDS[int(digit)]) if w]
    if not words:
        return slant or ""
    article = "an" if words[0][0] in "aeiou" else "a"
    return " ".join([article, *words, *([slant] if slant else [])])


#: (digit, thickness, slant) combinations whose digits are removed from the training set, so
#: that prompts asking for them test compositional generalisation ("a blue banana").
HELD_OUT: tuple[tuple[int, str, str], ...] = (
    (4, "thin", "leaning left"),
    (7, "bold", "leaning right"),
    (2, "bold", "leaning left"),
)


def is_held_out(attributes: DigitAttributes) -> bool:
    """Whether this digit has one of the :data:`HELD_OUT` combinations."""
    return (attributes.digit, attributes.thickness, attributes.slant_word) in HELD_OUT


def training_captions(
    attributes: Sequence[DigitAttributes],
    copies: int = 4,
    keep: float = 0.7,
    generator: torch.Generator | None = None,
) -> tuple[list[int], list[str]]:
    """Random captions for training: ``copies`` per digit, each attribute word kept with
    probability ``keep``, words in random order (so any order works at sampling time).

    Returns ``(index, captions)``: ``captions[k]`` describes digit ``index[k]``. Digits with a
    :data:`HELD_OUT` combination are left out entirely.
    """
    if copies < 1 or not 0.0 <= keep <= 1.0:
        raise ValueError(f"need copies >= 1 and keep in [0, 1], got {copies}, {keep}.")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    index, captions = [], []
    for i, a in enumerate(attributes):
        if is_held_out(a):
            continue
        for _ in range(copies):
            draws = torch.rand(3, generator=generator).tolist()
            words = [DIGIT_WORDS[a.digit]] if draws[0] < 0.9 else []
            if a.thickness and draws[1] < keep:
                words.append(a.thickness)
            if a.slant_word and draws[2] < keep:
                words.append(a.slant_word)
            order = torch.randperm(len(words), generator=generator).tolist()
            words = [words[j] for j in order]
            if words and torch.rand(1, generator=generator).item() < 0.5:
                words.insert(0, "an" if words[0][0] in "aeiou" else "a")
            index.append(i)
            captions.append(" ".join(words))
    return index, captions


def caption_dataset(
    images: torch.Tensor,
    labels: Sequence[int] | torch.Tensor,
    copies: int = 4,
    keep: float = 0.7,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The text model's training set: ``(images, token ids, captions)``, ``copies`` random
    captions per digit (:func:`training_captions`), the :data:`HELD_OUT` combinations removed.

    Train on it exactly like on labels: ``train(model, schedule, images, tokens, ...)``.
    """
    attributes = digit_attributes(images, labels)
    index, captions = training_captions(
        attributes, copies, keep, torch.Generator().manual_seed(seed)
    )
    return images[torch.tensor(index)], tokenize(captions), captions
