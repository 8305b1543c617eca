"""Training a value network for SVDD-MC (paper Algorithm 3): roll out the pre-trained model, then regress the final
reward onto every noisy state along the way, with time as input: minimise Σ_i Σ_s (r(x0^s) − f(x_i^s, t_i))²."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .engine import Engine
from .rewards import as_reward


def save_checkpoint(path, modules: dict[str, torch.nn.Module], opt: torch.optim.Optimizer, meta: dict) -> None:
    """A training checkpoint as one safetensors file (never a pickle): each module's weights under its name, the
    optimizer's state tensors, and ``meta`` (JSON) in the header; written atomically."""
    import json
    import os
    from pathlib import Path

    from safetensors.torch import save_file
    path = Path(path)
    state = {f"{name}.{k}": v.detach().cpu().contiguous() for name, m in modules.items()
             for k, v in m.state_dict().items()}
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            state[f"opt.{i}.{k}"] = (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu().contiguous()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(state, str(tmp), metadata={"meta": json.dumps(meta)})
    os.replace(tmp, path)


def load_checkpoint(path, modules: dict[str, torch.nn.Module], opt: torch.optim.Optimizer) -> dict:
    """Restore what `save_checkpoint` wrote into ``modules`` and ``opt``; returns its ``meta``."""
    import json

    from safetensors import safe_open

    from .io import load_tensors
    state = load_tensors(path)
    for name, m in modules.items():
        m.load_state_dict({k[len(name) + 1:]: v for k, v in state.items() if k.startswith(name + ".")})
    osd = opt.state_dict()
    for key, v in state.items():
        if key.startswith("opt."):
            _, i, name = key.split(".", 2)
            osd["state"].setdefault(int(i), {})[name] = v
    opt.load_state_dict(osd)
    with safe_open(str(path), "pt") as f:
        return json.loads(f.metadata()["meta"])


def warmup_cosine(base_lr: float, step: int, frac: float, *, warmup: int = 500, floor: float = 0.1) -> float:
    """Learning rate of time-budgeted training: linear warm-up over ``warmup`` steps, then cosine decay in the
    elapsed fraction ``frac`` of the budget down to ``floor`` * base_lr."""
    return base_lr * min(1.0, (step + 1) / warmup) * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * frac)))


def mdlm_loss(net, x0: torch.Tensor, generator: torch.Generator, *, mask_index: int, antithetic: bool = True,
              eps: float = 1e-5) -> torch.Tensor:
    """Per-sequence MDLM negative ELBO (nats) of ``net(x_t, t) -> logits`` for clean tokens ``x0``, log-linear
    schedule: E_t[(1/t) Σ_masked −log p(x0_l | x_t)], with antithetic (stratified) times over the batch. The noise
    is drawn on ``x0``'s device from ``generator`` (a generator on that device): no host round trip on a GPU."""
    n, dev = x0.shape[0], x0.device
    u = torch.rand(1 if antithetic else n, generator=generator, device=dev)
    t = ((u + torch.arange(n, device=dev) / n) % 1) if antithetic else u
    t = eps + (1 - eps) * t
    mask = torch.rand(x0.shape, generator=generator, device=dev) < ((1 - eps) * t)[:, None]
    xt = torch.where(mask, torch.full_like(x0, mask_index), x0)
    logp = torch.log_softmax(net(xt, t).float(), -1)
    nll = -logp.gather(-1, x0.unsqueeze(-1)).squeeze(-1)
    return (nll * mask).sum(1) / t


@dataclass
class Rollouts:
    states: torch.Tensor  # (levels, n, ...) states at the kept levels (1 .. T)
    times: torch.Tensor  # (T,) continuous time of each level
    rewards: torch.Tensor  # (n,) final rewards (NaN rows dropped by the trainer)

    def save(self, path) -> None:
        """Write as safetensors (never a pickle)."""
        from safetensors.torch import save_file
        save_file({"states": self.states.contiguous(), "times": self.times.contiguous(),
                   "rewards": self.rewards.contiguous()}, str(path))

    @classmethod
    def load(cls, path) -> "Rollouts":
        from .io import load_tensors
        d = load_tensors(path)
        return cls(d["states"], d["times"], d["rewards"])


