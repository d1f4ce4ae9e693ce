"""How good are generated digits? Three numbers, each measured against real digits.

A diffusion model's loss says little about its samples, so the course scores samples
with three checks that all come with a real-data reference point:

1. **Class agreement** -- do class-conditional samples look like the digit asked for?
   A small MNIST classifier reads each sample; agreement is the fraction it labels as the
   requested digit. Reference: the classifier's accuracy on real held-out digits.
2. **Frechet distance (FD)** -- do the samples, as a set, look like real digits (quality
   *and* variety)? The FID recipe (Heusel et al., 2017) with this classifier's penultimate
   features in place of Inception's. Reference: the *floor*, the FD between two sets of
   real digits of the same sizes, which is not 0 because finite samples differ.
3. **Memorisation** -- are samples copies of training digits? Each sample's distance to
   its nearest training digit, compared with how close real held-out digits come.

All images are float tensors (N, 1, 28, 28) in [-1, 1], the range the rest of the library
uses. The classifier (:mod:`diffusion_edu.classifier`) is trained by
``scripts/train_classifier.py`` on the 4,500 bundled training digits only, and ships as
``data/mnist_classifier.pt``; the 500 held-out digits are never used to train it, so they
can serve as the reference "real" set.

What the numbers look like (500 images vs the 500 held-out digits, shipped classifier):
agreement 0.986 and FD floor about 0.29 for real digits (50 per digit); FD about 60 and
agreement 0.1 for noise or blank images; FD about 7 with agreement 1.0 for 50 copies of each
class's mean digit (perfectly legible, no variety: the case FD exists for).

Typical use::

    report = evaluate_samples(samples, labels)   # prints a table
    report.frechet_distance, report.frechet_floor, report.memorisation.memorised
"""

from __future__ import annotations

import json
import math
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from diffusion_edu.classifier import (
    MNISTClassifier,
    check_digit_images,
    classifier_features,
    classifier_predictions,
    load_classifier,
)
from diffusion_edu.data import load_bundled_mnist, require_data_file
from diffusion_edu.forward import q_sample
from diffusion_edu.samplers import sample
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.targets import prediction_of, split_prediction

__all__ = [
    "reference_digits",
    "class_agreement",
    "gaussian_statistics",
    "frechet_distance_from_statistics",
    "frechet_distance",
    "frechet_floor",
    "frechet_floor_draws",
    "frechet_floor_subsets",
    "FRECHET_RELIABLE_N",
    "MemorisationReport",
    "nearest_neighbour_distances",
    "memorisation_report",
    "stray_pixels",
    "QualityReport",
    "evaluate_samples",
    "noise_error_timesteps",
    "NoiseErrorCurve",
    "noise_prediction_error",
    "balanced_labels",
    "SamplingCost",
    "SamplingCostSweep",
    "time_sampling",
    "measure_sampling_cost",
    "load_sampling_cost",
]


def reference_digits(split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    """The bundled real digits the metrics compare against, in [-1, 1].

    Always the bundled 5,000 (even when full MNIST is on disk), so that every number in a
    report is measured against the same digits the classifier was trained and checked on.

    Args:
        split: ``"test"``/``"heldout"`` (500 digits, 50 per class, never used in training)
            or ``"train"`` (4,500 digits, 450 per class).

    Returns:
        images float32 (N, 1, 28, 28) in [-1, 1] and labels int64 (N,).
    """
    images, labels = load_bundled_mnist(split)
    x = torch.from_numpy(images).to(torch.float32).div(255.0).mul(2.0).sub(1.0)  # (N, 28, 28)
    return x.unsqueeze(1), torch.from_numpy(labels.astype(np.int64))  # (N, 1, 28, 28), (N,)


# ----------------------------------------------------------------------------- 1. agreement


def class_agreement(
    images: torch.Tensor, labels: torch.Tensor, classifier: MNISTClassifier | None = None
) -> float:
    """Fraction of class-conditional samples the classifier reads as the requested digit.

        agreement = (1/N) sum_i 1[ argmax_k f_k(x_i) = y_i ]

    with f the classifier's logits, x_i the i-th sample and y_i the digit it was asked
    for. This is the classifier-accuracy-on-samples measure Odena et al. (2017,
    "Conditional Image Synthesis with Auxiliary Classifier GANs") call discriminability,
    there with an Inception network; here with the course's small MNIST classifier. On
    real held-out digits it equals the classifier's accuracy (0.986); on the training
    digits, which the classifier learned from, 0.996, what a model that reproduced its
    training digits would score; random images score about 1/10.

    Args:
        images: (N, 1, 28, 28) in [-1, 1].
        labels: (N,) the requested digits.
        classifier: default :func:`~diffusion_edu.classifier.load_classifier`.
    """
    labels = torch.as_tensor(labels).reshape(-1).cpu()
    if labels.shape[0] != images.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels.")
    predicted = classifier_predictions(images, classifier)
    return float((predicted == labels).double().mean())


# ----------------------------------------------------------------------------- 2. Frechet


def gaussian_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance (unbiased, divisor N - 1) of (N, D) features, in float64.

    Returns:
        mu (D,) and sigma (D, D).
    """
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"need (N, D) features with N >= 2, got {tuple(features.shape)}.")
    f = features.to(torch.float64)
    mu = f.mean(dim=0)  # (D,)
    centred = f - mu  # (N, D)
    sigma = centred.T @ centred / (f.shape[0] - 1)  # (D, D)
    return mu, sigma


def _psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a symmetric PSD matrix: V diag(sqrt(max(lambda, 0))) V^T."""
    eigenvalues, eigenvectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    root = eigenvalues.clamp_min(0.0).sqrt()
    return (eigenvectors * root) @ eigenvectors.T


def frechet_distance_from_statistics(
    mu_a: torch.Tensor, sigma_a: torch.Tensor, mu_b: torch.Tensor, sigma_b: torch.Tensor
) -> float:
    """Frechet (2-Wasserstein squared) distance between N(mu_a, sigma_a) and N(mu_b, sigma_b).

        d^2 = ||mu_a - mu_b||^2 + Tr(sigma_a + sigma_b - 2 (sigma_a sigma_b)^{1/2})

    (Dowson & Landau, 1982; the "Frechet Inception Distance" of Heusel et al., 2017, is
    this formula on Inception features.) The trace of the matrix square root is computed
    stably in float64 from a *symmetric* matrix: with s = sigma_a^{1/2}, the product
    sigma_a sigma_b = s (s sigma_b) has the same eigenvalues as (s sigma_b) s = M = s sigma_b s
    (AB and BA always do), and M is symmetric PSD, so
    Tr (sigma_a sigma_b)^{1/2} = sum_i sqrt(lambda_i(M)) with lambda_i from ``eigvalsh``.
    Tiny negative eigenvalues from rounding are set to 0, so singular covariances (fewer
    samples than feature dimensions) are fine.
    """
    mu_a, mu_b = mu_a.to(torch.float64), mu_b.to(torch.float64)
    sigma_a, sigma_b = sigma_a.to(torch.float64), sigma_b.to(torch.float64)
    if mu_a.shape != mu_b.shape or sigma_a.shape != sigma_b.shape:
        raise ValueError("the two Gaussians must have the same dimension.")
    sqrt_a = _psd_sqrt(sigma_a)
    middle = sqrt_a @ sigma_b @ sqrt_a  # (D, D), symmetric PSD
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0.0).sqrt().sum()
    diff = mu_a - mu_b
    d2 = diff @ diff + torch.trace(sigma_a) + torch.trace(sigma_b) - 2.0 * trace_sqrt
    return max(float(d2), 0.0)  # rounding can make a true 0 come out as -1e-13


