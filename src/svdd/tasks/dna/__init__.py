"""DNA task: HepG2-specific open chromatin (ENCODE DHS), 200 bp.

* pre-trained model: masked diffusion with a dilated-convolution denoiser trained on real DHS sequences;
* guidance reward: log-odds of HepG2 from a CNN cell-type classifier (odd autosomes);
* evaluation reward: the same log-odds from a classifier of another architecture, seed and training chromosomes
  (even autosomes, X, Y), never seen by the samplers -- a gain seen only by the guidance oracle is reward hacking;
* SVDD-MC value net regressed on rollouts of the pre-trained model.
Retrain everything with ``python -m svdd.tasks.dna.train ...`` (see train.py); records sit next to the weights.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ...io import load_module
from ...rewards import Reward
from .. import TaskSpec, task_config

WEIGHTS = Path(__file__).parent / "weights"


class OracleReward(Reward):
    """HepG2 log-odds of a cell-type classifier; differentiable on probability input (n, L, 4)."""

    tune_batch = True  # a cheap network (see `svdd.Reward.tune_batch`)

    def __init__(self, net, name):
        super().__init__(None, name=name, differentiable=True)
        self.net = net

    def __call__(self, x):
        from .networks import hepg2_logit
        return hepg2_logit(self.net(x))


def load_networks():
    from .networks import ConvOracle, DilatedDenoiser, DilatedResOracle, ValueNet
    nets = {"denoiser": load_module(DilatedDenoiser, WEIGHTS / "denoiser"),
            "guidance": load_module(ConvOracle, WEIGHTS / "oracle_guidance"),
            "evaluation": load_module(DilatedResOracle, WEIGHTS / "oracle_evaluation")}
    if (WEIGHTS / "value_net.safetensors").exists():
        nets["value"] = load_module(ValueNet, WEIGHTS / "value_net")
    for n in nets.values():
        n.requires_grad_(False)
    return nets


def build_spec(num_steps: int = 128) -> TaskSpec:
    from ...models import MaskedDiffusion
    from .data import decode
    nets = load_networks()
    # the denoiser has no time input: a candidate that unmasked nothing reuses its parent's output
    model = MaskedDiffusion(nets["denoiser"], seq_len=200, vocab_size=4, num_steps=num_steps, time_independent=True)
    reward = OracleReward(nets["guidance"], "hepg2-guidance")
    eval_reward = OracleReward(nets["evaluation"], "hepg2-evaluation")
    spec = TaskSpec(model, reward,
                    naturalness=lambda x: -model.nelbo(x, num_draws=8, max_batch=512),
                    naturalness_name="log-lik. bound (nats/seq)",
                    eval_reward=eval_reward, decode=decode,
                    value_net=nets.get("value"), set_metrics={"6mer_corr_hepg2": _kmer_corr_with_real_hepg2},
                    write_samples=_write_samples, read_samples=_read_samples,
                    config=task_config({"num_steps": num_steps}, reward, eval_reward, denoiser=nets["denoiser"],
                                       reward_oracle=nets["guidance"], eval_oracle=nets["evaluation"],
                                       value_net=nets.get("value")))
    return spec


def _read_samples(path) -> torch.Tensor:
    """A FASTA file of 200-bp sequences over ACGT (refinement's warm start)."""
    from .data import read_fasta
    return read_fasta(path)[1]


_REAL_HEPG2 = {}


def _kmer_corr_with_real_hepg2(x: torch.Tensor) -> float:
    from .data import load_dhs
    from .metrics import kmer_freq
    if "f" not in _REAL_HEPG2:
        d = load_dhs()
        _REAL_HEPG2["f"] = kmer_freq(torch.cat([d.hepg2("train"), d.hepg2("validation"), d.hepg2("test")]), 6)
    return float(torch.corrcoef(torch.stack([kmer_freq(x, 6), _REAL_HEPG2["f"]]))[0, 1])


def _write_samples(folder: Path, samples: torch.Tensor, rewards: dict[str, torch.Tensor]) -> None:
    import csv
    from .data import decode, write_fasta
    write_fasta(folder / "samples.fasta", samples, rewards=rewards)
    with open(folder / "samples.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "sequence", *rewards])
        for k, s in enumerate(decode(samples)):
            w.writerow([f"seq{k}", s, *(float(v[k]) for v in rewards.values())])