def collect_rollouts(model, reward, num_rollouts: int, *, seed: int = 0, max_batch: int | None = None,
                     keep_every: int = 1, progress: bool = False) -> Rollouts:
    """Run the pre-trained model and keep the intermediate states (every ``keep_every``-th level, always the last)
    and the final rewards."""
    engine = Engine(model, as_reward(reward), max_batch=max_batch, seed=seed, progress=progress)
    gen = engine.gen["model"]
    x = model.prior(num_rollouts, gen)
    states, times = [], []
    for i in engine.trange(model.num_steps, "rollouts"):
        x = model.step(x, engine.predict(x, i), i, gen)
        if (i + 1) % keep_every == 0 or i + 1 == model.num_steps:
            states.append(x)
            times.append(model.time(i + 1))
    return Rollouts(torch.stack(states), torch.tensor(times), engine.rewards(x).float())


@dataclass
class TrainingRecord:
    losses: list[float] = field(default_factory=list)
    val_corr: dict[float, float] = field(default_factory=dict)  # time -> Pearson correlation with the final reward


def train_value_net(net: torch.nn.Module, rollouts: Rollouts, *, epochs: int = 20, batch_size: int = 256,
                    lr: float = 1e-3, val_fraction: float = 0.1, seed: int = 0, progress: bool = False,
                    extra_clean: tuple[torch.Tensor, torch.Tensor] | None = None, mask_token: int | None = None,
                    eps: float = 1e-5) -> TrainingRecord:
    """Regress final rewards onto the noisy states of the rollouts; ``net(x, t) -> (n,)``. Returns losses and the
    validation correlation per time (on rollouts held out from training).

    ``extra_clean = (x0, r)`` (masked models): each epoch also trains on x0 masked by the forward process at a fresh
    uniform time, with target r -- more distinct clean samples than the rollouts alone."""
    from tqdm.auto import trange
    ok = ~torch.isnan(rollouts.rewards)
    states, r = rollouts.states[:, ok], rollouts.rewards[ok]
    T, n = states.shape[:2]
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    n_val = max(1, int(val_fraction * n)) if n > 1 else 0
    val, tr = perm[:n_val], perm[n_val:]
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    rec = TrainingRecord()
    pairs = torch.stack(torch.meshgrid(torch.arange(T), tr, indexing="ij"), -1).reshape(-1, 2)
    for _ in trange(epochs, desc="value net", disable=not progress):
        order = pairs[torch.randperm(pairs.shape[0], generator=g)]
        total = 0.0
        xs, ts, ys = states[order[:, 0], order[:, 1]], rollouts.times[order[:, 0]].float(), r[order[:, 1]]
        if extra_clean is not None:
            x0, r0 = extra_clean
            t = eps + (1 - eps) * torch.rand(x0.shape[0], generator=g)
            masked = torch.rand(x0.shape, generator=g) < ((1 - eps) * t)[:, None]
            xm = torch.where(masked, torch.full_like(x0, mask_token), x0)
            mix = torch.randperm(xs.shape[0] + x0.shape[0], generator=g)
            xs, ts, ys = torch.cat([xs, xm])[mix], torch.cat([ts, t.float()])[mix], torch.cat([ys, r0.float()])[mix]
        for a in range(0, xs.shape[0], batch_size):
            pred = net(xs[a:a + batch_size], ts[a:a + batch_size]).reshape(-1)
            loss = ((pred - ys[a:a + batch_size]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * pred.shape[0]
        rec.losses.append(total / xs.shape[0])
    with torch.no_grad():
        for lvl in sorted({0, T // 4, T // 2, 3 * T // 4, T - 1}):
            if n_val < 2:
                break
            p = net(states[lvl, val], rollouts.times[lvl].float().expand(n_val)).reshape(-1)
            rec.val_corr[float(rollouts.times[lvl])] = float(torch.corrcoef(torch.stack([p, r[val]]))[0, 1])
    return rec
