"""`svdd train prior|oracle|value`: a masked-diffusion prior, a reward oracle and an SVDD-MC value net from a user's
FASTA / CSV files, each written to a folder (weights as safetensors, a JSON config and a training record). A folder is
complete once its ``svdd.json`` exists (written last); input errors are found before anything is written."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from ...io import save_module
from ...io import atomic_write
from ...store import entries
from ...training import load_checkpoint, mdlm_loss, save_checkpoint, warmup_cosine
from .data import Alphabet, read_fasta, read_table, split
from .networks import SeqDenoiser, SeqOracle, SeqValueNet

INFO = "svdd.json"
EPS = 1e-5


def _start(out: Path, kind: str, resume: bool, overwrite: bool) -> None:
    """The output folder: new, empty, or (``overwrite``) a folder of the same kind; ``resume`` keeps a checkpoint."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is an existing file, not a folder")
    if entries(out) and not resume:
        if not overwrite:
            raise ValueError(f"--out {str(out)!r} is not empty: pass --overwrite to replace it (or --resume to "
                             "continue an interrupted training)")
        info = out / INFO
        if info.exists() and json.loads(info.read_text()).get("kind") != kind or \
                not info.exists() and not (out / "checkpoint.safetensors").exists():
            raise ValueError(f"--out {str(out)!r} holds no svdd {kind} folder: --overwrite only replaces one; pick "
                             "another --out")
        from ...store import clear
        clear(out)
    out.mkdir(parents=True, exist_ok=True)


def _finish(out: Path, info: dict[str, Any]) -> None:
    atomic_write(out / INFO, (json.dumps(info, indent=2) + "\n").encode())
    ckpt = out / "checkpoint.safetensors"
    if ckpt.exists():
        ckpt.unlink()


def read_info(folder: str | Path, kind: str) -> dict[str, Any]:
    """The ``svdd.json`` of a finished folder of ``kind``; a missing or unfinished folder is an error naming it."""
    folder = Path(folder)
    f = folder / INFO
    if not f.exists():
        raise FileNotFoundError(f"{folder}: no svdd {kind} folder here ({INFO} missing: not trained yet, or "
                                "training did not finish)")
    info = json.loads(f.read_text())
    if info.get("kind") != kind:
        raise ValueError(f"{folder} is a {info.get('kind')!r} folder, not a {kind!r} folder")
    return info


def _kmer_freq(x: torch.Tensor, vocab: int, k: int) -> torch.Tensor:
    """Frequencies of the k-mers of token rows (windows containing a token >= vocab, e.g. padding, are skipped)."""
    w = x.unfold(1, k, 1).reshape(-1, k)
    w = w[(w < vocab).all(1)]
    idx = (w * (vocab ** torch.arange(k - 1, -1, -1))).sum(1)
    f = torch.bincount(idx, minlength=vocab ** k).double()
    return f / f.sum().clamp_min(1)


