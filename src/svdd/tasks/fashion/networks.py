"""Networks of the Fashion-MNIST task: the diffusers UNet's configuration, two classifiers of different
architectures (reward and evaluation / Fréchet features) and the SVDD-MC value net. Inputs are (n, 1, 32, 32) in
[-1, 1]."""

from __future__ import annotations

import torch
from torch import nn

UNET_CONFIG = dict(sample_size=32, in_channels=1, out_channels=1, layers_per_block=1,
                   block_out_channels=(32, 64, 64), norm_num_groups=8,
                   down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D"),
                   up_block_types=("UpBlock2D", "UpBlock2D", "UpBlock2D"))
SCHEDULER_CONFIG = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                        prediction_type="epsilon", clip_sample=True)


EVAL_ROWS = 64  # images per call when evaluating many: on a 2-core CPU the classifiers take ~3x longer per image
# in calls of 1000 (the evaluator's features of 2000 test images: 7.6 s in calls of 1000, 3.9 s of 250, 2.6 s of 64)


@torch.no_grad()
def in_chunks(fn, x: torch.Tensor, rows: int = EVAL_ROWS) -> torch.Tensor:
    """``fn`` applied to ``x`` in calls of ``rows`` images, outputs concatenated."""
    return torch.cat([fn(x[a:a + rows]) for a in range(0, x.shape[0], rows)])


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU())


class Classifier(nn.Module):
    """Reward classifier: a plain VGG-style CNN (3 stages of two 3x3 convolutions)."""

    def __init__(self, width: int = 32, classes: int = 10, dropout: float = 0.2):
        super().__init__()
        self.config = {"width": width, "classes": classes, "dropout": dropout}
        w = width
        self.body = nn.Sequential(_block(1, w), _block(w, w), nn.AvgPool2d(2), _block(w, 2 * w), _block(2 * w, 2 * w),
                                  nn.AvgPool2d(2), _block(2 * w, 4 * w), _block(4 * w, 4 * w), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(4 * w, classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class ResClassifier(nn.Module):
    """Evaluation classifier (another architecture, seed and data order): residual CNN with a 128-d feature layer,
    used for Fréchet distances and as the held-out check of the class reward."""

    def __init__(self, width: int = 48, classes: int = 10, feature_dim: int = 128):
        super().__init__()
        self.config = {"width": width, "classes": classes, "feature_dim": feature_dim}
        w = width
        self.stem = nn.Conv2d(1, w, 5, padding=2)
        self.stages = nn.ModuleList([nn.Sequential(nn.GroupNorm(8, w), nn.SiLU(), nn.Conv2d(w, w, 3, padding=1),
                                                   nn.GroupNorm(8, w), nn.SiLU(), nn.Conv2d(w, w, 3, padding=1))
                                     for _ in range(3)])
        self.feat = nn.Sequential(nn.Flatten(), nn.Linear(w * 4 * 4, feature_dim), nn.SiLU())
        self.head = nn.Linear(feature_dim, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for s in self.stages:
            h = nn.functional.avg_pool2d(h + s(h), 2)
        return self.feat(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ImageValueNet(nn.Module):
    """SVDD-MC value net f(x_t, t): CNN on the noisy image with the time as an extra channel and head input."""

    def __init__(self, width: int = 32, outputs: int = 1):
        super().__init__()
        self.config = {"width": width, "outputs": outputs}
        w = width
        self.body = nn.Sequential(_block(2, w), _block(w, w), nn.AvgPool2d(2), _block(w, 2 * w), _block(2 * w, 2 * w),
                                  nn.AvgPool2d(2), _block(2 * w, 4 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(4 * w + 1, 2 * w), nn.SiLU(), nn.Linear(2 * w, outputs))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """(n,) values, or (n, outputs) when the net predicts several rewards at once (e.g. every class)."""
        t = t.to(x.dtype).reshape(-1, 1)
        h = self.body(torch.cat([x, t.view(-1, 1, 1, 1).expand(-1, 1, *x.shape[2:])], 1))
        out = self.head(torch.cat([h, t], 1))
        return out.squeeze(-1) if out.shape[-1] == 1 else out
