"""Task registry: a task bundles a pre-trained model, a guidance reward, optionally a held-out evaluation reward,
a naturalness score and the method settings its comparison uses. ``svdd tasks`` lists them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch


@dataclass
class TaskSpec:
    model: Any
    reward: Any
    naturalness: Callable[[torch.Tensor], torch.Tensor] | None = None
    naturalness_name: str = "log-likelihood"
    eval_reward: Any = None
    decode: Callable[[torch.Tensor], list[str]] | None = None
    value_net: Any = None  # the task's trained SVDD-MC value net; methods refer to it as value="task"
    set_metrics: dict[str, Callable[[torch.Tensor], float]] = field(default_factory=dict)  # per-run metrics
    write_samples: Callable[..., None] | None = None  # (folder, samples, {reward name: values}) -> files
    reference: Callable[[int, int], torch.Tensor] | None = None  # (n, seed) -> n real samples for a "data" row
    figure: Callable[..., None] | None = None  # ({method: samples}, {method: rewards}, path, title) -> one figure
    read_samples: Callable[[Any], torch.Tensor] | None = None  # a user's file (FASTA, SMILES list) -> clean samples
    config: dict[str, Any] = field(default_factory=dict)  # task name, options, weight hashes (see `task_config`)

    def resolve(self, options: dict[str, Any]) -> dict[str, Any]:
        """Replace value="task" by the task's value net."""
        out = dict(options)
        if out.get("value") == "task":
            if self.value_net is None:
                raise ValueError("this task ships no value net (value='task')")
            out["value"] = self.value_net
        return out


@dataclass
class Task:
    name: str
    description: str
    build: Callable[..., TaskSpec]
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)  # comparison: label -> method name + options
    num_samples: int = 64
    quick: dict[str, Any] = field(default_factory=dict)  # `--quick` settings: num_samples, seeds, methods
    options: tuple[str, ...] = ()  # keyword options of `build` settable from the CLI (`--class` sets 'target')

    def make(self, **options) -> TaskSpec:
        bad = sorted(set(options) - set(self.options))
        if bad:
            raise ValueError(f"task {self.name!r} takes no option(s) {bad}; its options: {list(self.options) or 'none'}")
        spec = self.build(**options)
        spec.config = {"task": self.name, "options": dict(options), **spec.config}
        return spec


def task_config(options: dict[str, Any], reward: Any = None, eval_reward: Any = None,
                **networks: Any) -> dict[str, Any]:
    """The ``TaskSpec.config`` of a built task: its resolved options, reward names and the weight hashes of its
    networks (None where one is missing or not a torch module)."""
    from ..io import weights_hash
    return {"options": dict(options), "reward": getattr(reward, "name", None),
            "eval_reward": getattr(eval_reward, "name", None),
            "weights": {k: weights_hash(v) for k, v in networks.items()}}


TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; registered tasks: {sorted(TASKS)} (see `svdd tasks`)") from None


def _toy_motif(**kw) -> TaskSpec:
    from .toy import build_toy_motif, decode
    model, reward, chain = build_toy_motif(**kw)
    return TaskSpec(model, reward, naturalness=chain.log_prob, naturalness_name="exact log p (nats)", decode=decode,
                    config=task_config(kw, reward))


def _toy_gmm(**kw) -> TaskSpec:
    from .toy import build_toy_gmm, gmm_log_density
    model, reward, net = build_toy_gmm(**kw)
    return TaskSpec(model, reward, naturalness=lambda x: gmm_log_density(net, x), naturalness_name="exact log p",
                    config=task_config(kw, reward))


def standard_methods(M: int = 10, dps_scale: float = 1.0, smc_alpha: float = 0.5) -> dict[str, dict[str, Any]]:
    """The paper's comparison: pre-trained, compute-matched Best-of-N, DPS, SMC, SVDD-PM and SVDD-R."""
    return {"pretrained": {"method": "pretrained"}, "best-of-n": {"method": "best-of-n", "M": M},
            "dps": {"method": "dps", "scale": dps_scale, "scale_mode": "absolute"}, "smc": {"method": "smc", "alpha": smc_alpha},
            "svdd-pm": {"method": "svdd", "M": M}, "svdd-r": {"method": "svdd-r", "M": M}}