def train_prior(fasta: str | Path, alphabet: str, out: str | Path, *, length: int | None = None,
                heldout: float = 0.05, seed: int = 0, minutes: float = 5.0, batch: int = 128, lr: float = 2e-3,
                hidden: int = 64, num_steps: int = 50, eval_every: int = 200, resume: bool = False,
                overwrite: bool = False, progress: bool = True, command: str | None = None) -> dict[str, Any]:
    """Masked diffusion (MDLM loss) on the FASTA's sequences for ``minutes``; checkpoints every ``eval_every`` steps
    (``resume`` continues from it with the remaining budget). Record: validation NELBO on the held-out sequences
    (and the uniform model's), and the 1- to 3-mer frequency correlations and total variation distances of sampled
    sequences to the held-out ones (the train set's own beside them, the ceiling)."""
    from tqdm.auto import tqdm

    from ...models import MaskedDiffusion
    out = Path(out)
    names, seqs = read_fasta(fasta)
    letters = alphabet.upper()
    longest = max(len(s) for s in seqs)
    if length is not None and length < longest:
        raise ValueError(f"--length {length} is shorter than the longest record ({longest} letters)")
    fixed = length is None and all(len(s) == longest for s in seqs)
    alpha = Alphabet(letters, length or longest, padded=not fixed)
    x = alpha.encode(seqs, names, source=str(fasta))
    tr, ho = split(len(seqs), heldout, seed, source=str(fasta))
    _start(out, "prior", resume, overwrite)
    torch.manual_seed(seed)
    net = SeqDenoiser(alpha.vocab_size, alpha.length, hidden=hidden)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.01)
    g = torch.Generator().manual_seed(seed)
    ckpt = out / "checkpoint.safetensors"
    step, history, elapsed0 = 0, [], 0.0
    if resume and ckpt.exists():
        meta = load_checkpoint(ckpt, {"net": net}, opt)
        step, history, elapsed0 = meta["step"], meta["history"], meta["elapsed"]
        g.manual_seed(seed + step)
    train, val = x[tr], x[ho]
    mask = alpha.vocab_size

    def val_nats() -> float:
        vg = torch.Generator().manual_seed(123)
        with torch.no_grad():
            return float(torch.stack([mdlm_loss(net, val[a:a + 512], vg, mask_index=mask, eps=EPS).sum()
                                      for a in range(0, val.shape[0], 512) for _ in range(4)]).sum()) / 4 / val.shape[0]

    budget, t0 = minutes * 60, time.time() - elapsed0
    bar = tqdm(total=round(budget), initial=round(elapsed0), desc="prior (s)", disable=not progress)
    net.train()
    while time.time() - t0 < budget:
        for pg in opt.param_groups:
            pg["lr"] = warmup_cosine(lr, step, (time.time() - t0) / budget, warmup=200)
        x0 = train[torch.randint(0, train.shape[0], (batch,), generator=g)]
        loss = mdlm_loss(net, x0, g, mask_index=mask, eps=EPS).mean() / alpha.length
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1
        if step % eval_every == 0:
            net.eval()
            history.append({"step": step, "minutes": round((time.time() - t0) / 60, 2),
                            "val_nelbo_nats_per_seq": round(val_nats(), 3)})
            net.train()
            save_checkpoint(ckpt, {"net": net}, opt, {"step": step, "history": history, "elapsed": time.time() - t0})
            bar.set_postfix(step=step, val_nelbo=history[-1]["val_nelbo_nats_per_seq"])
        bar.n = min(round(time.time() - t0), bar.total)
        bar.refresh()
    bar.close()
    net.eval().requires_grad_(False)
    model = MaskedDiffusion(net, seq_len=alpha.length, vocab_size=alpha.vocab_size, num_steps=num_steps,
                            time_independent=True)
    from ...api import sample
    samples = sample(model, lambda s: torch.zeros(s.shape[0]), "pretrained", num_samples=min(1024, max(len(ho), 256)),
                     seed=seed, progress=False).samples
    kmers = {}
    for k in (1, 2, 3):  # correlation (informative when k-mer frequencies vary) and total variation distance
        fv = _kmer_freq(val, len(letters), k)
        for name, rows in (("samples", samples), ("train", train)):
            f = _kmer_freq(rows, len(letters), k)
            kmers[f"{k}mer_corr_{name}_vs_heldout"] = round(float(torch.corrcoef(torch.stack([f, fv]))[0, 1]), 4)
            kmers[f"{k}mer_tv_{name}_vs_heldout"] = round(float(0.5 * (f - fv).abs().sum()), 4)
    record = {"command": command, "data": f"{fasta}: {len(seqs)} sequences ({len(ho)} held out, seed {seed})",
              "steps": step, "batch": batch, "lr": lr, "wall_minutes": round((time.time() - t0) / 60, 2),
              "val_nelbo_nats_per_seq": round(val_nats(), 3), "val_nelbo_uniform_nats_per_seq":
              round(alpha.length * math.log(alpha.vocab_size), 3), "sample_kmers": kmers, "history": history}
    if alpha.padded:
        def lengths(t):
            return (t != alpha.pad).sum(1).double()
        record["length_mean_samples_vs_heldout"] = [round(float(lengths(samples).mean()), 2),
                                                    round(float(lengths(val).mean()), 2)]
    save_module(net, out / "prior", record)
    _finish(out, {"kind": "prior", "alphabet": alpha.to_dict(), "num_steps": num_steps, "format": 1})
    return record


def _ranks(v: torch.Tensor) -> torch.Tensor:
    return torch.argsort(torch.argsort(v)).double()


def _auroc(score: torch.Tensor, label: torch.Tensor) -> float:
    pos, neg = score[label == 1], score[label == 0]
    if not len(pos) or not len(neg):
        return float("nan")
    return float(((pos[:, None] > neg[None]).double() + 0.5 * (pos[:, None] == neg[None]).double()).mean())


