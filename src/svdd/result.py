"""What every run returns: samples, final rewards, diagnostics, cost counters and the full config."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .cost import Cost

Tensor = torch.Tensor


@dataclass
class Diagnostics:
    """Per-step records (index = step). Values are the estimated values of the states kept at that step."""

    kept_values: list[Tensor] = field(default_factory=list)
    ess: list[float] = field(default_factory=list)
    resampled: list[bool] = field(default_factory=list)
    failed_candidates: list[int] = field(default_factory=list)
    all_failed: list[int] = field(default_factory=list)
    final_weights: Tensor | None = None  # SMC without a final resampling: normalised weights of the samples

    def add(self, info) -> None:
        """Append one step's `StepInfo`. Tensors stay where they are until `settle` (a copy to the host per step
        would wait for the GPU at every step)."""
        if info.kept_values is not None:
            self.kept_values.append(info.kept_values.detach())
        self.ess.append(float(info.ess))
        self.resampled.append(bool(info.resampled))
        self.failed_candidates.append(info.failed)
        self.all_failed.append(info.all_failed)

    def settle(self) -> "Diagnostics":
        """Bring the records to the host: kept values as float64 CPU tensors, counts as ints."""
        self.kept_values = [v.double().cpu() for v in self.kept_values]
        self.failed_candidates, self.all_failed = _ints(self.failed_candidates), _ints(self.all_failed)
        return self

    def summary(self) -> dict[str, Any]:
        return {"steps": len(self.ess), "resampling_events": int(sum(self.resampled)),
                "failed_candidates": int(sum(self.failed_candidates)),
                "all_candidates_failed": int(sum(self.all_failed)),
                "min_ess": min((e for e in self.ess if e == e), default=None)}


@dataclass
class SampleResult:
    samples: Tensor
    rewards: Tensor  # float64, NaN where the reward failed
    diagnostics: Diagnostics
    cost: Cost
    config: dict[str, Any]
    x0_estimates: Tensor | None = None  # (T + 1, N, ...) x̂0 of the kept states at levels 0..T, on request
    log_z: float | None = None  # particle methods with potentials: log Ẑ, Ẑ unbiased for E_pre[exp(r/alpha)]

    def __len__(self) -> int:
        return self.samples.shape[0]

    def reward_quantiles(self, qs=(0.5, 0.9)) -> list[float]:
        r = self.rewards[~torch.isnan(self.rewards)]
        return [float(torch.quantile(r, q)) if r.numel() else float("nan") for q in qs]

    def summary(self) -> dict[str, Any]:
        med, p90 = self.reward_quantiles()
        return {"method": self.config.get("method", {}).get("name"), "num_samples": len(self),
                "reward_median": med, "reward_p90": p90,
                "reward_failed": int(torch.isnan(self.rewards).sum()),
                "cost_per_sample": self.cost.per_sample(), "diagnostics": self.diagnostics.summary(),
                "log_z": self.log_z}

    def save(self, folder: str | Path) -> Path:
        """Write samples.pt, rewards.csv and run.json (config, cost, summary) into ``folder``."""
        import io

        from .io import atomic_write
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        torch.save({"samples": self.samples.cpu(), "rewards": self.rewards.cpu()}, buf)
        atomic_write(folder / "samples.pt", buf.getvalue())
        csv = "index,reward\n" + "".join(f"{k},{r!r}\n" for k, r in enumerate(self.rewards.tolist()))
        atomic_write(folder / "rewards.csv", csv.encode())
        atomic_write(folder / "run.json", json.dumps({"config": self.config, "summary": self.summary()}, indent=2,
                                                     default=str).encode())
        return folder


def _ints(counts: list) -> list[int]:
    """Per-step counts (ints or 0-d device tensors) as ints, with one device-to-host copy for all the tensors."""
    tensors = [c for c in counts if isinstance(c, torch.Tensor)]
    if not tensors:
        return [int(c) for c in counts]
    values = iter(torch.stack([c.reshape(()).to(tensors[0].device, torch.long) for c in tensors]).tolist())
    return [int(next(values)) if isinstance(c, torch.Tensor) else int(c) for c in counts]
