"""The Diffusion Transformer (diffusion_edu.models.dit): patches, the sin-cos position
embedding, adaLN-Zero, conditioning, learning, and working with the course's sampler, loss,
loop and checkpoints; bad input."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from diffusion_edu.checkpoints import load_checkpoint, save_checkpoint
from diffusion_edu.loop import TensorBatches, TrainConfig, Trainer
from diffusion_edu.models import (
    MODEL_CLASSES,
    build_model,
    config_to_dict,
    count_parameters,
    model_kind,
)
from diffusion_edu.models.dit import (
    DiT,
    DiTConfig,
    patchify,
    sincos_2d_position_embedding,
    unpatchify,
)
from diffusion_edu.samplers import sample
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.training import DiffusionLoss

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

TINY = dict(hidden_size=32, depth=2, num_heads=2)


def _tiny(seed: int = 0, **changes: object) -> DiT:
    torch.manual_seed(seed)
    return DiT(DiTConfig(**(TINY | changes)))


def _randomise_zero_layers(model: DiT, std: float = 0.1) -> DiT:
    # adaLN-Zero makes a fresh model output 0 whatever its inputs. Give the zero-initialised
    # layers weights so that differences inside the network become visible at the output.
    with torch.no_grad():
        for param in model.parameters():
            if not param.any():
                param.normal_(std=std)
    return model


# ----------------------------------------------------------------------------- patches
@pytest.mark.parametrize("seed", range(6))
def test_unpatchify_inverts_patchify_on_random_tensors(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    p = int(torch.randint(1, 6, (), generator=g))
    grid = int(torch.randint(1, 6, (), generator=g))
    B, C = int(torch.randint(1, 4, (), generator=g)), int(torch.randint(1, 4, (), generator=g))
    x = torch.randn(B, C, grid * p, grid * p, generator=g)
    tokens = patchify(x, p)
    assert tokens.shape == (B, grid * grid, C * p * p)
    assert torch.equal(unpatchify(tokens, p, C), x)
    other = torch.randn(B, grid * grid, C * p * p, generator=g)
    assert torch.equal(patchify(unpatchify(other, p, C), p), other)


def test_patchify_numbers_patches_row_by_row() -> None:
    # Brute force: token row * grid + col holds the pixels of that patch, channel first.
    x = torch.randn(2, 3, 12, 12)
    p, grid = 4, 3
    tokens = patchify(x, p)
    for row in range(grid):
        for col in range(grid):
            patch = x[:, :, row * p : (row + 1) * p, col * p : (col + 1) * p]  # (B, C, p, p)
            assert torch.equal(tokens[:, row * grid + col], patch.reshape(2, -1))


def test_the_patch_embedding_is_a_linear_map_of_each_patch() -> None:
    # Sec. 3.2 / Fig. 4: the strided conv = one shared linear layer applied to every patch.
    model = _tiny(patch_size=4)
    x = torch.randn(2, 1, 28, 28)
    conv = model.patch_embed(x).flatten(2).transpose(1, 2)  # (B, 49, D)
    W, b = model.patch_embed.weight.flatten(1), model.patch_embed.bias  # (D, 16), (D,)
    assert_close(conv, patchify(x, 4) @ W.T + b)


def test_patchify_and_unpatchify_reject_shapes_that_do_not_tile() -> None:
    with pytest.raises(ValueError, match="patch_size=3 must divide"):
        patchify(torch.randn(1, 1, 8, 8), 3)
    with pytest.raises(ValueError, match="N a square number"):
        unpatchify(torch.randn(1, 5, 4), 2, 1)


# ----------------------------------------------------------------------------- position embedding
def test_sincos_embedding_by_hand() -> None:
    # dim = 4: one frequency (w_0 = 1) per axis; [sin(col), cos(col), sin(row), cos(row)].
    s, c = math.sin(1.0), math.cos(1.0)
    want = torch.tensor(
        [
            [0.0, 1.0, 0.0, 1.0],  # row 0, col 0
            [s, c, 0.0, 1.0],  # row 0, col 1
            [0.0, 1.0, s, c],  # row 1, col 0
            [s, c, s, c],  # row 1, col 1
        ]
    )
    assert_close(sincos_2d_position_embedding(2, 4), want)
    # dim = 8: frequencies w_0 = 1, w_1 = 10000^(-1/2) = 0.01; token 1 is (row 0, col 1).
    want_1 = [s, math.sin(0.01), c, math.cos(0.01), 0.0, 0.0, 1.0, 1.0]
    assert_close(sincos_2d_position_embedding(2, 8)[1], torch.tensor(want_1))


def test_sincos_embedding_matches_the_formula_for_every_entry() -> None:
    grid, dim = 7, 32
    K = dim // 4
    emb = sincos_2d_position_embedding(grid, dim)
    want = torch.zeros(grid * grid, dim)
    for row in range(grid):
        for col in range(grid):
            for k in range(K):
                w = 10_000.0 ** (-k / K)
                n = row * grid + col
                want[n, k], want[n, K + k] = math.sin(col * w), math.cos(col * w)
                want[n, 2 * K + k], want[n, 3 * K + k] = math.sin(row * w), math.cos(row * w)
    assert_close(emb, want, atol=1e-6, rtol=0)


@pytest.mark.parametrize("grid, dim", [(1, 4), (7, 32), (14, 64), (16, 8)])
def test_sincos_embedding_shape_bounds_and_distinct_rows(grid: int, dim: int) -> None:
    emb = sincos_2d_position_embedding(grid, dim)
    assert emb.shape == (grid * grid, dim) and emb.dtype == torch.float32
    assert emb.abs().max() <= 1.0
    if grid > 1:  # every patch position gets its own vector
        dist = torch.cdist(emb, emb) + torch.eye(grid * grid) * 1e9
        assert dist.min() > 1e-3


def test_the_position_embedding_is_fixed_not_learned() -> None:
    model = _tiny()
    assert "pos_embed" not in dict(model.named_parameters())
    assert "pos_embed" not in model.state_dict()  # rebuilt from the config, never saved
    assert_close(model.pos_embed, sincos_2d_position_embedding(7, 32), rtol=0, atol=0)


def test_sincos_embedding_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="multiple of 4"):
        sincos_2d_position_embedding(4, 6)
    with pytest.raises(ValueError, match="grid_size must be >= 1"):
        sincos_2d_position_embedding(0, 8)


# ----------------------------------------------------------------------------- the model
@pytest.mark.parametrize(
    "image_size, patch_size", [(28, 4), (28, 7), (28, 14), (8, 1), (8, 2), (8, 8)]
)
@pytest.mark.parametrize("num_classes, channels", [(None, 1), (10, 3)])
def test_output_has_the_input_shape(
    image_size: int, patch_size: int, num_classes: int | None, channels: int
) -> None:
    model = _randomise_zero_layers(
        _tiny(
            image_size=image_size,
            patch_size=patch_size,
            num_classes=num_classes,
            in_channels=channels,
        )  # fmt: skip
    )
    x = torch.randn(3, channels, image_size, image_size)
    labels = torch.tensor([0, 5, 9]) if num_classes else None
    out = model(x, torch.tensor([1, 500, 1000]), labels)
    assert out.shape == x.shape
    assert out.abs().max() > 0  # shape alone would also hold for the zero output


def test_a_fresh_model_predicts_exactly_zero_and_every_block_is_the_identity() -> None:
    # adaLN-Zero (Sec. 3.2): gates and decoder start at zero.
    model = _tiny(num_classes=10)
    x = torch.randn(4, 1, 28, 28)
    out = model(x, torch.tensor([1, 10, 100, 1000]), torch.tensor([0, 3, 9, 10]))
    assert torch.equal(out, torch.zeros_like(x))
    h, c = torch.randn(4, 49, 32), torch.randn(4, 32)
    for block in model.blocks:
        assert torch.equal(block(h, c), h)


def test_the_prediction_depends_on_t_and_an_int_t_means_every_image() -> None:
    model = _randomise_zero_layers(_tiny())
    x = torch.randn(1, 1, 28, 28)
    assert not torch.allclose(model(x, 10), model(x, 800), atol=1e-4)
    assert_close(model(x, 10), model(x, torch.tensor([10])))
    assert_close(model(x, 10), model(x, torch.tensor(10)))


def test_labels_change_the_prediction_and_none_means_the_null_label() -> None:
    model = _randomise_zero_layers(_tiny(num_classes=10))
    x = torch.randn(2, 1, 28, 28)
    t = torch.tensor([300, 300])
    assert model.null_label == 10
    three, seven = model(x, t, torch.tensor([3, 3])), model(x, t, torch.tensor([7, 7]))
    null = model(x, t, torch.tensor([10, 10]))
    assert not torch.allclose(three, seven, atol=1e-4)
    assert not torch.allclose(three, null, atol=1e-4)  # "no label" is a label of its own
    assert_close(model(x, t, None), null)
    assert _tiny().null_label is None


def test_after_a_few_optimiser_steps_the_output_depends_on_t_and_the_label() -> None:
    # From the zero init, no perturbation: gradients must open the gates by themselves.
    model = _tiny(num_classes=10)
    g = torch.Generator().manual_seed(0)
    x0, labels = torch.rand(8, 1, 28, 28, generator=g) * 2 - 1, torch.arange(8)
    loss_fn = DiffusionLoss(NoiseSchedule.linear(T=50), cond_dropout=0.25)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(10):
        loss = loss_fn(model, (x0, labels), g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        early, late = model(x, 2, torch.tensor([3, 3])), model(x, 45, torch.tensor([3, 3]))
        other_label = model(x, 2, torch.tensor([7, 7]))
    # measured: max differences ~1e-2 (t) and ~5e-3 (label) after 10 steps, outputs ~0.6
    assert not torch.allclose(early, late, atol=1e-4)
    assert not torch.allclose(early, other_label, atol=1e-4)


def test_every_parameter_gets_a_gradient() -> None:
    model = _randomise_zero_layers(_tiny(num_classes=10))
    out = model(torch.randn(2, 1, 28, 28), torch.tensor([1, 2]), torch.tensor([0, 10]))
    out.square().sum().backward()
    missing = [
        n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert not missing, f"no gradient reaches {missing}"


def test_overfits_eight_images_at_fixed_t_with_the_library_loss() -> None:
    # The same generator seed every step: DiffusionLoss draws the same t and eps each time,
    # so the model only has to memorise 8 fixed (x_t, t) -> eps pairs.
    model = _tiny(num_classes=10)
    data = torch.Generator().manual_seed(1)
    x0, labels = torch.rand(8, 1, 28, 28, generator=data) * 2 - 1, torch.arange(8)
    loss_fn = DiffusionLoss(NoiseSchedule.linear(T=50), cond_dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(200):
        loss = loss_fn(model, (x0, labels), torch.Generator().manual_seed(0))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 0.8  # ~ E[eps^2] = 1 for a model that predicts 0
    assert min(losses[-10:]) < 0.2 * losses[0], f"loss {losses[0]:.3f} -> {losses[-1]:.3f}"


def test_the_default_config_is_small_and_its_docstring_says_how_small() -> None:
    conditional = count_parameters(DiT(DiTConfig(num_classes=10)))
    unconditional = count_parameters(DiT(DiTConfig()))
    assert 0.2e6 < conditional < 1.3e6, "the default should stay small enough to train on a CPU"
    doc = DiTConfig.__doc__ or ""
    assert f"{conditional:,}" in doc and f"{unconditional:,}" in doc


def test_prediction_comes_from_the_config() -> None:
    assert _tiny().prediction == "eps"
    assert _tiny(prediction="v").prediction == "v"


# ----------------------------------------------------------------------------- attention maps
def test_attention_maps_are_each_blocks_softmax_weights() -> None:
    model = _randomise_zero_layers(_tiny(num_classes=10))
    x, t, labels = torch.randn(3, 1, 28, 28), torch.tensor([5, 50, 500]), torch.tensor([1, 2, 10])
    maps = model.attention_maps(x, t, labels)
    assert len(maps) == 2
    for weights in maps:
        assert weights.shape == (3, 2, 49, 49) and not weights.requires_grad
        assert weights.min() >= 0
        assert_close(weights.sum(dim=-1), torch.ones(3, 2, 49))
    # Brute force: recompute each block's weights from its (modulated, normalised) input.
    with torch.no_grad():
        h = model.patch_embed(x).flatten(2).transpose(1, 2) + sincos_2d_position_embedding(7, 32)
        c = model.embed(t, labels)
        for block, weights in zip(model.blocks, maps, strict=True):
            shift, scale = block.modulation(c).chunk(6, dim=1)[:2]
            a = torch.nn.functional.layer_norm(h, (32,), eps=1e-6) * (1 + scale[:, None])
            q, k, _ = block.attn.qkv(a + shift[:, None]).chunk(3, dim=-1)  # (B, N, D) each
            q, k = (z.reshape(3, 49, 2, 16).transpose(1, 2) for z in (q, k))  # (B, 2, N, 16)
            assert_close(weights, (q @ k.transpose(-1, -2) / 4.0).softmax(dim=-1))
            h = block(h, c)
    # The explicit weights give the same output as the fused attention.
    out = model._run(x, t, labels, maps=[])
    assert_close(out, model(x, t, labels))


# ----------------------------------------------------------------------------- the course's tools
def test_sample_with_guidance_uses_the_null_label_and_returns_images() -> None:
    model = _randomise_zero_layers(_tiny(num_classes=10), std=0.02)
    seen: list[torch.Tensor] = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[2].clone()))
    schedule = NoiseSchedule.linear(T=50)
    images = sample(
        model, schedule, labels=[0, 1, 2], guidance=3.0, sampler="ddim", steps=5, seed=0,
        progress=False,
    )  # fmt: skip
    assert images.shape == (3, 1, 28, 28)
    assert images.min() >= -1.0 and images.max() <= 1.0
    assert len(seen) == 5 and all(s.tolist() == [0, 1, 2, 10, 10, 10] for s in seen)
    plain = sample(
        model, schedule, labels=[0, 1, 2], guidance=1.0, sampler="ddim", steps=5, seed=0,
        progress=False,
    )  # fmt: skip
    assert not torch.allclose(images, plain, atol=1e-4)  # guidance changed something


def test_the_course_loop_trains_it_and_checkpoints_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    images, labels = torch.rand(16, 1, 28, 28, generator=g) * 2 - 1, torch.arange(16) % 10
    schedule = NoiseSchedule.cosine(T=50)
    config = TrainConfig(steps=3, batch_size=8, warmup_steps=1, precision="fp32", seed=3)
    trainer = Trainer(
        _tiny(num_classes=10), DiffusionLoss(schedule), TensorBatches(images, labels), config,
        "cpu", verbose=False, progress=False,
    )  # fmt: skip
    losses = [record.loss for record in trainer.run()]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    path = save_checkpoint(tmp_path / "dit.pt", trainer.model, schedule, step=3)
    ckpt = load_checkpoint(path)
    assert ckpt.model_kind == "dit" and ckpt.model_config == trainer.model.config
    rebuilt = ckpt.build_model()
    assert type(rebuilt) is DiT and not rebuilt.training
    x, t, cond = (
        torch.randn(4, 1, 28, 28),
        torch.tensor([1, 10, 30, 50]),
        torch.tensor([0, 4, 9, 10]),
    )
    trainer.model.eval()
    with torch.no_grad():
        want = trainer.model(x, t, cond)
        assert want.abs().max() > 0  # three steps moved it off the zero init
        assert_close(rebuilt(x, t, cond), want, rtol=0, atol=0)


def test_it_is_registered_for_checkpoints_and_its_config_is_plain_data() -> None:
    model = _tiny(num_classes=10, prediction="x0")
    assert MODEL_CLASSES["dit"] is DiT and model_kind(model) == "dit"
    rebuilt = build_model("dit", config_to_dict(model.config))
    assert type(rebuilt) is DiT and rebuilt.config == model.config


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(patch_size=5), r"patch_size=5 must divide image_size=28.*1, 2, 4, 7, 14, 28"),
        (dict(patch_size=0), "patch_size must be >= 1"),
        (dict(num_heads=3), r"num_heads=3 must divide hidden_size=32.*1, 2, 4, 8, 16, 32"),
        (dict(hidden_size=30, num_heads=1), "hidden_size must be a positive multiple of 4"),
        (dict(depth=0), "depth must be >= 1"),
        (dict(mlp_ratio=0.0), "mlp_ratio must be > 0"),
        (dict(num_classes=0), "num_classes must be None or >= 1"),
        (dict(prediction="noise"), "noise"),
    ],
)
def test_bad_configs_are_rejected_with_reasons(changes: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DiTConfig(**(TINY | changes))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(x=torch.randn(2, 1, 32, 32)), ValueError, r"x_t must have shape \(B, 1, 28, 28\)"),
        (dict(x=torch.randn(2, 3, 28, 28)), ValueError, r"got \(2, 3, 28, 28\).*DiTConfig"),
        (dict(x=torch.randn(1, 28, 28)), ValueError, "x_t must have shape"),
        (dict(t=torch.tensor([1, 2, 3])), ValueError, r"t must be an int or have shape \(2,\)"),
        (dict(t="5"), TypeError, "t must be an int"),
        (dict(labels=torch.tensor([1, 11])), ValueError, r"labels must lie in 0\.\.9"),
        (dict(labels=torch.tensor([-1, 0])), ValueError, "labels must lie"),
        (dict(labels=torch.tensor([1.0, 2.0])), ValueError, "integer class ids"),
    ],
)
def test_bad_inputs_give_clear_errors(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    model = _tiny(num_classes=10)
    args = dict(x=torch.randn(2, 1, 28, 28), t=torch.tensor([1, 2]), labels=None) | kwargs
    with pytest.raises(error, match=match):
        model(args["x"], args["t"], args["labels"])


def test_labels_for_an_unconditional_model_are_an_error() -> None:
    with pytest.raises(ValueError, match="unconditional.*DiTConfig\\(num_classes"):
        _tiny()(torch.randn(1, 1, 28, 28), 3, torch.tensor([1]))
