"""Does a text-conditioned model do what the prompt says? Measured with the caption functions.

The words of a prompt are checked with the same functions that wrote the training captions
(:mod:`diffusion_edu.text`), and the digit with the course's classifier:

* **digit**: class agreement (:func:`~diffusion_edu.metrics.class_agreement`) of the samples
  of every prompt that names a digit;
* **thickness**: for each digit, "a thin D" and "a bold D" from the *same* starting noise:
  the fraction of pairs where the bold one has the wider stroke
  (:func:`~diffusion_edu.text.stroke_thickness`), and where it has more ink;
* **slant**: "a D leaning left" and "a D leaning right" from the same noise: the fraction of
  pairs where the right one leans further right (:func:`~diffusion_edu.text.slant`);
* **held-out combinations** (:data:`~diffusion_edu.text.HELD_OUT`, never in the training
  captions, their digits not even in the training images): each scored the same way against
  the prompt that flips its thickness and the one that flips its slant, plus the fraction of
  samples whose measured words are exactly the prompt's.

Pairs from the same noise make the comparison fair: the only difference between the two
images is the word that changed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from diffusion_edu.metrics import class_agreement
from diffusion_edu.samplers import sample
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.text import (
    DIGIT_WORDS,
    HELD_OUT,
    caption,
    ink,
    slant,
    slant_word,
    stroke_thickness,
    thickness_word,
    tokenize,
)

__all__ = ["measure_prompt_following", "sample_prompts"]


def sample_prompts(
    model: Callable[..., torch.Tensor],
    schedule: NoiseSchedule,
    prompts: Sequence[str],
    x_T: torch.Tensor,
    **sample_kwargs: Any,
) -> torch.Tensor:
    """One image per prompt, each from the matching starting noise ``x_T[i]``."""
    return sample(  # type: ignore[return-value]
        model, schedule, cond=tokenize(list(prompts)), x_T=x_T, progress=False, **sample_kwargs
    )


def _flip_thickness(word: str) -> str:
    return "bold" if word == "thin" else "thin"


def _flip_slant(word: str) -> str:
    return {"leaning left": "leaning right", "leaning right": "leaning left"}.get(word, word)


def measure_prompt_following(
    model: Callable[..., torch.Tensor],
    schedule: NoiseSchedule,
    per_prompt: int = 20,
    seed: int = 0,
    digits: Sequence[int] = tuple(range(10)),
    **sample_kwargs: Any,
) -> dict[str, Any]:
    """Score prompt-following (see the module docstring); returns plain data for a JSON record.

    Args:
        model, schedule: a text-conditioned model (``UNetConfig(text_vocab_size=...)``).
        per_prompt: samples per prompt (= pairs per digit for thickness and slant).
        seed: seeds the starting noises (one set, reused by every prompt of a digit).
        digits: which digits to prompt for.
        sample_kwargs: for :func:`~diffusion_edu.sample` (sampler, steps, guidance, ...).
    """
    if per_prompt < 1:
        raise ValueError(f"per_prompt must be >= 1, got {per_prompt}.")
    config = getattr(model, "config", None)
    if getattr(config, "text_vocab_size", None) is None:
        raise ValueError("measure_prompt_following needs a text-conditioned model.")
    generator = torch.Generator().manual_seed(seed)
    noise = {d: torch.randn(per_prompt, 1, 28, 28, generator=generator) for d in digits}

    def draw(digit: int, thickness: str | None, slant_text: str | None) -> torch.Tensor:
        text = caption(digit, thickness, slant_text)
        return sample_prompts(model, schedule, [text] * per_prompt, noise[digit], **sample_kwargs)

    all_images, all_labels = [], []
    thicker, more_ink, width_thin, width_bold = [], [], [], []
    righter, slant_left, slant_right = [], [], []
    for d in digits:
        plain = draw(d, None, None)
        thin, bold = draw(d, "thin", None), draw(d, "bold", None)
        left, right = draw(d, None, "leaning left"), draw(d, None, "leaning right")
        for images in (plain, thin, bold, left, right):
            all_images.append(images)
            all_labels.append(torch.full((per_prompt,), d))
        w_thin, w_bold = stroke_thickness(thin), stroke_thickness(bold)
        thicker.append(w_bold > w_thin)
        more_ink.append(ink(bold) > ink(thin))
        width_thin.append(w_thin)
        width_bold.append(w_bold)
        s_left, s_right = slant(left), slant(right)
        righter.append(s_right > s_left)
        slant_left.append(s_left)
        slant_right.append(s_right)

    def fraction(parts: list[torch.Tensor]) -> float:
        return round(float(torch.cat(parts).float().mean()), 4)

    def mean(parts: list[torch.Tensor]) -> float:
        return round(float(torch.cat(parts).mean()), 3)

    result: dict[str, Any] = {
        "samples_per_prompt": per_prompt,
        "sampling": {k: v for k, v in sample_kwargs.items() if isinstance(v, (int, float, str))},
        "digit": {
            "prompts": "'a D', 'a thin D', 'a bold D', 'a D leaning left', 'a D leaning right'",
            "samples": int(sum(x.shape[0] for x in all_labels)),
            "class_agreement": round(
                class_agreement(torch.cat(all_images), torch.cat(all_labels)), 4
            ),
        },
        "thickness": {
            "pairs": int(sum(x.numel() for x in thicker)),
            "bold_wider_stroke": fraction(thicker),
            "bold_more_ink": fraction(more_ink),
            "mean_width_thin_px": mean(width_thin),
            "mean_width_bold_px": mean(width_bold),
        },
        "slant": {
            "pairs": int(sum(x.numel() for x in righter)),
            "right_leans_further_right": fraction(righter),
            "mean_slant_left": mean(slant_left),
            "mean_slant_right": mean(slant_right),
        },
        "held_out": {},
    }
    for d, thickness, slant_text in HELD_OUT:
        if d not in noise:
            continue
        asked = draw(d, thickness, slant_text)
        other_thickness = draw(d, _flip_thickness(thickness), slant_text)
        other_slant = draw(d, thickness, _flip_slant(slant_text))
        w, w_other = stroke_thickness(asked), stroke_thickness(other_thickness)
        wider = (w > w_other) if thickness == "bold" else (w < w_other)
        s, s_other = slant(asked), slant(other_slant)
        leans = (s > s_other) if slant_text == "leaning right" else (s < s_other)
        words = [
            (thickness_word(a), slant_word(b)) == (thickness, slant_text)
            for a, b in zip(w.tolist(), s.tolist(), strict=True)
        ]
        result["held_out"][caption(d, thickness, slant_text)] = {
            "class_agreement": round(class_agreement(asked, torch.full((per_prompt,), d)), 4),
            "thickness_pairs_right_way": round(float(wider.float().mean()), 4),
            "slant_pairs_right_way": round(float(leans.float().mean()), 4),
            "measured_words_match": round(sum(words) / len(words), 4),
        }
    result["digit_words"] = [DIGIT_WORDS[d] for d in digits]
    return result
