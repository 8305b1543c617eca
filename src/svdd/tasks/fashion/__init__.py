"""Fashion-MNIST image tasks (32x32 grey, [-1, 1]).

* pre-trained model: a diffusers ``UNet2DModel`` + ``DDPMScheduler`` trained here on the 60,000 training images,
  sampled with DDIM, eta = 1 (the paper's image setting) through `svdd.DiffusersModel`;
* ``fashion-compress``: reward = −(JPEG size in kB at quality 95), exact and non-differentiable (the paper's
  compressibility); gradient guidance uses the differentiable SVDD-MC value net instead (classifier guidance);
* ``fashion-class``: reward = log p(class | image) of a CNN classifier trained here -- conditional generation from
  the unconditional model; the held-out check is a second classifier of another architecture and seed;
* naturalness: Fréchet distance between samples and the 10,000 test images (``fashion-class``: the 1,000 test
  images of the target class) in the 128-d feature space of the evaluation classifier (lower is better).
Retrain everything with ``python -m svdd.tasks.fashion.train ...``; records sit next to the weights.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...io import load_module
from ...rewards.image import ClassifierLogProb, JPEGCompressibility
from .. import TaskSpec, task_config
from .data import CLASSES

WEIGHTS = Path(__file__).parent / "weights"
_CACHE: dict[str, Any] = {}


def parse_class(target: Any) -> int:
    """A class index 0..9 or a class name (any case, e.g. 'sneaker', 'ankle boot')."""
    names = {c.lower(): k for k, c in enumerate(CLASSES)}
    if isinstance(target, str) and target.strip().lower() in names:
        return names[target.strip().lower()]
    try:
        k = int(target)
    except (TypeError, ValueError):
        k = -1
    if not 0 <= k < len(CLASSES):
        raise ValueError(f"unknown Fashion-MNIST class {target!r}; use an index or a name: "
                         + ", ".join(f"{i}={c}" for i, c in enumerate(CLASSES)))
    return k


def load_networks() -> dict[str, torch.nn.Module]:
    from .networks import Classifier, ImageValueNet, ResClassifier
    if "nets" not in _CACHE:
        nets = {"classifier": load_module(Classifier, WEIGHTS / "classifier_reward"),
                "evaluator": load_module(ResClassifier, WEIGHTS / "classifier_eval")}
        for name in ("value_compress", "value_class"):
            if (WEIGHTS / f"{name}.safetensors").exists():
                nets[name] = load_module(ImageValueNet, WEIGHTS / name)
        for n in nets.values():
            n.requires_grad_(False)
        _CACHE["nets"] = nets
    return _CACHE["nets"]


def load_model(num_steps: int = 50, scheduler: str = "ddim", eta: float = 1.0, device: str = "cpu"):
    from ...models.diffusers_adapter import DiffusersModel
    path = WEIGHTS / "ddpm"
    if not (path / "unet" / "diffusion_pytorch_model.safetensors").exists():
        raise FileNotFoundError(f"{path} holds no trained UNet: run `python -m svdd.tasks.fashion.train ddpm`")
    return DiffusersModel.from_pretrained(str(path), num_steps, scheduler=scheduler, eta=eta, device=device)


class ClassValue(torch.nn.Module):
    """The class value net: trained on log p(class | x0) for class 0..9 jointly, one output per class; this picks
    the target's output so that SVDD-MC sees ``f(x_t, t) -> (n,)``."""

    def __init__(self, net: torch.nn.Module, target: int):
        super().__init__()
        self.net, self.target = net, target

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = self.net(x, t)
        return out[:, self.target] if out.ndim == 2 else out


def _features(x: torch.Tensor) -> torch.Tensor:
    from .networks import in_chunks
    net = load_networks()["evaluator"]
    return in_chunks(lambda c: net.features(c.clamp(-1, 1)), x.detach().float().cpu()).double()


def test_feature_stats(target: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance of the evaluation features of the test images (of one class when ``target`` is set).
    Kept in the cache folder (`svdd.io.cache_dir`) under the hashes of those images and of the evaluator's weights:
    the 10,000 test images take ~13 s on a 2-core CPU, once per machine instead of once per process."""
    key = f"test_stats_{target}"
    if key not in _CACHE:
        from safetensors.torch import save
        from ...io import cache_dir, load_tensors, tensor_hash, weights_hash
        from ...io import atomic_write
        from .data import load_split
        x, y = load_split("test")
        x = x if target is None else x[y == target]
        path = cache_dir() / (f"fashion-test-features-{tensor_hash(x)}-"
                              f"{weights_hash(load_networks()['evaluator'])}.safetensors")
        try:
            stats = load_tensors(path)
            stats = (stats["mean"], stats["cov"])
        except (FileNotFoundError, ValueError, KeyError):  # not there yet, or damaged: compute it again
            f = _features(x)
            stats = (f.mean(0), torch.cov(f.T))
            try:
                atomic_write(path, save({"mean": stats[0], "cov": stats[1]}))
            except OSError:  # a read-only cache folder: this process keeps them
                pass
        _CACHE[key] = stats
    return _CACHE[key]


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^{1/2}), the matrix square root by eigendecomposition."""
    s1 = _sqrtm_psd(cov1)
    mid = _sqrtm_psd(s1 @ cov2 @ s1)
    return float(((mu1 - mu2) ** 2).sum() + torch.trace(cov1) + torch.trace(cov2) - 2 * torch.trace(mid))


def _sqrtm_psd(a: torch.Tensor) -> torch.Tensor:
    w, v = torch.linalg.eigh((a + a.T) / 2)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def fd_to_test(x: torch.Tensor, target: int | None = None) -> float:
    """Fréchet distance between samples and the test set (its images of class ``target`` when set) in the
    evaluation classifier's feature space."""
    f = _features(x)
    mu, cov = test_feature_stats(target)
    return frechet_distance(f.mean(0), torch.cov(f.T), mu, cov)


def test_images(n: int, seed: int, target: int | None = None) -> torch.Tensor:
    """n random test images, of class ``target`` when set (the reference row of the comparison)."""
    from .data import load_split
    x, y = load_split("test")
    x = x if target is None else x[y == target]
    return x[torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(1000 + seed))[:n]]