def frechet_distance(
    images_a: torch.Tensor, images_b: torch.Tensor, classifier: MNISTClassifier | None = None
) -> float:
    """Frechet distance between two sets of images, in the classifier's feature space.

        FD = ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2})

    where mu and S are the mean and covariance of the classifier's penultimate features
    (:func:`classifier_features`) over each set: FID (Heusel et al., 2017), with the
    course's MNIST classifier instead of Inception-v3, so values are NOT comparable with
    published FIDs. Lower is better; 0 means the two fitted Gaussians coincide. It is
    symmetric and biased upward for small sets, so always compare it with
    :func:`frechet_floor` measured at the same sizes.
    """
    classifier = classifier if classifier is not None else load_classifier()
    stats_a = gaussian_statistics(classifier_features(images_a, classifier))
    stats_b = gaussian_statistics(classifier_features(images_b, classifier))
    return frechet_distance_from_statistics(*stats_a, *stats_b)


# Fewer samples than this and a Frechet comparison is mostly sampling noise: class-balanced
# draws of 100 real digits score 0.55..0.84 (mean 0.68), of 500 0.25..0.34 (mean 0.29; 50
# draws each, shipped classifier; random, unbalanced draws: 0.85..2.27 and 0.29..0.61). 500 is
# also the size of the held-out set, and what the course's records use.
FRECHET_RELIABLE_N = 500


def frechet_floor(
    n: int | None = None,
    classifier: MNISTClassifier | None = None,
    *,
    repeats: int = 10,
    seed: int = 0,
) -> float:
    """The FD a perfect generator would get: real training digits vs the held-out digits.

        floor = mean over r of FD(train digits, random subset r of size n ; held-out 500)

    Measured exactly like :func:`frechet_distance` (same classifier, same held-out set), so
    a report reads "FD(samples, held-out) = X vs floor Y". The floor is not 0 because two
    finite samples of the same distribution have different means and covariances; it
    shrinks as n grows. Training digits are disjoint from the held-out ones.

    Class-balanced: when n is a multiple of the 10 classes, each subset holds n / 10 digits
    of every class (:func:`frechet_floor_subsets`), as the samples it is compared with do
    (the course samples :func:`balanced_labels`, e.g. 50 per digit) and as the held-out set
    does (50 per digit). Otherwise the subsets are drawn at random from all training digits.

    Args:
        n: size of the sample set being judged (default 500, the held-out size); at most
            4,500 (the training digits).
        classifier: default :func:`~diffusion_edu.classifier.load_classifier`.
        repeats: random subsets to average over (features are computed once, so more
            repeats cost almost nothing; one subset alone lies within about 20% of the
            mean at n = 500: :func:`frechet_floor_draws` gives each).
        seed: seeds the subsets.
    """
    return float(np.mean(frechet_floor_draws(n, classifier, repeats=repeats, seed=seed)))