def train_oracle(csv_path: str | Path, sequence_column: str, target: str, out: str | Path, *, alphabet: str,
                 kind: str = "regression", split_column: str | None = None, heldout: float = 0.1, seed: int = 0,
                 epochs: int = 30, batch: int = 128, lr: float = 1e-3, hidden: int = 64, overwrite: bool = False,
                 progress: bool = True, command: str | None = None) -> dict[str, Any]:
    """A CNN from sequences to the ``target`` column: regression (MSE on the standardised target; the reward is in
    the target's units) or classification of two labels (the reward is the logit of the second label, sorted).
    Held out: the rows a ``split_column`` marks (test / heldout / valid ...), else a random ``heldout`` fraction.
    Record: R², Pearson and Spearman (regression) or AUROC and accuracy (classification) on the held-out rows."""
    from tqdm.auto import trange
    out = Path(out)
    table = read_table(csv_path, sequence_column, target, kind=kind, split_column=split_column)
    letters = alphabet.upper()
    longest = max(len(s) for s in table.seqs)
    alpha = Alphabet(letters, longest, padded=any(len(s) != longest for s in table.seqs))
    x = alpha.encode(table.seqs, table.names, source=str(csv_path))
    n = len(table.seqs)
    if table.heldout is not None:
        ho, tr = table.heldout.nonzero().squeeze(1), (~table.heldout).nonzero().squeeze(1)
        if len(tr) < 8 or len(ho) < 2:
            raise ValueError(f"{csv_path}: {len(tr)} training and {len(ho)} held-out rows are too few: need at least "
                             "8 and 2")
    else:
        tr, ho = split(n, heldout, seed, source=str(csv_path))
    y = table.targets
    mean, std = (float(y[tr].mean()), float(y[tr].std().clamp_min(1e-8))) if kind == "regression" else (0.0, 1.0)
    z = ((y - mean) / std).float()
    _start(out, "oracle", False, overwrite)
    torch.manual_seed(seed)
    net = SeqOracle(len(letters) + 1, hidden=hidden)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    loss_fn = torch.nn.MSELoss() if kind == "regression" else torch.nn.BCEWithLogitsLoss()
    t0, losses = time.time(), []
    for _ in trange(epochs, desc="oracle", disable=not progress):
        net.train()
        order = tr[torch.randperm(len(tr), generator=g)]
        total = 0.0
        for a in range(0, len(order), batch):
            idx = order[a:a + batch]
            loss = loss_fn(net(x[idx]), z[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        losses.append(round(total / len(order), 5))
    net.eval().requires_grad_(False)
    with torch.no_grad():
        pred = torch.cat([net(x[ho][a:a + 1024]) for a in range(0, len(ho), 1024)]).double()
    if kind == "regression":
        yh, p = y[ho], pred * std + mean
        metrics = {"r2": 1 - float(((yh - p) ** 2).sum() / ((yh - yh.mean()) ** 2).sum()),
                   "pearson": float(torch.corrcoef(torch.stack([p, yh]))[0, 1]),
                   "spearman": float(torch.corrcoef(torch.stack([_ranks(p), _ranks(yh)]))[0, 1])}
    else:
        metrics = {"auroc": _auroc(pred, y[ho]), "accuracy": float(((pred > 0).double() == y[ho]).double().mean())}
    metrics = {k: round(v, 4) for k, v in metrics.items()}
    split_text = f"rows marked held out in {split_column!r}" if split_column else f"a random {heldout} (seed {seed})"
    record = {"command": command, "data": f"{csv_path}: {n} rows, {len(ho)} held out ({split_text})",
              "task": kind, "target": target, "epochs": epochs, "batch": batch, "lr": lr,
              "wall_minutes": round((time.time() - t0) / 60, 2), "heldout": metrics, "train_loss": losses}
    save_module(net, out / "oracle", record)
    _finish(out, {"kind": "oracle", "alphabet": letters, "length": alpha.length, "task": kind, "target": target,
                  "mean": mean, "std": std, "classes": table.classes, "heldout": metrics, "format": 1})
    return record


def train_value(prior: str | Path, oracle: str | Path, out: str | Path, *, rollouts: int = 1024, epochs: int = 20,
                seed: int = 0, num_steps: int | None = None, hidden: int = 64, overwrite: bool = False,
                progress: bool = True, command: str | None = None) -> dict[str, Any]:
    """SVDD-MC's value net (the paper's Algorithm 3): ``rollouts`` runs of the prior scored by the oracle, the final
    reward regressed onto every noisy state along the way; each epoch also sees the rollouts' final samples masked
    afresh by the forward process (more distinct masked states than the rollouts alone). Record: the validation
    correlation with the final reward at five times (held-out rollouts)."""
    from ...training import collect_rollouts, train_value_net
    from . import FolderTask
    out = Path(out)
    spec = FolderTask(prior, oracle)(num_steps=num_steps)
    _start(out, "value", False, overwrite)
    t0 = time.time()
    ro = collect_rollouts(spec.model, spec.reward, rollouts, seed=seed, progress=progress)
    vocab = spec.model.vocab_size
    torch.manual_seed(seed)
    net = SeqValueNet(vocab, hidden=hidden)
    rec = train_value_net(net, ro, epochs=epochs, seed=seed, progress=progress,
                          extra_clean=(ro.states[-1], ro.rewards), mask_token=vocab)
    record = {"command": command, "prior": str(prior), "oracle": str(oracle), "rollouts": rollouts,
              "num_steps": spec.model.num_steps, "epochs": epochs, "wall_minutes": round((time.time() - t0) / 60, 2),
              "val_corr_by_time": {f"{t:.3f}": round(c, 4) for t, c in rec.val_corr.items()},
              "train_loss": [round(v, 5) for v in rec.losses]}
    save_module(net.eval(), out / "value", record)
    _finish(out, {"kind": "value", "prior": str(prior), "oracle": str(oracle), "format": 1})
    return record
