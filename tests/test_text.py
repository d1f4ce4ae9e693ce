"""The tokenizer, the attribute functions behind the captions, and the caption data set."""

from __future__ import annotations

import pytest
import torch

from diffusion_edu import text as T
from diffusion_edu.data import load_mnist


def _stroke(width: int, angle_cols_per_row: float = 0.0, size: int = 28) -> torch.Tensor:
    """A vertical bar ``width`` pixels wide, 16 rows tall, sheared by ``angle`` (columns per row
    going up), as a (1, 1, size, size) image in [-1, 1]."""
    img = -torch.ones(1, 1, size, size)
    for row in range(6, 22):
        centre = 14 + angle_cols_per_row * (14 - row)  # higher rows (smaller index) further right
        left = int(round(centre - width / 2))
        img[0, 0, row, left : left + width] = 1.0
    return img


# --------------------------------------------------------------------------- tokenizer
def test_tokenize_any_order_numerals_and_phrases() -> None:
    ids = T.tokenize(["a bold seven leaning right", "Leaning right, BOLD 7 a"])
    assert ids.shape == (2, T.PROMPT_LENGTH) and ids.dtype == torch.long
    assert (ids[:, 0] == T.START).all()
    assert sorted(ids[0].tolist()) == sorted(ids[1].tolist())  # same words, other order
    assert T.detokenize(ids[:1]) == ["a bold seven leaning right"]
    assert T.prompt_tokens("an 8 upright") == ["an", "eight", "upright"]
    assert T.prompt_tokens("thin one leaning left") == ["thin", "one", "leaning left"]
    assert (T.tokenize("")[0, 1:] == T.PAD).all()  # the empty prompt: <start> only


def test_every_vocabulary_entry_round_trips() -> None:
    words = [w for w in T.VOCABULARY if not w.startswith("<")]
    for word in words:
        assert T.detokenize(T.tokenize(word)) == [word]
    for d in range(10):
        assert T.prompt_tokens(str(d)) == [T.DIGIT_WORDS[d]]


@pytest.mark.parametrize(
    "prompt, match",
    [
        ("a purple seven", r"unknown word 'purple'.*digits: zero, one"),
        ("a seven leaning", r"'leaning' must be followed by 'left' or 'right'"),
        ("seven leaning up", r"'leaning' must be followed"),
        ("12", r"unknown word '12'"),
        ("pad <pad> seven", r"unknown word 'pad'"),
        ("a a a a a a a a", r"has 8 words; at most 7 fit"),
    ],
)
def test_bad_prompts_are_clear_errors_listing_the_vocabulary(prompt: str, match: str) -> None:
    with pytest.raises(T.PromptError, match=match):
        T.tokenize(prompt)


def test_bad_prompt_types() -> None:
    with pytest.raises(T.PromptError, match="no prompts"):
        T.tokenize([])
    with pytest.raises(T.PromptError, match="must be a string"):
        T.tokenize([7])  # type: ignore[list-item]
    assert issubclass(T.PromptError, ValueError)


# --------------------------------------------------------------------------- attributes
@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_stroke_thickness_of_a_bar_is_close_to_its_width(width: int) -> None:
    # area = 16 w, perimeter = 2 (16 + w): 2 area / perimeter = 16 w / (16 + w) -> about w.
    measured = T.stroke_thickness(_stroke(width)).item()
    assert measured == pytest.approx(16 * width / (16 + width), rel=1e-6)


def test_thicker_strokes_measure_thicker_and_blank_is_zero() -> None:
    widths = T.stroke_thickness(torch.cat([_stroke(w) for w in (1, 2, 3, 5)]))
    assert (widths.diff() > 0).all()
    assert T.stroke_thickness(-torch.ones(1, 1, 28, 28)).item() == 0.0
    assert T.slant(-torch.ones(1, 1, 28, 28)).item() == 0.0


@pytest.mark.parametrize("shear", [-0.4, -0.2, 0.0, 0.2, 0.4])
def test_slant_recovers_a_known_shear(shear: float) -> None:
    # A sheared bar's ink moves `shear` columns right per row going up: slant = shear (up to
    # pixel rounding).
    assert T.slant(_stroke(3, shear)).item() == pytest.approx(shear, abs=0.04)


def test_slant_sign_flips_with_a_mirror_image_and_ignores_shifts() -> None:
    digits = load_mnist("train", verbose=False).images[:64]
    s = T.slant(digits)
    assert torch.allclose(T.slant(digits.flip(-1)), -s, atol=1e-4)
    shifted = torch.roll(digits, shifts=(2, -1), dims=(2, 3))  # digits have blank borders
    assert torch.allclose(T.slant(shifted), s, atol=1e-4)
    assert torch.allclose(T.stroke_thickness(shifted), T.stroke_thickness(digits))