def frechet_floor_draws(
    n: int | None = None,
    classifier: MNISTClassifier | None = None,
    *,
    repeats: int = 10,
    seed: int = 0,
) -> list[float]:
    """The ``repeats`` distances that :func:`frechet_floor` averages, one per random subset
    (class-balanced when n is a multiple of 10: :func:`frechet_floor_subsets`).

    Their spread is the sampling noise of a Frechet distance at this ``n``: what a perfect
    generator's score could be on another draw. (Same arguments as :func:`frechet_floor`.)
    """
    classifier = classifier if classifier is not None else load_classifier()
    train_images, train_labels = reference_digits("train")
    heldout_images, _ = reference_digits("test")
    n = heldout_images.shape[0] if n is None else int(n)
    subsets = frechet_floor_subsets(train_labels, n, repeats=repeats, seed=seed)
    train_features = classifier_features(train_images, classifier)
    heldout_stats = gaussian_statistics(classifier_features(heldout_images, classifier))
    distances = []
    for subset in subsets:
        stats = gaussian_statistics(train_features[subset])
        distances.append(frechet_distance_from_statistics(*stats, *heldout_stats))
    return distances


def frechet_floor_subsets(
    labels: torch.Tensor, n: int, *, repeats: int = 10, seed: int = 0
) -> list[torch.Tensor]:
    """The indices into ``labels`` of the ``repeats`` real subsets the floor draws.

    Stratified when ``n`` is a multiple of the number of classes k in ``labels`` (and each
    class has at least n / k members): every subset holds n / k of each class, drawn
    without replacement, like the class-balanced samples it stands in for. Otherwise each
    subset is n indices drawn at random without replacement from all of ``labels``.

    Args:
        labels: (N,) the class of each real digit (the training digits' labels).
        n: subset size, 2..N.
        repeats: how many subsets.
        seed: seeds the draws (same seed, same subsets).

    Returns:
        ``repeats`` LongTensors of shape (n,).
    """
    labels = torch.as_tensor(labels).reshape(-1).cpu()
    total = labels.shape[0]
    if isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= total:
        raise ValueError(f"n must be a whole number in 2..{total}, got {n!r}.")
    _check_count(repeats, "repeats")
    classes = labels.unique()  # sorted
    members = [torch.nonzero(labels == c).flatten() for c in classes]  # indices per class
    per_class, rest = divmod(n, len(classes))
    balanced = rest == 0 and per_class <= min(len(m) for m in members)
    generator = torch.Generator().manual_seed(seed)
    subsets = []
    for _ in range(repeats):
        if balanced:
            picks = [m[torch.randperm(len(m), generator=generator)[:per_class]] for m in members]
            subsets.append(torch.cat(picks))  # (n,) in class blocks
        else:
            subsets.append(torch.randperm(total, generator=generator)[:n])  # (n,)
    return subsets


# ----------------------------------------------------------------------------- 3. memorisation


@dataclass(frozen=True, eq=False)  # eq=False: holds tensors
class MemorisationReport:
    """Are samples copies of training digits? Pixel-space nearest-neighbour distances.

    Attributes:
        percentile: which held-out percentile sets the threshold (5 by default).
        threshold: that percentile of the held-out digits' nearest-training distances.
        fraction_below: fraction of samples closer to a training digit than ``threshold``;
            about ``percentile / 100`` for new digits, near 1 for copies.
        sample_median_distance, heldout_median_distance: median nearest-training distance
            (pixel L2 in [-1, 1] units) of the samples and of the held-out digits.
        near_duplicate_fraction: fraction of samples whose nearest training digit is less
            than ``near_duplicate_ratio`` times as far as their k nearest on average.
        heldout_near_duplicate_fraction: the same for real held-out digits (the reference).
        memorised: True if ``fraction_below > max_fraction_below`` or
            ``near_duplicate_fraction > max_near_duplicate_fraction``.
        summary: one sentence saying what the numbers mean.
        sample_distances: (N,) each sample's nearest-training distance.
        nearest_train_index: (N,) index of that training digit (to show pairs).
    """

    percentile: float
    threshold: float
    fraction_below: float
    sample_median_distance: float
    heldout_median_distance: float
    near_duplicate_ratio: float
    near_duplicate_fraction: float
    heldout_near_duplicate_fraction: float
    max_fraction_below: float
    max_near_duplicate_fraction: float
    memorised: bool
    sample_distances: torch.Tensor = field(repr=False)
    nearest_train_index: torch.Tensor = field(repr=False)

    @property
    def summary(self) -> str:
        """One sentence: the verdict and the numbers behind it."""
        expected = self.percentile / 100
        verdict = "LOOKS MEMORISED" if self.memorised else "no sign of memorisation"
        return (
            f"{verdict}: {self.fraction_below:.1%} of samples are closer to a training digit "
            f"than {1 - expected:.0%} of real held-out digits are (new digits: about "
            f"{expected:.0%}; flag above {self.max_fraction_below:.0%}); "
            f"{self.near_duplicate_fraction:.1%} are near-duplicates (held-out digits: "
            f"{self.heldout_near_duplicate_fraction:.1%}; flag above "
            f"{self.max_near_duplicate_fraction:.0%})."
        )