register_task(Task(
    "toy-motif", "DNA-like length-24 sequences from an exact Markov-chain masked diffusion; reward: TATA-box PWM match "
    "(differentiable). Runs in seconds; naturalness is the exact log-likelihood.", _toy_motif,
    methods=standard_methods(dps_scale=2.0), num_samples=128, options=("num_steps",)))

def _lazy(module: str) -> Callable[..., TaskSpec]:
    """The ``build_spec`` of a task package, imported on first use (its networks and data load only then)."""
    def build(**kw) -> TaskSpec:
        import importlib
        return importlib.import_module(f"{__name__}.{module}").build_spec(**kw)
    return build


register_task(Task(
    "dna-enhancer", "HepG2-specific open chromatin (ENCODE DHS), 200 bp: masked diffusion trained on real DHS "
    "sequences; guidance reward = HepG2 log-odds of a CNN cell-type classifier; evaluation reward = a held-out "
    "classifier of another architecture and training chromosomes. (Not the paper's MPRA activity.)", _lazy("dna"),
    methods={**standard_methods(dps_scale=10.0, smc_alpha=0.5),
             "dps-strong": {"method": "dps", "scale": 30.0, "scale_mode": "absolute"}, "smc-cold": {"method": "smc", "alpha": 0.25},
             "classifier-guidance": {"method": "dps", "target": "value", "value": "task", "scale": 10.0, "scale_mode": "absolute"},
             "svdd-mc": {"method": "svdd", "M": 10, "value": "task"}},
    num_samples=256, quick={"num_samples": 32, "seeds": [0]}, options=("num_steps",)))

register_task(Task(
    "rna-utr-mrl", "SYNTHETIC 5'UTR design, 50 nt: masked diffusion prior trained on a random N50 library; reward: a "
    "CNN oracle of a synthetic mean-ribosome-load proxy (uAUGs, uORFs, Kozak, ViennaRNA folding energy; proxy A). "
    "Held-out check: an oracle of a differently parameterised proxy B. Synthetic labels, not measurements.",
    _lazy("rna_utr"),
    methods={**standard_methods(dps_scale=1.0), "svdd-mc": {"method": "svdd", "M": 10, "value": "task"}},
    num_samples=128, quick={"num_samples": 32, "seeds": [0]}, options=("num_steps",)))


def _fashion(kind):
    def build(**kw) -> TaskSpec:
        from .fashion import build_spec
        return build_spec(kind, **kw)
    return build


_FASHION_METHODS = {"pretrained": {"method": "pretrained"}, "best-of-n": {"method": "best-of-n", "M": 20}}
register_task(Task(
    "fashion-compress", "Fashion-MNIST 32x32 (diffusers UNet2DModel + DDPM trained here, sampled by DDIM eta=1, 50 "
    "steps); reward: -(JPEG size in kB at quality 95), non-differentiable (the paper's compressibility). DPS here is "
    "classifier guidance through the SVDD-MC value net. Naturalness: Frechet distance to the test set.",
    _fashion("compress"),
    methods={**_FASHION_METHODS, "dps": {"method": "dps", "target": "value", "value": "task", "scale": 0.1, "scale_mode": "absolute"},
             "smc": {"method": "smc", "alpha": 0.05}, "svdd-mc": {"method": "svdd", "M": 20, "value": "task"},
             "svdd-pm": {"method": "svdd", "M": 20}, "svdd-r": {"method": "svdd-r", "M": 20}},
    num_samples=64, quick={"num_samples": 16, "seeds": [0]}, options=("device", "num_steps")))

