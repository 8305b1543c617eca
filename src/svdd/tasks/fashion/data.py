"""Fashion-MNIST (Xiao et al. 2017): 60,000 training and 10,000 test images of 10 clothing classes, 28x28 grey.

The files come from the Debian package ``dataset-fashion-mnist`` (``apt-get install dataset-fashion-mnist``;
``dpkg -L dataset-fashion-mnist`` lists them under /usr/share/datasets/fashion-mnist). They are read in place,
never copied into this repository. Set ``SVDD_FASHION_MNIST`` to read them from another folder.

Images are padded to 32x32 with background and scaled to [-1, 1] (diffusers' convention), shape (n, 1, 32, 32).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
SIZE = 32


def data_dir() -> Path:
    d = Path(os.environ.get("SVDD_FASHION_MNIST", DEFAULT_DIR))
    missing = [f for pair in FILES.values() for f in pair if not (d / f).exists()]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST files {missing} not found in {d}. Install the Debian package: "
            "`apt-get install dataset-fashion-mnist` (or point SVDD_FASHION_MNIST at a folder holding the idx .gz files)")
    return d


def _read_idx(path: Path) -> np.ndarray:
    """An idx file (gzip): a truncated or garbled file is an error naming it."""
    import zlib
    fix = "reinstall it: `apt-get install --reinstall dataset-fashion-mnist`"
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{path} is not a readable gzip file ({exc or type(exc).__name__}); {fix}") from None
    magic = int.from_bytes(raw[:4], "big")
    ndim = magic & 0xFF
    if len(raw) < 4 or magic >> 8 != 0x08 or not 1 <= ndim <= 3:
        raise ValueError(f"{path} is not an unsigned-byte idx file (magic {magic:#x}); {fix}")
    shape = [int.from_bytes(raw[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim)]
    need = 4 + 4 * ndim + int(np.prod(shape))
    if len(raw) != need:
        raise ValueError(f"{path} holds {len(raw)} bytes, but its header {shape} needs {need}: truncated? {fix}")
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def to_model_space(images_uint8: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (n, 28, 28) -> float (n, 1, 32, 32) in [-1, 1], padded with the (black) background."""
    x = torch.as_tensor(np.array(images_uint8), dtype=torch.float32) / 127.5 - 1.0
    pad = (SIZE - x.shape[-1]) // 2
    return torch.nn.functional.pad(x, (pad, pad, pad, pad), value=-1.0).unsqueeze(1)


def load_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (n, 1, 32, 32) in [-1, 1] and labels (n,) of 'train' (60,000) or 'test' (10,000)."""
    if split not in FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    d = data_dir()
    img, lab = FILES[split]
    return to_model_space(_read_idx(d / img)), torch.as_tensor(_read_idx(d / lab).astype(np.int64))


def provenance() -> dict:
    return {"source": "Debian package dataset-fashion-mnist", "folder": str(data_dir()), "train": 60000,
            "test": 10000, "preprocessing": "pad 28x28 -> 32x32 with background, scale to [-1, 1]"}
