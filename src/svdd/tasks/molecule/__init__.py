"""Molecule tasks: a masked diffusion over SELFIES tokens trained on MOSES, steered toward QED, synthetic
accessibility, or docking against PARP1 with AutoDock Vina (the expensive black box the method is meant for).

* pre-trained model: `MaskedDiffusion` over ``SEQ_LEN`` SELFIES tokens (padding ``[nop]``), a small transformer
  denoiser trained on MOSES train (``python -m svdd.tasks.molecule.train denoiser``);
* rewards: QED and (10 − SA)/9 from RDKit, in-process; docking = max(−Vina score, 0) kcal/mol on dockstring's
  prepared PARP1 receptor and box, run by a pool of worker processes (per-molecule timeout; a failure is NaN) behind
  a reward cache keyed by canonical SMILES (in memory, plus an SQLite file with ``cache=PATH``), so a molecule is
  docked once per run -- and, with the file, reused across runs, methods and processes (two processes that ask for
  the same new molecule at the same moment may both dock it);
* held-out check for docking: re-docking with a higher exhaustiveness (2) and another seed (the task's evaluation
  reward); vinardo re-scoring in ``benchmarks/molecule_redock.py``;
* SVDD-MC value nets (one per reward) regressed on rollouts of the pre-trained model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ...io import load_module
from .. import TaskSpec, task_config
from .data import SEQ_LEN, VOCAB, decode, encode

WEIGHTS = Path(__file__).parent / "weights"
REWARDS = ("qed", "sa", "docking")


def smiles_key(row: torch.Tensor) -> str:
    """Cache key of one token row: its canonical SMILES ('' for the empty molecule)."""
    return decode(row.unsqueeze(0))[0] or ""


def load_denoiser():
    from .networks import TransformerDenoiser
    return load_module(TransformerDenoiser, WEIGHTS / "denoiser").requires_grad_(False)


def load_value(reward: str):
    from .networks import ValueNet
    stem = WEIGHTS / f"value_{reward}"
    if not stem.with_suffix(".safetensors").exists():
        return None
    return load_module(ValueNet, stem).requires_grad_(False)


def build_model(num_steps: int = 64, device: str = "cpu"):
    from ...models import MaskedDiffusion
    return MaskedDiffusion(load_denoiser().to(device), seq_len=SEQ_LEN, vocab_size=len(VOCAB), num_steps=num_steps,
                           device=device, time_independent=True)  # the transformer has no time input


def docking_reward(*, target: str = "PARP1", exhaustiveness: int = 1, seed: int = 1, sf_name: str = "vina",
                   cpu: int = 1, workers: int = 2, timeout: float | None = 30.0, cache: str | Path | None = None):
    """Docking reward on token rows: a pool of ``workers`` Vina processes (per-molecule ``timeout``; a timeout, crash
    or error is NaN) behind a `CachedReward` keyed by canonical SMILES (``cache``: an SQLite file shared by runs and
    processes; None: memory only)."""
    from ...rewards.cache import CachedReward
    from ...rewards.chem import VinaDocking
    dock = VinaDocking(target=target, exhaustiveness=exhaustiveness, sf_name=sf_name, seed=seed, cpu=cpu)
    return CachedReward(dock.reward(workers=workers, timeout=timeout), key=smiles_key, path=cache, namespace=dock.name)


def build_spec(reward: str = "qed", num_steps: int | None = None, exhaustiveness: int = 1, eval_exhaustiveness: int = 2,
               workers: int = 2, timeout: float = 30.0, cache: str | None = None, device: str = "cpu") -> TaskSpec:
    from ...rewards.cache import CachedReward
    from ...rewards.chem import QED, SA
    from . import metrics
    if reward not in REWARDS:
        raise ValueError(f"unknown molecule reward {reward!r}; expected one of {REWARDS}")
    num_steps = num_steps or 32  # 32 steps for 56 tokens: as good as 64 (see the denoiser record), half the cost
    model = build_model(num_steps, device)
    eval_reward = None
    if reward == "docking":
        guide = docking_reward(exhaustiveness=exhaustiveness, seed=1, workers=workers, timeout=timeout, cache=cache)
        eval_reward = docking_reward(exhaustiveness=eval_exhaustiveness, seed=2, workers=workers, timeout=timeout,
                                     cache=cache)
    else:
        guide = CachedReward(QED() if reward == "qed" else SA(), key=smiles_key)
    value = load_value(reward)

    def smiles_metric(fn):
        return lambda x: fn(decode(x))

    set_metrics = {"validity": smiles_metric(metrics.validity), "uniqueness": smiles_metric(metrics.uniqueness),
                   "novelty": smiles_metric(metrics.novelty),
                   "int_diversity": smiles_metric(metrics.internal_diversity)}
    options: dict[str, Any] = {"reward": reward, "num_steps": num_steps}
    if reward == "docking":
        options.update(exhaustiveness=exhaustiveness, eval_exhaustiveness=eval_exhaustiveness, workers=workers,
                       timeout=timeout, cache=cache)
    return TaskSpec(model, guide, naturalness=lambda x: -model.nelbo(x, num_draws=8, max_batch=512),
                    naturalness_name="log-lik. bound (nats/molecule)", eval_reward=eval_reward,
                    decode=lambda x: [s or "" for s in decode(x)], value_net=value, set_metrics=set_metrics,
                    write_samples=write_samples, reference=reference, figure=figure, read_samples=read_smiles,
                    config=task_config(options, guide, eval_reward, denoiser=model.network, value_net=value))


def reference(n: int, seed: int) -> torch.Tensor:
    """``n`` random MOSES test molecules as token rows (the "test-data" row of a comparison)."""
    from .data import moses_tokens
    test = moses_tokens("test")
    g = torch.Generator().manual_seed(seed)
    return test[torch.randperm(test.shape[0], generator=g)[:n]]


def read_smiles(path) -> torch.Tensor:
    """A text file with one SMILES per line (first column; blank lines and lines starting with # skipped) ->
    tokens. Errors name the line."""
    from .data import MoleculeError, encode_one
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such SMILES file")
    rows = []
    for ln, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            rows.append(encode_one(line.split()[0]))
        except MoleculeError as exc:
            raise ValueError(f"{path}: line {ln}: {exc}") from None
    if not rows:
        raise ValueError(f"{path}: no SMILES")
    return torch.tensor(rows, dtype=torch.long)


def write_samples(folder: Path, samples: torch.Tensor, rewards: dict[str, torch.Tensor]) -> None:
    """``samples.csv``: canonical SMILES, SELFIES, every reward (``reward_<name>``), and QED, SA score, MW, logP and
    heavy atoms of each molecule."""
    import csv
    import os
    from ...rewards.chem import heavy_atoms, logp, molecular_weight, qed, sa_score
    smiles = decode(samples)
    props = {"qed": qed, "sa_score": sa_score, "mw": molecular_weight, "logp": logp, "heavy_atoms": heavy_atoms}
    tmp = folder / "samples.csv.tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "smiles", "selfies", *(f"reward_{k}" for k in rewards), *props])
        from .data import to_selfies
        for k, (s, sf) in enumerate(zip(smiles, to_selfies(samples))):
            w.writerow([k, s or "", sf, *(float(v[k]) for v in rewards.values()),
                        *((fn(s) if s else float("nan")) for fn in props.values())])
    os.replace(tmp, folder / "samples.csv")


def figure(samples: dict[str, torch.Tensor], rewards: dict[str, Any], path: Path, title: str, per_method: int = 6) -> None:
    """A grid of the top molecules (by reward) of every method, RDKit drawings labelled with their reward."""
    import numpy as np
    from rdkit import Chem
    from rdkit.Chem import Draw
    mols, legends = [], []
    for label, x in samples.items():
        r = np.asarray(rewards[label], dtype=float)
        smiles = decode(x)
        order = [k for k in np.argsort(-np.nan_to_num(r, nan=-np.inf)) if smiles[k]]
        seen: list[str] = []
        for k in order:
            if smiles[k] not in seen:
                seen.append(smiles[k])
            if len(seen) == per_method:
                break
        rs = {smiles[k]: r[k] for k in order}
        for j in range(per_method):
            s = seen[j] if j < len(seen) else None
            mols.append(Chem.MolFromSmiles(s) if s else Chem.Mol())
            legends.append(f"{label}: {rs[s]:.3g}" if s else label)
    img = Draw.MolsToGridImage(mols, molsPerRow=per_method, subImgSize=(220, 180), legends=legends)
    img.save(str(path))


__all__ = ["build_spec", "build_model", "docking_reward", "smiles_key", "encode", "decode", "REWARDS"]