def write_samples(folder: Path, samples: torch.Tensor, rewards: dict[str, torch.Tensor]) -> None:
    """One PNG per sample, a grid of all of them, and a CSV of their rewards."""
    from PIL import Image
    from ...rewards.image import to_uint8
    folder.mkdir(parents=True, exist_ok=True)
    imgs = to_uint8(samples.clamp(-1, 1))[..., 0]
    for k, im in enumerate(imgs):
        Image.fromarray(im).save(folder / f"{k:04d}.png")
    save_grid(samples, folder / "grid.png")
    with open(folder / "rewards.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", *rewards])
        for k in range(len(imgs)):
            w.writerow([f"{k:04d}.png", *(f"{float(v[k]):.6g}" for v in rewards.values())])


def save_grid(samples: torch.Tensor, path: Path, ncol: int = 8, scale: int = 2) -> None:
    from PIL import Image
    from ...rewards.image import to_uint8
    imgs = to_uint8(samples.clamp(-1, 1))[..., 0]
    n = len(imgs)
    nrow = (n + ncol - 1) // ncol
    h, w = imgs.shape[1:]
    grid = np.full((nrow * (h + 2) + 2, ncol * (w + 2) + 2), 255, np.uint8)
    for k, im in enumerate(imgs):
        r, c = divmod(k, ncol)
        grid[2 + r * (h + 2): 2 + r * (h + 2) + h, 2 + c * (w + 2): 2 + c * (w + 2) + w] = im
    Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST).save(path)


def method_grid(samples: dict[str, torch.Tensor], rewards: dict[str, np.ndarray], path: Path, per_row: int = 10,
                title: str = "") -> None:
    """One row of samples per method, labelled with the method's median reward (the README figure)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ...rewards.image import to_uint8
    fig, axes = plt.subplots(len(samples), 1, figsize=(per_row * 0.75 + 1.6, 0.85 * len(samples) + 0.5), squeeze=False)
    for ax, (label, x) in zip(axes[:, 0], samples.items()):
        imgs = to_uint8(x[:per_row].clamp(-1, 1))[..., 0]
        strip = np.concatenate([np.pad(im, 1, constant_values=255) for im in imgs], axis=1)
        ax.imshow(strip, cmap="gray", vmin=0, vmax=255)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(f"{label}\n{np.nanmedian(rewards[label]):.3g}", rotation=0, ha="right", va="center", fontsize=8)
    if title:
        axes[0, 0].set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def build_spec(kind: str, num_steps: int = 50, target: Any = "Ankle boot", scheduler: str = "ddim",
               eta: float = 1.0, device: str = "cpu") -> TaskSpec:
    import copy
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested, but this torch ({torch.__version__}) sees no CUDA device")
    nets = {k: copy.deepcopy(n).to(device) for k, n in load_networks().items()}
    model = load_model(num_steps, scheduler, eta, device)
    metrics = {"frechet_distance": fd_to_test}
    files = dict(write_samples=write_samples, figure=method_grid, reference=test_images)
    options = {"num_steps": num_steps, "scheduler": scheduler, "eta": eta, "device": str(device)}
    if kind == "compress":
        reward = JPEGCompressibility(95)
        return TaskSpec(model, reward, value_net=nets.get("value_compress"), set_metrics=metrics,
                        config=task_config(options, reward, unet=model.unet, feature_net=nets["evaluator"],
                                           value_net=nets.get("value_compress")), **files)
    k = parse_class(target)
    value = ClassValue(nets["value_class"], k) if "value_class" in nets else None
    files["reference"] = lambda n, seed: test_images(n, seed, k)
    reward = ClassifierLogProb(nets["classifier"], k, class_names=CLASSES)
    eval_reward = ClassifierLogProb(nets["evaluator"], k, name=f"held-out log p({CLASSES[k]})", class_names=CLASSES)
    return TaskSpec(model, reward, eval_reward=eval_reward,
                    value_net=value, set_metrics={"frechet_distance_to_class": lambda x: fd_to_test(x, k),
                                                  "class_accuracy_heldout": lambda x: _accuracy(x, k)},
                    config=task_config({**options, "target": k, "target_name": CLASSES[k]}, reward, eval_reward,
                                       unet=model.unet, reward_oracle=nets["classifier"],
                                       eval_oracle=nets["evaluator"], value_net=value), **files)


def _accuracy(x: torch.Tensor, k: int) -> float:
    with torch.no_grad():
        return float((load_networks()["evaluator"](x.detach().float().cpu().clamp(-1, 1)).argmax(1) == k).float().mean())
