"""The prompt-following measurement tells a model that obeys the words from one that does not.

Two stand-in "models" predict x_0 directly (``prediction = "x0"``), so DDIM lands exactly on
their answer: one returns a real training digit that has the prompt's digit, thickness and
slant; the other returns a digit of the right class but ignores the other words.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from diffusion_edu.data import load_mnist
from diffusion_edu.prompt_following import measure_prompt_following
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.text import (
    DIGIT_WORDS,
    PAD,
    START,
    VOCABULARY,
    digit_attributes,
)


class _LookUpModel:
    """Answers a prompt with a real digit that fits it (or, ``obey=False``, any of its class)."""

    prediction = "x0"

    def __init__(self, obey: bool) -> None:
        data = load_mnist("train", verbose=False)
        self.images = data.images
        self.attrs = digit_attributes(data.images, data.labels)
        self.obey = obey
        self.config = SimpleNamespace(text_vocab_size=len(VOCABULARY))

    def null_condition(self, cond: torch.Tensor) -> torch.Tensor:
        null = torch.full_like(cond, PAD)
        null[:, 0] = START
        return null

    def _pick(self, words: list[str], k: int) -> torch.Tensor:
        digit = next((DIGIT_WORDS.index(w) for w in words if w in DIGIT_WORDS), 0)
        fits = [i for i, a in enumerate(self.attrs) if a.digit == digit]
        if self.obey:
            for word in words:
                if word in ("thin", "bold"):
                    fits = [i for i in fits if self.attrs[i].thickness == word]
                if word in ("leaning left", "upright", "leaning right"):
                    fits = [i for i in fits if self.attrs[i].slant_word == word]
        return self.images[fits[k % len(fits)]]

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        # x_t's first pixel tells the copies apart (same noise -> same pick for every prompt)
        out = []
        for row, x in zip(cond.tolist(), x_t, strict=True):
            words = [VOCABULARY[i] for i in row if i not in (PAD, START)]
            out.append(self._pick(words, int(abs(x[0, 0, 0].item()) * 1000)))
        return torch.stack(out)


def test_a_model_that_obeys_scores_high_and_one_that_ignores_the_words_scores_low() -> None:
    schedule = NoiseSchedule.cosine(T=100)
    kwargs = dict(per_prompt=4, seed=0, sampler="ddim", steps=3, guidance=1.0)
    good = measure_prompt_following(_LookUpModel(obey=True), schedule, **kwargs)
    deaf = measure_prompt_following(_LookUpModel(obey=False), schedule, **kwargs)
    assert good["digit"]["class_agreement"] >= 0.95 and deaf["digit"]["class_agreement"] >= 0.95
    assert good["thickness"]["pairs"] == 40 and good["slant"]["pairs"] == 40
    assert good["thickness"]["bold_wider_stroke"] == 1.0  # bold > 2.2 px > 1.65 px > thin
    assert good["slant"]["right_leans_further_right"] == 1.0
    assert good["thickness"]["mean_width_bold_px"] > good["thickness"]["mean_width_thin_px"]
    # ignoring the words: the pair is the same image, so "wider" and "further right" never hold
    assert deaf["thickness"]["bold_wider_stroke"] == 0.0
    assert deaf["slant"]["right_leans_further_right"] == 0.0
    # held-out combinations are scored the same way (the stand-in has seen every digit)
    assert set(good["held_out"]) == {
        "a thin four leaning left", "a bold seven leaning right", "a bold two leaning left"
    }  # fmt: skip
    for scores in good["held_out"].values():
        assert scores["measured_words_match"] == 1.0
        assert scores["thickness_pairs_right_way"] == 1.0
        assert scores["slant_pairs_right_way"] == 1.0


def test_measure_prompt_following_rejects_a_label_model_and_bad_counts() -> None:
    schedule = NoiseSchedule.cosine(T=10)
    label_model = SimpleNamespace(config=SimpleNamespace(num_classes=10))
    with pytest.raises(ValueError, match="needs a text-conditioned model"):
        measure_prompt_following(label_model, schedule)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="per_prompt must be >= 1"):
        measure_prompt_following(_LookUpModel(True), schedule, per_prompt=0)


def test_the_shipped_text_model_follows_prompts_and_matches_its_record() -> None:
    from diffusion_edu import load_pretrained, pretrained_info, sample
    from diffusion_edu.metrics import class_agreement
    from diffusion_edu.text import caption, slant, stroke_thickness

    info = pretrained_info("mnist-text")
    record = info.record["prompt_following"]
    goals = info.record["goals"]
    assert record["digit"]["class_agreement"] >= goals["class_agreement"]
    assert record["thickness"]["bold_wider_stroke"] >= goals["bold_wider_stroke"]
    assert record["slant"]["right_leans_further_right"] >= goals["right_leans_further_right"]
    assert info.recommended["guidance"] == record["sampling"]["guidance"]
    assert info.weights.stat().st_size < 3e6  # "a few MB at most"
    model, schedule = load_pretrained("mnist-text")
    settings = {**info.recommended, "steps": 20, "progress": False}
    noise = torch.randn(10, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    digits = sample(model, schedule, prompts=[caption(d) for d in range(10)], x_T=noise,
                    **settings)  # fmt: skip
    assert class_agreement(digits, list(range(10))) >= 0.9
    bold = sample(model, schedule, prompts=["a bold 3"] * 10, x_T=noise, **settings)
    thin = sample(model, schedule, prompts=["a thin 3"] * 10, x_T=noise, **settings)
    assert (stroke_thickness(bold) > stroke_thickness(thin)).float().mean() >= 0.9
    right = sample(model, schedule, prompts=["5 leaning right"] * 10, x_T=noise, **settings)
    left = sample(model, schedule, prompts=["5 leaning left"] * 10, x_T=noise, **settings)
    assert (slant(right) > slant(left)).float().mean() >= 0.9
