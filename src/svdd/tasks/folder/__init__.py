"""Folder tasks: a task made of folders that `svdd train prior|oracle|value` wrote from a user's own sequences --
no code. ``svdd sample|compare|frontier --prior P --oracle O [--eval-oracle E] [--value V]`` builds it, and
`folder_task` does the same from Python (a `svdd.tasks.Task`, usable with `svdd.sample_run` and every engine)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ...io import load_module
from ...rewards import Reward
from .. import Task, TaskSpec, standard_methods, task_config
from .data import Alphabet, read_fasta


class FolderOracle(Reward):
    """A trained `SeqOracle` as a reward: the target in its units (regression) or the logit of the second label
    (classification). Takes tokens, or probabilities over the letters (gradient guidance)."""

    tune_batch = True

    def __init__(self, folder: str | Path, name: str | None = None):
        from .networks import SeqOracle
        from .train import read_info
        self.info = read_info(folder, "oracle")
        super().__init__(None, name=name or f"{self.info['target']} ({Path(folder).name})", differentiable=True)
        self.net = load_module(SeqOracle, Path(folder) / "oracle").requires_grad_(False)
        self.letters = self.info["alphabet"]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_floating_point() and x.shape[-1] == len(self.letters):  # no padding channel in a fixed-length prior
            x = torch.cat([x, torch.zeros_like(x[..., :1])], -1)
        out = self.net(x)
        return out * self.info["std"] + self.info["mean"] if self.info["task"] == "regression" else out


class FolderTask:
    """``build`` of a folder task (picklable: a Ray worker or a torchrun rank builds it from the same folders)."""

    def __init__(self, prior, oracle, eval_oracle=None, value=None, reward_name: str | None = None,
                 eval_name: str | None = None):
        self.prior, self.oracle = str(prior), str(oracle)
        self.eval_oracle = None if eval_oracle is None else str(eval_oracle)
        self.value = None if value is None else str(value)
        self.reward_name, self.eval_name = reward_name, eval_name

    def __call__(self, num_steps: int | None = None) -> TaskSpec:
        from ...models import MaskedDiffusion
        from .networks import SeqDenoiser, SeqValueNet
        from .train import read_info
        info = read_info(self.prior, "prior")
        alpha = Alphabet(**info["alphabet"])
        reward = FolderOracle(self.oracle, name=self.reward_name)
        eval_reward = FolderOracle(self.eval_oracle, name=self.eval_name or f"{reward.info['target']} (evaluation: "
                                   f"{Path(self.eval_oracle).name})") if self.eval_oracle else None
        for o in filter(None, (reward, eval_reward)):
            if o.letters != alpha.letters:
                raise ValueError(f"the oracle's alphabet {o.letters!r} differs from the prior's {alpha.letters!r}")
        value_net = None
        if self.value is not None:
            read_info(self.value, "value")
            value_net = load_module(SeqValueNet, Path(self.value) / "value").requires_grad_(False)
            if value_net.config["vocab"] != alpha.vocab_size:
                raise ValueError(f"{self.value}: the value net was trained for another prior (vocabulary "
                                 f"{value_net.config['vocab']}, this prior's {alpha.vocab_size})")
        net = load_module(SeqDenoiser, Path(self.prior) / "prior").requires_grad_(False)
        steps = num_steps if num_steps is not None else info["num_steps"]
        model = MaskedDiffusion(net, seq_len=alpha.length, vocab_size=alpha.vocab_size, num_steps=steps,
                                time_independent=True)

        def write_samples(folder: Path, samples: torch.Tensor, rewards: dict[str, torch.Tensor]) -> None:
            write_outputs(folder, alpha.decode(samples), rewards)

        def read_samples(path) -> torch.Tensor:  # a FASTA file in the prior's alphabet (refinement's warm start)
            names, seqs = read_fasta(path)
            return alpha.encode(seqs, names, source=str(path))

        return TaskSpec(model, reward, naturalness=lambda x: -model.nelbo(x, num_draws=8, max_batch=512),
                        naturalness_name="log-lik. bound (nats/seq)", eval_reward=eval_reward, decode=alpha.decode,
                        value_net=value_net, write_samples=write_samples, read_samples=read_samples,
                        config=task_config({"num_steps": steps}, reward, eval_reward, denoiser=net,
                                           reward_oracle=reward.net,
                                           eval_oracle=eval_reward.net if eval_reward else None, value_net=value_net))


def write_outputs(folder: Path, seqs: list[str], rewards: dict[str, torch.Tensor]) -> None:
    """samples.fasta (rewards in the headers) and samples.csv (name, sequence, one column per reward)."""
    import csv
    import io

    from ...io import atomic_write
    from .data import write_fasta
    comments = [" ".join(f"{k}={float(v[j]):.4g}".replace(" ", "_") for k, v in rewards.items())
                for j in range(len(seqs))]
    write_fasta(folder / "samples.fasta", [f"seq{j}" for j in range(len(seqs))], seqs, comments)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["name", "sequence", *rewards])
    for j, s in enumerate(seqs):
        w.writerow([f"seq{j}", s, *(float(v[j]) for v in rewards.values())])
    atomic_write(folder / "samples.csv", buf.getvalue().encode())


def folder_task(prior, oracle, eval_oracle=None, value=None, name: str | None = None,
                methods: dict[str, dict[str, Any]] | None = None, num_samples: int = 128) -> Task:
    """A `Task` from trained folders; its comparison: the paper's methods at M = 10, and SVDD-MC with a value net."""
    if methods is None:
        methods = standard_methods()
        if value is not None:
            methods["svdd-mc"] = {"method": "svdd", "M": 10, "value": "task"}
    return Task(name or f"folder:{Path(prior).name}+{Path(oracle).name}",
                f"masked diffusion prior {prior}, oracle {oracle}", FolderTask(prior, oracle, eval_oracle, value),
                methods=methods, num_samples=num_samples, quick={"num_samples": 32, "seeds": [0]},
                options=("num_steps",))
