"""Fashion-MNIST's IDX files (README: workloads): ``train``/``t10k`` ``-images-idx3-ubyte`` and
``-labels-idx1-ubyte``, gzipped or not, in a configurable folder (by default where the Debian
package ``dataset-fashion-mnist`` puts them), read into arrays, subsampled and turned into
standardised image tensors."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from ttamer.errors import FieldError
from ttamer.workloads.vision.fashion_mnist.config import DEFAULT_DATA_DIR

__all__ = ["CLASSES", "DEFAULT_DATA_DIR", "MEAN", "STD", "load_split", "parse_idx", "read_idx", "subsample",
           "to_tensor"]  # fmt: skip

CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
MEAN, STD = 0.2860, 0.3530  # pixel statistics of the Fashion-MNIST training images (in [0, 1])

# IDX element types: the third byte of the magic number.
_IDX_DTYPES: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def parse_idx(data: bytes, name: str) -> NDArray[Any]:
    """Decode the bytes of an IDX file (magic ``00 00 <type> <ndim>``, then ``ndim`` big-endian
    uint32 sizes, then the elements in C order). Errors name the file ``name``."""
    if len(data) < 4:
        raise FieldError(name, f"is not an IDX file: {len(data)} bytes, shorter than the 4-byte magic number")
    magic = int.from_bytes(data[:4], "big")
    if data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES or data[3] == 0:
        raise FieldError(
            name,
            f"is not an IDX file: bad magic number 0x{magic:08X} (expected 0x0000TTNN: type TT, NN dims)",
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise FieldError(
            name, f"truncated IDX header: {ndim} dimensions need {header} bytes, got {len(data)}"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise FieldError(
            name,
            f"IDX size mismatch: header says shape {shape} of {dtype.str} ({expected} bytes of data), "
            f"file has {len(data) - header}",
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: str | Path) -> NDArray[Any]:
    """Read an IDX file, gzipped (by its magic bytes) or not; errors name the file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise FieldError(str(path), f"cannot read: {exc.strerror or exc}") from exc
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise FieldError(str(path), f"corrupt gzip data: {exc}") from exc
    return parse_idx(raw, str(path))


def _find(data_dir: Path, stem: str) -> Path:
    for candidate in (data_dir / f"{stem}.gz", data_dir / stem):
        if candidate.is_file():
            return candidate
    raise FieldError(
        "workload.data_dir",
        f"{data_dir}: no {stem}.gz or {stem} (install the Debian package dataset-fashion-mnist, or point "
        "data_dir at a folder with the Fashion-MNIST IDX files)",
    )


def load_split(data_dir: str | Path, split: str) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """Images (N, H, W) uint8 and labels (N,) of ``split`` (``"train"`` or ``"t10k"``)."""
    if split not in ("train", "t10k"):
        raise ValueError(f"split: must be train or t10k, got {split!r}")
    folder = Path(data_dir).expanduser()
    img_path, lab_path = (
        _find(folder, f"{split}-images-idx3-ubyte"),
        _find(folder, f"{split}-labels-idx1-ubyte"),
    )
    images, labels = read_idx(img_path), read_idx(lab_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise FieldError(str(img_path), f"expected (N, H, W) uint8 images, got {images.shape} {images.dtype}")
    if labels.ndim != 1:
        raise FieldError(str(lab_path), f"expected (N,) labels, got shape {labels.shape}")
    if len(labels) != len(images):
        raise FieldError(
            str(lab_path), f"has {len(labels)} labels but {img_path.name} has {len(images)} images"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise FieldError(str(lab_path), f"labels must lie in 0..{len(CLASSES) - 1}")
    return images, labels.astype(np.int64)


def subsample(n: int, size: int | None, rng: np.random.Generator, field_name: str) -> NDArray[np.intp]:
    """Indices of a seeded random subset of ``range(n)`` of ``size`` (None: all, in order)."""
    if size is None:
        return np.arange(n)
    if not 1 <= size <= n:
        raise FieldError(field_name, f"must be in 1..{n}, got {size}")
    return np.sort(rng.choice(n, size=size, replace=False))


def to_tensor(images: NDArray[np.uint8], image_size: int) -> torch.Tensor:
    """(N, H, W) uint8 -> (N, 1, S, S) float32, scaled to [0, 1], zero-padded (centred) to
    ``image_size`` and standardised with the training set's mean and std."""
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    h, w = x.shape[-2:]
    if image_size < max(h, w):
        raise FieldError("workload.image_size", f"must be at least {max(h, w)}, got {image_size}")
    top, left = (image_size - h) // 2, (image_size - w) // 2
    x = torch.nn.functional.pad(x, (left, image_size - w - left, top, image_size - h - top))
    return (x - MEAN) / STD
