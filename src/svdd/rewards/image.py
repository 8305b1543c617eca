"""Image rewards. Images are float tensors (n, C, H, W) with C = 1 or 3 in [-1, 1] (diffusers' convention).

* `JPEGCompressibility`: −(size of the JPEG file in kB at quality 95), the paper's non-differentiable reward, computed
  exactly with Pillow (kB = 1000 bytes).
* `ClassifierLogProb`: log p(class | image) of a classifier -- conditional generation from an unconditional model,
  and a differentiable reward for gradient guidance.
"""

from __future__ import annotations

import io

import numpy as np
import torch

from . import Reward

Tensor = torch.Tensor


def check_images(x: Tensor, name: str, tolerance: float = 0.5) -> Tensor:
    """Validate a batch of images and clamp it to [-1, 1]; raise naming the bad shape, dtype or range.

    Values up to ``tolerance`` outside [-1, 1] are clamped (x̂0 estimates overshoot a little); anything beyond is a
    wrong convention, e.g. images in [0, 255]."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"reward {name!r} expects a torch.Tensor of images, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"reward {name!r} expects float images in [-1, 1], got dtype {x.dtype} "
                        "(convert uint8 images with x.float() / 127.5 - 1)")
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"reward {name!r} expects images of shape (n, C, H, W) with C = 1 or 3, got {tuple(x.shape)}")
    if x.numel():
        lo, hi = float(x.detach().min()), float(x.detach().max())
        if lo < -1 - tolerance or hi > 1 + tolerance:
            raise ValueError(f"reward {name!r} expects images in [-1, 1]; got values in [{lo:.3g}, {hi:.3g}] "
                             "(images in [0, 1] or [0, 255]? rescale them to [-1, 1])")
    return x.clamp(-1, 1)


def to_uint8(x: Tensor) -> np.ndarray:
    """[-1, 1] float (n, C, H, W) -> uint8 (n, H, W, C), rounding like diffusers' image post-processing."""
    return ((x.detach().float().cpu() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def jpeg_bytes(image_hwc: np.ndarray, quality: int = 95) -> int:
    from PIL import Image
    img = Image.fromarray(image_hwc[..., 0] if image_hwc.shape[-1] == 1 else image_hwc)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.tell()


class JPEGCompressibility(Reward):
    """−(JPEG size in kB) at the given quality (95 as the paper). Non-differentiable."""

    def __init__(self, quality: int = 95):
        if not 1 <= int(quality) <= 100:
            raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
        super().__init__(None, name="jpeg-compressibility", differentiable=False)
        self.quality = int(quality)

    def __call__(self, x: Tensor) -> Tensor:
        imgs = to_uint8(check_images(x, self.name))
        return torch.tensor([-jpeg_bytes(im, self.quality) / 1000.0 for im in imgs], dtype=torch.float64)


class ClassifierLogProb(Reward):
    """log p(target | image) under a classifier ``net(x) -> logits``. Differentiable."""

    def __init__(self, net: torch.nn.Module, target: int, name: str | None = None, class_names=None):
        num = getattr(getattr(net, "config", {}), "get", lambda *_: None)("classes")
        if not isinstance(target, int) or target < 0 or (num is not None and target >= num):
            names = f" ({', '.join(f'{k}={c}' for k, c in enumerate(class_names))})" if class_names else ""
            raise ValueError(f"target class must be an int in [0, {num}), got {target!r}{names}")
        label = class_names[target] if class_names else str(target)
        super().__init__(None, name=name or f"log p({label})", differentiable=True)
        self.net = net
        self.target = target

    def __call__(self, x: Tensor) -> Tensor:
        x = check_images(x, self.name)
        return torch.log_softmax(self.net(x).float(), dim=1)[:, self.target]
