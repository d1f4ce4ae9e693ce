"""The text encoder and cross-attention (models/text_encoder.py) inside the U-Net: the
"no prompt", attention maps, bad input, and learning."""

from __future__ import annotations

import pytest
import torch

from diffusion_edu.checkpoints import load_checkpoint, save_checkpoint
from diffusion_edu.models import UNet, UNetConfig, null_condition
from diffusion_edu.samplers import sample
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.text import PAD, PROMPT_LENGTH, START, VOCABULARY, tokenize

TINY_TEXT = dict(
    base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention=False, groups=4,
    num_heads=2, text_vocab_size=len(VOCABULARY), text_dim=16, text_heads=2,
)  # fmt: skip


def _model(seed: int = 0, **overrides: object) -> UNet:
    torch.manual_seed(seed)
    model = UNet(UNetConfig(**{**TINY_TEXT, **overrides}))  # type: ignore[arg-type]
    for layer in model.cross_attention_layers().values():  # zero-initialised: wake them up
        torch.nn.init.normal_(layer.out.weight, std=0.2)
    torch.nn.init.normal_(model.conv_out.weight, std=0.2)
    return model


def test_forward_shapes_and_the_empty_prompt() -> None:
    model = _model()
    x = torch.randn(3, 1, 28, 28)
    tokens = tokenize(["a bold seven", "four leaning left", ""])
    assert model(x, 10, tokens).shape == x.shape
    null = null_condition(model, tokens)
    assert null is not None and null.shape == tokens.shape
    assert (null[:, 0] == START).all() and (null[:, 1:] == PAD).all()
    # calling without a condition means the empty prompt
    assert torch.equal(model(x, 10, None), model(x, 10, null))
    assert model.reads_text and model.null_label is None


def test_the_prompt_changes_the_prediction_and_padding_does_not_leak() -> None:
    model = _model().eval()
    x = torch.randn(2, 1, 28, 28)
    a = model(x, 500, tokenize(["a seven", "a seven"]))
    b = model(x, 500, tokenize(["a two", "a two"]))
    assert (a - b).abs().max() > 1e-3
    # padding is masked out everywhere: the same prompt without its padding gives the same
    # prediction (the encoder's self-attention and the cross-attention both ignore it)
    tokens = tokenize(["a seven", "a seven"])
    assert torch.allclose(model(x, 500, tokens[:, :3]), a, atol=1e-5)


def test_word_order_only_matters_through_the_position_embedding() -> None:
    model = _model().eval()
    with torch.no_grad():
        model.text_encoder.pos_emb.zero_()
    x = torch.randn(1, 1, 28, 28)
    a = model(x, 300, tokenize("a bold seven leaning right"))
    b = model(x, 300, tokenize("leaning right seven bold a"))
    assert torch.allclose(a, b, atol=1e-5)  # without positions a Transformer is order-blind


def test_cross_attention_maps_are_distributions_over_the_real_tokens() -> None:
    model = _model()
    tokens = tokenize(["a bold seven", "nine"])
    maps = model.cross_attention_maps(torch.randn(2, 1, 28, 28), 100, tokens)
    assert set(maps) == set(model.cross_attention_layers())
    for name, m in maps.items():
        assert m.shape[:2] == (2, PROMPT_LENGTH), name
        assert torch.allclose(m.sum(dim=1), torch.ones(m.shape[0], *m.shape[2:]), atol=1e-5)
        pad = (tokens == PAD)[:, :, None, None].expand_as(m)
        assert (m[pad] == 0).all()  # padding gets no attention
    assert {m.shape[-1] for m in maps.values()} == {14}  # TINY: one downsampled level
    # the layers are back to their fast path afterwards
    assert all(not layer.keep_attention for layer in model.cross_attention_layers().values())


def test_cross_attention_maps_need_a_text_model() -> None:
    label_model = UNet(UNetConfig(base_channels=8, channel_mults=(1, 2), groups=4, num_classes=3))
    with pytest.raises(ValueError, match="no text encoder"):
        label_model.cross_attention_maps(torch.randn(1, 1, 28, 28), 1, tokenize("a one"))


@pytest.mark.parametrize(
    "cond, match",
    [
        (torch.tensor([1, 2]), r"this model reads prompts: give token ids of shape \(2, 8\)"),
        (torch.ones(2, 9, dtype=torch.long), "at most 8 token ids"),
        (torch.full((2, 8), 99), r"token ids must lie in 0\.\.18"),
        (torch.ones(2, 8), "this model reads prompts"),
    ],
)
def test_bad_token_ids_are_clear_errors(cond: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _model()(torch.randn(2, 1, 28, 28), 5, cond)


def test_bad_text_configs() -> None:
    with pytest.raises(ValueError, match="num_classes .* or text_vocab_size .*not both"):
        UNetConfig(num_classes=10, text_vocab_size=20)
    with pytest.raises(ValueError, match="text_heads=3 must divide text_dim=16"):
        UNetConfig(**{**TINY_TEXT, "text_heads": 3})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="text_vocab_size must be >= 3"):
        UNetConfig(text_vocab_size=2)


def test_label_models_keep_their_parameters_and_the_checkpoint_round_trips(tmp_path) -> None:
    # adding text support must not change a label model (the shipped weights load as before)
    label = UNet(UNetConfig(base_channels=8, channel_mults=(1, 2), groups=4, num_classes=10))
    assert not any("cross" in n or "text" in n for n, _ in label.named_parameters())
    model = _model()
    schedule = NoiseSchedule.cosine(T=50)
    path = save_checkpoint(tmp_path / "text.pt", model, schedule)
    again = load_checkpoint(path).build_model()
    x, tokens = torch.randn(2, 1, 28, 28), tokenize(["a one", "bold two"])
    assert torch.equal(again.eval()(x, 7, tokens), model.eval()(x, 7, tokens))


def test_overfits_two_captioned_images_and_samples_the_one_asked_for() -> None:
    # Two 16x16 images, each with its own caption. After training on them the model must draw
    # the first image for the first caption and the second for the second, from the same noise.
    torch.manual_seed(0)
    model = UNet(UNetConfig(**{**TINY_TEXT, "image_size": 16}))  # type: ignore[arg-type]
    images = -torch.ones(2, 1, 16, 16)
    images[0, :, :, :8] = 1.0  # left half lit
    images[1, :, :, 8:] = 1.0  # right half lit
    tokens = tokenize(["a thin one", "a bold seven leaning right"])
    schedule = NoiseSchedule.cosine(T=100)
    from diffusion_edu.training import diffusion_loss

    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(400):
        idx = torch.randint(0, 2, (32,), generator=g)
        loss = diffusion_loss(model, images[idx], schedule, tokens[idx], g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    x_T = torch.randn(1, 1, 16, 16, generator=g).expand(2, 1, 16, 16).contiguous()
    drawn = sample(model, schedule, cond=tokens, sampler="ddim", steps=20, x_T=x_T,
                   progress=False)  # fmt: skip
    errors = (drawn[:, None] - images[None]).square().mean(dim=(2, 3, 4))  # (drawn, target)
    assert errors[0, 0] < 0.2 and errors[1, 1] < 0.2, errors
    assert errors[0, 1] > 0.8 and errors[1, 0] > 0.8, errors