def test_words_follow_the_documented_thresholds() -> None:
    assert T.thickness_word(T.THIN_BELOW - 0.01) == "thin"
    assert T.thickness_word(T.BOLD_ABOVE + 0.01) == "bold"
    assert T.thickness_word((T.THIN_BELOW + T.BOLD_ABOVE) / 2) is None
    assert T.slant_word(T.LEFT_BELOW - 0.01) == "leaning left"
    assert T.slant_word(0.0) == "upright"
    assert T.slant_word(T.RIGHT_ABOVE + 0.01) == "leaning right"
    assert T.slant_word((T.UPRIGHT_WITHIN + T.RIGHT_ABOVE) / 2) is None


def test_attribute_images_must_be_grey_scale_batches() -> None:
    with pytest.raises(ValueError, match=r"grey-scale \(B, 1, H, W\)"):
        T.slant(torch.zeros(28, 28))
    with pytest.raises(ValueError, match="grey-scale"):
        T.stroke_thickness(torch.zeros(2, 3, 28, 28))
    with pytest.raises(ValueError, match="2 images but 3 labels"):
        T.digit_attributes(torch.zeros(2, 1, 28, 28), [1, 2, 3])


def test_real_digits_get_every_word_often_enough_to_learn_it() -> None:
    data = load_mnist("train", verbose=False)
    attrs = T.digit_attributes(data.images, data.labels)
    for word in T.THICKNESS_WORDS:
        share = sum(a.thickness == word for a in attrs) / len(attrs)
        assert 0.15 < share < 0.45, (word, share)
    for word in T.SLANT_WORDS:
        share = sum(a.slant_word == word for a in attrs) / len(attrs)
        assert 0.1 < share < 0.5, (word, share)
    # thin and bold mean what they say: more ink per digit on average
    ink = T.ink(data.images)
    bold = torch.tensor([a.thickness == "bold" for a in attrs])
    thin = torch.tensor([a.thickness == "thin" for a in attrs])
    assert ink[bold].mean() > 1.3 * ink[thin].mean()


# --------------------------------------------------------------------------- captions
def test_caption_grammar_and_errors() -> None:
    assert T.caption(7, "bold", "leaning right") == "a bold seven leaning right"
    assert T.caption(8) == "an eight"
    assert T.caption(8, "thin") == "a thin eight"
    assert T.caption(None, "bold") == "a bold"
    assert T.caption(None) == ""
    for text in (T.caption(d, th, sl) for d in range(10) for th in T.THICKNESS_WORDS
                 for sl in T.SLANT_WORDS):  # fmt: skip
        T.tokenize(text)  # every caption is a valid prompt
    with pytest.raises(ValueError, match="digit must be 0..9"):
        T.caption(10)
    with pytest.raises(ValueError, match="thickness must be one of"):
        T.caption(1, "fat")
    with pytest.raises(ValueError, match="slant must be one of"):
        T.caption(1, None, "sideways")


def test_caption_dataset_holds_out_the_combinations_and_describes_each_digit() -> None:
    data = load_mnist("train", verbose=False)
    attrs = T.digit_attributes(data.images, data.labels)
    held = sum(T.is_held_out(a) for a in attrs)
    assert held > 20  # each combination has real digits, which the model never sees
    images, tokens, captions = T.caption_dataset(data.images, data.labels, copies=2, seed=0)
    assert images.shape[0] == tokens.shape[0] == len(captions) == 2 * (4500 - held)
    index, texts = T.training_captions(attrs, copies=2, generator=torch.Generator().manual_seed(0))
    assert texts == captions and torch.equal(images, data.images[torch.tensor(index)])
    for i, words in zip(index, texts, strict=True):
        a, tokens_i = attrs[i], T.prompt_tokens(words)
        assert not T.is_held_out(a)
        # every word is true of its image: the digit, the measured thickness and slant
        assert set(tokens_i) & set(T.DIGIT_WORDS) <= {T.DIGIT_WORDS[a.digit]}
        assert set(tokens_i) & set(T.THICKNESS_WORDS) <= {a.thickness}
        assert set(tokens_i) & set(T.SLANT_WORDS) <= {a.slant_word}
    # every word appears, in more than one position
    seen = {w for c in captions for w in T.prompt_tokens(c)}
    assert set(T.DIGIT_WORDS) | set(T.THICKNESS_WORDS) | set(T.SLANT_WORDS) <= seen
    lasts = {T.prompt_tokens(c)[-1] for c in captions if len(T.prompt_tokens(c)) >= 2}
    assert lasts & set(T.DIGIT_WORDS) and lasts & set(T.SLANT_WORDS)