register_task(Task(
    "fashion-class", "Fashion-MNIST 32x32, same model; reward: log p(class | image) of a CNN classifier trained here "
    "(class by --class, default 'Ankle boot'): conditional generation from an unconditional model. Held-out check: "
    "a second classifier of another architecture. Naturalness: Frechet distance to the test images of the class.",
    _fashion("class"),
    methods={**_FASHION_METHODS, "dps": {"method": "dps", "scale": 0.03, "scale_mode": "absolute"}, "dps-strong": {"method": "dps", "scale": 0.1, "scale_mode": "absolute"},
             "smc": {"method": "smc", "alpha": 2.0},
             "svdd-mc": {"method": "svdd", "M": 20, "value": "task"}, "svdd-pm": {"method": "svdd", "M": 20},
             "svdd-r": {"method": "svdd-r", "M": 20}},
    num_samples=64, quick={"num_samples": 16, "seeds": [0]}, options=("target", "device", "num_steps")))

register_task(Task(
    "toy-gmm", "2-D Gaussian mixture with its exact noise prediction (DDPM, 100 steps); reward: x1 + x2 (linear, "
    "so the tilted target is again a Gaussian mixture in closed form).", _toy_gmm,
    methods=standard_methods(dps_scale=0.5), num_samples=256, options=("num_steps",)))


def _molecule(reward):
    def build(**kw) -> TaskSpec:
        from .molecule import build_spec
        return build_spec(reward, **kw)
    return build


def molecule_methods(M: int = 10, dps_scale: float = 1.0, smc_alpha: float = 0.02,
                     select_every: int = 1) -> dict[str, dict[str, Any]]:
    """The paper's molecule comparison at M candidates; DPS through the SVDD-MC value net (the paper's choice for
    molecules); ``select_every`` > 1: the reward-calling methods select / weight only at every k-th step."""
    sched = {"select_every": select_every} if select_every > 1 else {}
    return {"pretrained": {"method": "pretrained"}, "best-of-n": {"method": "best-of-n", "M": M},
            "dps": {"method": "dps", "target": "value", "value": "task", "scale": dps_scale},  # relative scale
            "smc": {"method": "smc", "alpha": smc_alpha, **sched}, "svdd-mc": {"method": "svdd", "M": M, "value": "task"},
            "svdd-pm": {"method": "svdd", "M": M, **sched}, "svdd-r": {"method": "svdd-r", "M": M, **sched}}


_MOLECULE = ("SELFIES masked diffusion (transformer, trained here on MOSES, 56 tokens, 32 steps); "
             "every generated molecule is valid by construction. ")
_MOLECULE_OPTIONS = ("num_steps", "device")
register_task(Task(
    "molecule-qed", _MOLECULE + "Reward: QED (RDKit), exact and cheap.", _molecule("qed"),
    methods=molecule_methods(), num_samples=32, quick={"num_samples": 16, "seeds": [0]}, options=_MOLECULE_OPTIONS))
register_task(Task(
    "molecule-sa", _MOLECULE + "Reward: synthetic accessibility as (10 - SA)/9 (RDKit Contrib sascorer), exact.",
    _molecule("sa"), methods=molecule_methods(), num_samples=32,
    quick={"num_samples": 16, "seeds": [0]}, options=_MOLECULE_OPTIONS))
register_task(Task(
    "molecule-docking-parp1", _MOLECULE + "Reward: max(-score, 0) kcal/mol of AutoDock Vina docking against PARP1 "
    "(dockstring's prepared receptor and box; exhaustiveness 1, seed 1) in a pool of worker processes behind a "
    "canonical-SMILES cache; SVDD-PM / SVDD-R / SMC select at every 8th step. Held-out: re-docking at exhaustiveness 2 "
    "with seed 2. Seconds per docking call: use few samples.", _molecule("docking"),
    methods=molecule_methods(smc_alpha=0.5, select_every=8), num_samples=8,
    quick={"num_samples": 4, "seeds": [0]},
    options=_MOLECULE_OPTIONS + ("exhaustiveness", "eval_exhaustiveness", "workers", "timeout", "cache")))