@torch.no_grad()
def nearest_neighbour_distances(
    queries: torch.Tensor, references: torch.Tensor, k: int = 1, chunk: int = 500
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k smallest pixel-space L2 distances from each query image to the references.

        d_j(x) = j-th smallest of ||x - r||_2 over reference images r (flattened pixels)

    Computed in float64, in chunks of queries to bound memory.

    Returns:
        distances (Q, k) ascending and the references' indices (Q, k).
    """
    q = queries.reshape(queries.shape[0], -1).to("cpu", torch.float64)  # (Q, P)
    r = references.reshape(references.shape[0], -1).to("cpu", torch.float64)  # (R, P)
    if q.shape[1] != r.shape[1]:
        raise ValueError(f"queries have {q.shape[1]} pixels, references {r.shape[1]}.")
    distances, indices = [], []
    for start in range(0, q.shape[0], chunk):
        d = torch.cdist(q[start : start + chunk], r)  # (chunk, R)
        values, where = d.topk(k, dim=1, largest=False)  # ascending
        distances.append(values)
        indices.append(where)
    return torch.cat(distances), torch.cat(indices)


def memorisation_report(
    samples: torch.Tensor,
    train_images: torch.Tensor,
    heldout_images: torch.Tensor,
    *,
    percentile: float = 5.0,
    max_fraction_below: float = 0.25,
    k: int = 50,
    near_duplicate_ratio: float = 1 / 3,
    max_near_duplicate_fraction: float = 0.02,
) -> MemorisationReport:
    """Compare how close samples and real held-out digits come to the training set.

    Distance: L2 in **pixel space**, d(x) = min over training digits t of ||x - t||_2.
    Memorisation means reproducing a training image, and a copy is a copy pixel for pixel
    (Carlini et al., 2023, "Extracting Training Data from Diffusion Models", also measure
    L2 in pixel space). The classifier's features would be the wrong ruler: they are
    trained to ignore exactly the differences in handwriting that make a digit new.

    Two checks, both calibrated on real held-out digits (which the model never saw):

    1. threshold tau = the ``percentile``-th percentile of the held-out digits'
       nearest-training distances; fraction_below = (1/N) sum_i 1[d(x_i) < tau]. New
       digits give about percentile/100 (5%); copies give ~100%.
    2. near-duplicates, a relative test in the spirit of Carlini et al. (2023): x is a
       near-duplicate when d_1(x) < ratio * mean(d_1(x), ..., d_k(x)), i.e. its nearest
       training digit is much closer than its k nearest are on average. This catches a
       copy even among simple digits (a "1" is close to many training 1s, but not much
       closer to one than to the others), and a blurry average digit is not flagged.

    ``memorised`` is True if fraction_below > ``max_fraction_below`` (default 25%, five
    times what new digits give) or the near-duplicate fraction > ``max_near_duplicate_fraction``.

    Args:
        samples: (N, 1, 28, 28) generated images in [-1, 1].
        train_images: (M, 1, 28, 28) the digits the generator was trained on.
        heldout_images: (H, 1, 28, 28) real digits the generator never saw.
    """
    for name, images in (("samples", samples), ("train_images", train_images),
                         ("heldout_images", heldout_images)):  # fmt: skip
        check_digit_images(images, name)
    k = min(k, train_images.shape[0])
    sample_d, sample_index = nearest_neighbour_distances(samples, train_images, k)  # (N, k)
    heldout_d, _ = nearest_neighbour_distances(heldout_images, train_images, k)  # (H, k)

    threshold = float(torch.quantile(heldout_d[:, 0], percentile / 100))
    fraction_below = float((sample_d[:, 0] < threshold).double().mean())

    def near_duplicates(d: torch.Tensor) -> float:
        return float((d[:, 0] < near_duplicate_ratio * d.mean(dim=1)).double().mean())

    near_duplicate_fraction = near_duplicates(sample_d)
    memorised = (
        fraction_below > max_fraction_below or near_duplicate_fraction > max_near_duplicate_fraction
    )
    return MemorisationReport(
        percentile=float(percentile),
        threshold=threshold,
        fraction_below=fraction_below,
        sample_median_distance=float(sample_d[:, 0].median()),
        heldout_median_distance=float(heldout_d[:, 0].median()),
        near_duplicate_ratio=float(near_duplicate_ratio),
        near_duplicate_fraction=near_duplicate_fraction,
        heldout_near_duplicate_fraction=near_duplicates(heldout_d),
        max_fraction_below=float(max_fraction_below),
        max_near_duplicate_fraction=float(max_near_duplicate_fraction),
        memorised=memorised,
        sample_distances=sample_d[:, 0].to(torch.float32),
        nearest_train_index=sample_index[:, 0],
    )


# ----------------------------------------------------------------------------- speckle
def stray_pixels(images: torch.Tensor, lit: float = -0.5) -> torch.Tensor:
    """Per image, the number of lit pixels with at most one lit neighbour: "speckle".

    A pixel is lit when brighter than ``lit`` (-0.5 in [-1, 1] pixels: a quarter of the way
    from black to white). Real MNIST strokes are 2-3 pixels wide and smooth, so almost every
    lit pixel has several lit neighbours; a sampler that leaves noise behind sprinkles lone
    dots (0 or 1 lit neighbour among the 8 around them). Real held-out digits: ~0.1 per image.

    Returns:
        (N,) float counts.
    """
    check_digit_images(images)
    on = (images > lit).float()  # (N, 1, H, W)
    ones = torch.ones(1, 1, 3, 3, dtype=on.dtype, device=on.device)
    neighbours = F.conv2d(on, ones, padding=1) - on  # lit pixels among the 8 around each
    return ((on > 0) & (neighbours <= 1)).flatten(1).sum(dim=1).float()


# ----------------------------------------------------------------------------- all three


@dataclass(frozen=True)
class QualityReport:
    """The three checks on one set of samples, with their real-data references.

    Attributes:
        n_samples: how many samples were scored.
        class_agreement: fraction read as the requested digit (None without labels).
        classifier_accuracy: the classifier's recorded accuracy on real held-out digits,
            the ceiling for ``class_agreement``.
        frechet_distance: FD(samples, 500 held-out digits) in classifier features.
        frechet_floor: FD(real training digits, held-out digits) at the same sizes.
        memorisation: pixel-space nearest-neighbour report.
        frechet_floor_range: the lowest and highest of the floor's draws (its mean is the
            floor): how far sampling noise alone moves a Frechet distance at this size.
    """

    n_samples: int
    class_agreement: float | None
    classifier_accuracy: float
    frechet_distance: float
    frechet_floor: float
    memorisation: MemorisationReport
    frechet_floor_range: tuple[float, float] | None = None

    def sampling_noise_note(self) -> str | None:
        """What the Frechet numbers are worth with fewer than :data:`FRECHET_RELIABLE_N`
        samples (None with enough samples, or without the floor's range)."""
        if self.n_samples >= FRECHET_RELIABLE_N or self.frechet_floor_range is None:
            return None
        low, high = self.frechet_floor_range
        ratio, floor = self.frechet_ratio, self.frechet_floor
        if ratio < 1:
            verdict = (
                f"so a ratio below 1, like this {ratio:.1f}x, is noise (no digits are more real "
                "than real ones)"
            )
        else:
            verdict = f"so a ratio up to about {high / floor:.1f}x may be noise alone"
        return textwrap.fill(
            f"Sampling noise: with only {self.n_samples} samples both Frechet numbers are noisy. "
            f"Draws of {self.n_samples} real training digits alone score {low:.2f} to {high:.2f} "
            f"({low / floor:.1f}x to {high / floor:.1f}x the floor, which is their mean), and the "
            f"samples' {self.frechet_distance:.2f} carries the same kind of noise, {verdict}. "
            f"A comparison to trust uses {FRECHET_RELIABLE_N} samples or more (the course's "
            "records do).",
            width=100,
        )

    @property
    def frechet_ratio(self) -> float:
        """FD / floor: about 1 means as close to real digits as other real digits are."""
        return self.frechet_distance / self.frechet_floor if self.frechet_floor > 0 else math.inf

    def table(self) -> str:
        """The report as a small text table."""
        agreement = "-" if self.class_agreement is None else f"{self.class_agreement:.1%}"
        memo = self.memorisation
        rows = [
            ("metric", "samples", "real digits (reference)"),
            ("class agreement", agreement,
             f"{self.classifier_accuracy:.1%} (classifier on held-out digits)"),
            ("Frechet distance to held-out", f"{self.frechet_distance:.2f}",
             f"floor {self.frechet_floor:.2f} (train vs held-out) -> "
             f"{self.frechet_ratio:.1f}x floor"),
            (f"closer to train than {100 - memo.percentile:.0f}% of held-out",
             f"{memo.fraction_below:.1%}", f"{memo.percentile / 100:.0%} by construction"),
            ("near-duplicates of train digits", f"{memo.near_duplicate_fraction:.1%}",
             f"{memo.heldout_near_duplicate_fraction:.1%}"),
            ("median pixel distance to train", f"{memo.sample_median_distance:.2f}",
             f"{memo.heldout_median_distance:.2f}"),
        ]  # fmt: skip
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines = [f"Quality of {self.n_samples} samples"]
        for i, row in enumerate(rows):
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
            if i == 0:
                lines.append("  ".join("-" * width for width in widths))
        verdict = "memorised?  " + memo.summary
        note = self.sampling_noise_note()
        return "\n".join([*lines, verdict, *([note] if note else [])])

    def __str__(self) -> str:
        return self.table()


def evaluate_samples(
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    classifier: MNISTClassifier | None = None,
    train_images: torch.Tensor | None = None,
    verbose: bool = True,
) -> QualityReport:
    """Score generated digits with all three checks and (by default) print a table.

    For a fair Frechet comparison, generate class-balanced samples (the held-out set has
    50 of each digit) and at least a few hundred of them.

    Args:
        images: (N, 1, 28, 28) samples in [-1, 1].
        labels: (N,) the digits requested (class-conditional samples); None skips agreement.
        classifier: default :func:`~diffusion_edu.classifier.load_classifier`.
        train_images: what the generator was trained on, for the memorisation check;
            default the 4,500 bundled training digits.
        verbose: print the table.
    """
    classifier = classifier if classifier is not None else load_classifier()
    check_digit_images(images)
    heldout_images, _ = reference_digits("test")
    if train_images is None:
        train_images, _ = reference_digits("train")
    n = images.shape[0]
    floor_draws = frechet_floor_draws(min(max(n, 2), 4500), classifier)
    report = QualityReport(
        n_samples=n,
        class_agreement=None if labels is None else class_agreement(images, labels, classifier),
        classifier_accuracy=float(getattr(classifier, "heldout_accuracy", math.nan)),  # any model
        frechet_distance=frechet_distance(images, heldout_images, classifier),
        frechet_floor=float(np.mean(floor_draws)),
        memorisation=memorisation_report(images, train_images, heldout_images),
        frechet_floor_range=(min(floor_draws), max(floor_draws)),
    )
    if verbose:
        print(report.table())
    return report


# ----------------------------------------------------------------------------- noise vs t


def noise_error_timesteps(T: int, timesteps: Sequence[int] | None = None) -> list[int]:
    """The timesteps of a noise-prediction-error curve: ``timesteps`` checked (whole numbers in
    1..T) and sorted, or by default a set dense at small t, where the curve changes fastest
    (1, and 0.2%, 0.5%, 1%, 2%, 5% of T), then every 10% of T."""
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be a whole number >= 1, got {T!r}.")
    if timesteps is None:
        fractions = (0.002, 0.005, 0.01, 0.02, 0.05) + tuple(k / 10 for k in range(1, 11))
        return sorted({1} | {min(T, max(1, round(T * f))) for f in fractions})
    ts = list(timesteps)
    if not ts or any(
        isinstance(t, bool)
        or not isinstance(t, int | torch.Tensor)
        or int(t) != t
        or not 1 <= t <= T
        for t in ts
    ):
        raise ValueError(f"timesteps must be whole numbers in 1..T={T}, got {ts}.")
    return sorted({int(t) for t in ts})


@dataclass(frozen=True)
class NoiseErrorCurve:
    """How well a model finds the noise, at each noise level t.

    Attributes:
        timesteps: the t measured, increasing.
        eps_mse: mean over images, noise draws and pixels of (eps_hat - eps)^2 at each t:
            the plain DDPM loss (Ho et al. 2020, Eq. 14) restricted to that t. A model that
            knows nothing scores 1 by answering 0 (eps ~ N(0, I) has variance 1).
        x0_mse: the same for the clean image the prediction implies, (x0_hat - x0)^2.
        snr: SNR(t) = alpha_bar_t / (1 - alpha_bar_t) at each t.
        n: how many clean images (or points); repeats: noise draws per image and t.

    For any model, x0_hat - x0 = -(eps_hat - eps) / sqrt(SNR) (invert Eq. 4), so
    ``eps_mse = snr * x0_mse`` exactly: the eps loss *is* an x0 loss weighted by SNR(t). That
    weight is huge for nearly clean images, which is why Min-SNR (Hang et al. 2023) caps it
    at gamma: :meth:`min_snr_loss`.
    """

    timesteps: tuple[int, ...]
    eps_mse: tuple[float, ...]
    x0_mse: tuple[float, ...]
    snr: tuple[float, ...]
    n: int
    repeats: int

    def min_snr_loss(self, gamma: float = 5.0) -> tuple[float, ...]:
        """The loss a Min-SNR-gamma model is trained on, per t: ``min(SNR, gamma) * x0_mse``
        (= ``eps_mse * min(SNR, gamma) / SNR``, :func:`~diffusion_edu.training.min_snr_weight`;
        Hang et al. 2023, Eq. 5-7 of "Efficient Diffusion Training via Min-SNR Weighting")."""
        if not (math.isfinite(gamma) and gamma > 0):
            raise ValueError(f"gamma must be a positive number, got {gamma!r}.")
        return tuple(min(s, gamma) * e for s, e in zip(self.snr, self.x0_mse, strict=True))


def _check_count(value: object, name: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}.")
    return value


@torch.no_grad()
def noise_prediction_error(
    model: Callable[..., torch.Tensor],
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    labels: torch.Tensor | None = None,
    timesteps: Sequence[int] | None = None,
    repeats: int = 1,
    seed: int = 0,
    batch_size: int = 250,
) -> NoiseErrorCurve:
    """Where is the noise hard to predict? The model's eps error at each t, on real data.

    For each t and each of ``repeats`` noise draws (the same draws at every t, so the
    curve's shape is not sampling noise): eps ~ N(0, I), x_t = q_sample(x0, t, eps) (Eq. 4),
    and the squared error of the model's eps_hat (any target: converted with
    :func:`~diffusion_edu.targets.split_prediction`).

    What to expect: at large t, x_t is almost all noise, so eps_hat ~= x_t is nearly right
    and the error is tiny; at small t the noise is a faint speckle on a clean image and the
    model must tell it apart from the image's own fine detail: the error is largest there.

    Args:
        model: ``(x_t, t, cond) -> prediction``, e.g. ``load_pretrained("mnist")[0]``.
        schedule: the schedule it was trained with.
        x0: (N, ...) clean data the model did not train on, e.g. the held-out digits
            (:func:`reference_digits`).
        labels: (N,) their classes for a class-conditional model (None: no condition).
        timesteps: the t to measure, in 1..T (default :func:`noise_error_timesteps`).
        repeats: noise draws per image and t.
        seed: seeds the noise.
        batch_size: images per model call.
    """
    if not isinstance(x0, torch.Tensor) or x0.ndim < 2 or x0.shape[0] < 1:
        raise ValueError("x0 must be a tensor (N, ...) of clean data with N >= 1.")
    ts = noise_error_timesteps(schedule.T, timesteps)
    repeats = _check_count(repeats, "repeats")
    batch_size = _check_count(batch_size, "batch_size")
    if labels is not None:
        labels = torch.as_tensor(labels, dtype=torch.long)
        if labels.shape != (x0.shape[0],):
            raise ValueError(f"labels must have shape ({x0.shape[0]},), one per image.")
    device = next(iter(model.parameters())).device if isinstance(model, nn.Module) else x0.device
    target = prediction_of(model)
    generator = torch.Generator().manual_seed(seed)
    noises = [torch.randn(x0.shape, generator=generator) for _ in range(repeats)]  # (N, ...)
    was_training = isinstance(model, nn.Module) and model.training
    if isinstance(model, nn.Module):
        model.eval()
    eps_mse, x0_mse = [], []
    try:
        for t in ts:
            eps_total = x0_total = 0.0
            for noise in noises:
                for start in range(0, x0.shape[0], batch_size):
                    x0_b = x0[start : start + batch_size].to(device)  # (b, ...)
                    eps_b = noise[start : start + batch_size].to(device, x0_b.dtype)
                    t_b = torch.full((x0_b.shape[0],), t, dtype=torch.long, device=device)
                    x_t = q_sample(x0_b, t_b, schedule, eps_b, check=False)
                    cond = None if labels is None else labels[start : start + batch_size].to(device)
                    pred = model(x_t, t_b, cond).to(x_t.dtype)
                    x0_hat, eps_hat = split_prediction(pred, x_t, t_b, schedule, target)
                    eps_total += float((eps_hat - eps_b).double().pow(2).sum())
                    x0_total += float((x0_hat - x0_b).double().pow(2).sum())
            count = repeats * x0.numel()
            eps_mse.append(eps_total / count)
            x0_mse.append(x0_total / count)
    finally:
        if was_training:
            model.train()
    return NoiseErrorCurve(
        timesteps=tuple(ts),
        eps_mse=tuple(eps_mse),
        x0_mse=tuple(x0_mse),
        snr=tuple(float(schedule.snr[t]) for t in ts),
        n=int(x0.shape[0]),
        repeats=repeats,
    )


# ----------------------------------------------------------------------------- cost of sampling
SAMPLING_COST_FILE = "results/sampling_cost.json"  # under the data folder


@dataclass(frozen=True)
class SamplingCost:
    """What one sampler at one step count costs, and what it buys (one seeded run).

    Attributes:
        sampler: ``"ddpm"``, ``"ddim"`` or ``"dpm-solver++"``. DDPM with fewer than T steps
            is DDPM's ancestral step (posterior variance) over an evenly spaced subsequence
            of timesteps, which is exactly DDIM with eta = 1 (Song et al. 2021, Eq. 16 and
            Table 1's eta = 1 row): run as ``sampler="ddim", eta=1.0``.
        steps: steps per image; model_calls: network evaluations per image (x2 with guidance).
        n: images scored (balanced: n / 10 per digit); guidance: classifier-free scale.
        eta: the noise of each step (0: deterministic; 1: DDPM).
        seconds_per_image: wall-clock seconds per image.
        class_agreement, frechet_distance, frechet_floor: as in :class:`QualityReport`
            (Frechet distance against the 500 held-out digits; floor at the same n).
        frechet_floor_low, frechet_floor_high: the lowest and highest of the floor's draws:
            how far sampling noise alone moves a Frechet distance at this n.
    """

    sampler: str
    steps: int
    n: int
    guidance: float
    eta: float
    model_calls: int
    seconds_per_image: float
    class_agreement: float
    frechet_distance: float
    frechet_floor: float
    frechet_floor_low: float
    frechet_floor_high: float


def balanced_labels(n: int, classes: int = 10) -> torch.Tensor:
    """``n / classes`` of each class, in blocks: ``[0, 0, ..., 1, 1, ..., 9]`` (n, ) int64,
    the labels the course's records sample (``scripts/make_pretrained.py``)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < classes or n % classes:
        raise ValueError(
            f"n must be a positive multiple of {classes} (balanced labels), got {n!r}."
        )
    return torch.arange(classes).repeat_interleave(n // classes)


def _sampler_run(
    sampler: str, steps: int, T: int, eta: float | None
) -> tuple[str, int | None, float]:
    """``(sampler, steps, eta)`` to give :func:`sample` for a named run, checked. ``"ddpm"``
    with fewer than T steps runs as DDIM with eta = 1 (see :class:`SamplingCost`)."""
    if sampler not in ("ddpm", "ddim", "dpm-solver++"):
        raise ValueError(f"sampler must be 'ddpm', 'ddim' or 'dpm-solver++', got {sampler!r}.")
    _check_count(steps, "steps")
    if steps > T:
        raise ValueError(f"steps must be at most T={T}, got {steps}.")
    if sampler == "ddpm":
        if eta not in (None, 1.0):
            raise ValueError("DDPM's steps have eta = 1 by definition; leave eta out.")
        return ("ddpm", None, 1.0) if steps == T else ("ddim", steps, 1.0)
    if sampler == "dpm-solver++" and eta not in (None, 0.0):
        raise ValueError("DPM-Solver++(2M) is deterministic (eta = 0); leave eta out.")
    return sampler, steps, 0.0 if eta is None else float(eta)


def time_sampling(
    model: Callable[..., torch.Tensor],
    schedule: NoiseSchedule,
    sampler: str,
    steps: int,
    n: int = 50,
    guidance: float = 1.0,
    eta: float | None = None,
    repeats: int = 1,
    seed: int = 0,
) -> float:
    """Seconds per image of drawing ``n`` digits (labels 0..9 in turn) in one batch: the
    fastest of ``repeats`` runs, the one least disturbed by other work on the machine."""
    run_sampler, run_steps, eta = _sampler_run(sampler, steps, schedule.T, eta)
    labels = torch.arange(_check_count(n, "n")) % 10
    best = math.inf
    for _ in range(_check_count(repeats, "repeats")):
        start = time.perf_counter()
        sample(model, schedule, labels=labels, sampler=run_sampler, steps=run_steps,  # type: ignore[arg-type]
               eta=eta, guidance=guidance, seed=seed, progress=False)  # fmt: skip
        best = min(best, time.perf_counter() - start)
    return best / n


def measure_sampling_cost(
    model: Callable[..., torch.Tensor],
    schedule: NoiseSchedule,
    sampler: str,
    steps: int,
    n: int = 500,
    guidance: float = 1.0,
    seed: int = 0,
    eta: float | None = None,
    *,
    timing_n: int | None = None,
    timing_repeats: int = 1,
    classifier: MNISTClassifier | None = None,
    progress: bool = False,
) -> SamplingCost:
    """Sample ``n`` class-balanced digits (:func:`balanced_labels`, seeded) and measure what
    they cost and how good they are.

    Quality by :func:`evaluate_samples` (class agreement, Frechet distance, its floor).
    Time: by default the wall-clock time of drawing the ``n`` scored images in one batch;
    with ``timing_n``, instead :func:`time_sampling` of ``timing_n`` images (the fastest of
    ``timing_repeats`` runs).

    Args:
        sampler: ``"ddpm"`` (all T steps is DDPM's Algorithm 2; fewer is DDIM with eta = 1,
            see :class:`SamplingCost`), ``"ddim"`` or ``"dpm-solver++"``.
        steps: number of steps, 1..T.
        eta: DDIM's noise (default 0; ``"ddpm"`` is always 1, ``"dpm-solver++"`` 0).
    """
    run_sampler, run_steps, eta = _sampler_run(sampler, steps, schedule.T, eta)
    labels = balanced_labels(n)
    if timing_n is not None:
        _check_count(timing_n, "timing_n")
    start = time.perf_counter()
    images = sample(model, schedule, labels=labels, sampler=run_sampler, steps=run_steps,  # type: ignore[arg-type]
                    eta=eta, guidance=guidance, seed=seed, progress=progress)  # fmt: skip
    seconds_per_image = (time.perf_counter() - start) / n
    if timing_n is not None:
        seconds_per_image = time_sampling(
            model, schedule, sampler, steps, timing_n, guidance, eta, timing_repeats, seed
        )
    report = evaluate_samples(images, labels, classifier=classifier, verbose=False)  # type: ignore[arg-type]
    low, high = report.frechet_floor_range or (report.frechet_floor, report.frechet_floor)
    return SamplingCost(
        sampler=sampler,
        steps=steps,
        n=n,
        guidance=float(guidance),
        eta=eta,
        model_calls=steps * (1 if guidance == 1.0 else 2),
        seconds_per_image=seconds_per_image,
        class_agreement=float(report.class_agreement),  # type: ignore[arg-type]
        frechet_distance=report.frechet_distance,
        frechet_floor=report.frechet_floor,
        frechet_floor_low=low,
        frechet_floor_high=high,
    )


@dataclass(frozen=True)
class SamplingCostSweep:
    """A recorded sweep of :func:`measure_sampling_cost` (``scripts/measure_sampling_cost.py``).

    Attributes:
        costs: one :class:`SamplingCost` per (sampler, steps).
        command, machine, date, timing: how, where, when it was measured, and how the time
            was taken.
        n, guidance: the settings of every run.
        notes: anything a reader needs to read the numbers right.
    """

    costs: tuple[SamplingCost, ...]
    command: str
    machine: str
    date: str
    timing: str
    n: int
    guidance: float
    notes: tuple[str, ...] = ()

    @property
    def samplers(self) -> tuple[str, ...]:
        """The samplers in the sweep, in order of first appearance."""
        return tuple(dict.fromkeys(c.sampler for c in self.costs))

    def of(self, sampler: str) -> tuple[SamplingCost, ...]:
        """The runs of one sampler, by increasing steps."""
        return tuple(sorted((c for c in self.costs if c.sampler == sampler), key=lambda c: c.steps))

    def get(self, sampler: str, steps: int) -> SamplingCost:
        """The run of ``sampler`` with ``steps`` steps."""
        for c in self.costs:
            if c.sampler == sampler and c.steps == steps:
                return c
        raise KeyError(f"no run of {sampler!r} with {steps} steps in this sweep.")

    def to_json(self) -> dict[str, Any]:
        """The sweep as the JSON object the results file holds."""
        record = asdict(self)
        record["costs"] = [asdict(c) for c in self.costs]
        record["notes"] = list(self.notes)
        return record

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> SamplingCostSweep:
        fields = {k: record[k] for k in ("command", "machine", "date", "timing", "n", "guidance")}
        costs = tuple(SamplingCost(**c) for c in record["costs"])
        return cls(costs=costs, notes=tuple(record.get("notes", ())), **fields)


def load_sampling_cost(path: str | Path | None = None) -> SamplingCostSweep:
    """The recorded sweep of samplers and step counts on the shipped model (lesson 08).

    Read from ``data/results/sampling_cost.json`` (found by the library's data helper), or
    from ``path``; written by ``scripts/measure_sampling_cost.py``.
    """
    if path is None:
        path = require_data_file(
            SAMPLING_COST_FILE, "measure it again with scripts/measure_sampling_cost.py"
        )
    try:
        record = json.loads(Path(path).read_text())
        return SamplingCostSweep.from_json(record)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a sampling-cost results file ({error}).") from None
