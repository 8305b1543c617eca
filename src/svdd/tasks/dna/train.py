"""Retrain the shipped networks of the DNA task from scratch (weights land in svdd/tasks/dna/weights/).

    python -m svdd.tasks.dna.train denoiser --minutes 40     # masked diffusion on the train split
    python -m svdd.tasks.dna.train oracles                   # guidance + evaluation oracles
    python -m svdd.tasks.dna.train value --rollouts 2048     # SVDD-MC value net (needs the two above)

Each writes ``NAME.safetensors`` and ``NAME.json`` (config + record: command, data, wall time, metrics).
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ...io import save_module
from ...training import mdlm_loss as _mdlm_loss, warmup_cosine
from .data import CELL_TYPES, load_dhs
from .metrics import auroc, gc_content, kmer_freq
from .networks import ConvOracle, DilatedDenoiser, DilatedResOracle, ValueNet, hepg2_logit

WEIGHTS = Path(__file__).parent / "weights"
EPS = 1e-5


def mdlm_loss(net, x0, generator, antithetic=True):
    return _mdlm_loss(net, x0, generator, mask_index=4, antithetic=antithetic, eps=EPS)


def train_denoiser(args) -> None:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    data = load_dhs()
    train, val = data.tokens["train"], data.tokens["validation"][:1024]
    net = DilatedDenoiser(hidden=args.hidden, stacks=args.stacks)
    ema = copy.deepcopy(net)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.01)
    g = torch.Generator().manual_seed(args.seed)
    t0, step, history, best = time.time(), 0, [], math.inf
    budget = args.minutes * 60

    def val_bpb(model) -> float:
        vg = torch.Generator().manual_seed(123)
        with torch.no_grad():
            tot = sum(float(mdlm_loss(model, val[a:a + 256], vg).sum()) for a in range(0, val.shape[0], 256) for _ in range(4))
        return tot / 4 / val.numel() / math.log(2)

    while time.time() - t0 < budget:
        frac = (time.time() - t0) / budget
        lr = warmup_cosine(args.lr, step, frac, floor=0.1)
        for pg in opt.param_groups:
            pg["lr"] = lr
        idx = torch.randint(0, train.shape[0], (args.batch,), generator=g)
        x0 = train[idx]
        flip = torch.rand(args.batch, generator=g) < 0.5  # reverse-complement augmentation
        x0 = torch.where(flip[:, None], (3 - x0).flip(1), x0)
        loss = mdlm_loss(net, x0, g).mean() / x0.shape[1]
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            d = min(args.ema, (1 + step) / (10 + step))
            for pe, p in zip(ema.parameters(), net.parameters()):
                pe.mul_(d).add_(p.detach(), alpha=1 - d)
        step += 1
        if step % args.eval_every == 0:
            v = val_bpb(ema)
            history.append({"step": step, "minutes": round((time.time() - t0) / 60, 2), "train_loss_nats_per_base":
                            round(loss.item(), 4), "val_bits_per_base": round(v, 4)})
            print(history[-1], flush=True)
            if v < best:
                best = v
                save_module(ema, WEIGHTS / "denoiser", {"partial": True, "history": history})
    v = val_bpb(ema)
    if v < best:
        best = v
        save_module(ema, WEIGHTS / "denoiser", {})
    from ...io import load_module
    final = load_module(DilatedDenoiser, WEIGHTS / "denoiser")
    record = {"command": "python -m svdd.tasks.dna.train denoiser " + " ".join(sys.argv[2:]),
              "data": "train split (all chromosomes but chr1, chr2; all 4 cell types), reverse-complement augmentation",
              "steps": step, "batch": args.batch, "wall_minutes": round((time.time() - t0) / 60, 1),
              "threads": args.threads, "val_bits_per_base_chr1": round(best, 4), "history": history}
    record.update(sample_quality(final, data))
    save_module(final, WEIGHTS / "denoiser", record)
    print({k: v for k, v in record.items() if k != "history"})


def sample_quality(denoiser, data, n: int = 512, steps: int = 128) -> dict:
    """Samples of the pre-trained model against held-out chr2 sequences: k-mer correlations and GC content."""
    import svdd
    model = svdd.MaskedDiffusion(denoiser, 200, 4, num_steps=steps)
    x = svdd.sample(model, lambda z: torch.zeros(z.shape[0]), "pretrained", num_samples=n, seed=0, max_batch=256).samples
    test = data.tokens["test"]
    out = {"quality_samples": n, "quality_steps": steps}
    for k in (3, 6):
        out[f"{k}mer_pearson_vs_chr2"] = round(float(torch.corrcoef(torch.stack([kmer_freq(x, k), kmer_freq(test, k)]))[0, 1]), 4)
    gs, gt = gc_content(x), gc_content(test)
    out["gc_mean_samples"], out["gc_std_samples"] = round(float(gs.mean()), 4), round(float(gs.std()), 4)
    out["gc_mean_chr2"], out["gc_std_chr2"] = round(float(gt.mean()), 4), round(float(gt.std()), 4)
    grid = torch.linspace(0, 1, 201, dtype=torch.float64)
    cdf = lambda a: (a.unsqueeze(1) <= grid).double().mean(0)  # noqa: E731
    out["gc_ks_statistic"] = round(float((cdf(gs) - cdf(gt)).abs().max()), 4)
    return out


def train_oracle(kind: str, data, seed: int, epochs: int, threads: int) -> dict:
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    chroms = data.chroms["train"]
    # disjoint training chromosomes: guidance = odd autosomes, evaluation = even autosomes + X/Y/other
    def odd(c):
        s = c[3:]
        return s.isdigit() and int(s) % 2 == 1
    keep = torch.tensor([odd(c) == (kind == "guidance") for c in chroms])
    x, y = data.tokens["train"][keep], data.labels["train"][keep]
    net = ConvOracle() if kind == "guidance" else DilatedResOracle()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-2)
    g = torch.Generator().manual_seed(seed)
    xv, yv = data.tokens["validation"], data.labels["validation"]
    best, best_state, t0, hist = -1.0, None, time.time(), []
    for ep in range(epochs):
        net.train()
        perm = torch.randperm(x.shape[0], generator=g)
        for a in range(0, x.shape[0], 128):
            b = perm[a:a + 128]
            xb = x[b]
            flip = torch.rand(len(b), generator=g) < 0.5
            xb = torch.where(flip[:, None], (3 - xb).flip(1), xb)
            loss = F.cross_entropy(net(xb), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            sv = torch.cat([hepg2_logit(net(xv[a:a + 512])) for a in range(0, xv.shape[0], 512)])
        au = auroc(sv, yv == 0)
        hist.append({"epoch": ep + 1, "val_auroc_chr1": round(au, 4), "minutes": round((time.time() - t0) / 60, 2)})
        print(kind, hist[-1], flush=True)
        if au > best:
            best, best_state = au, copy.deepcopy(net.state_dict())
    net.load_state_dict(best_state)
    net.eval()
    xt, yt = data.tokens["test"], data.labels["test"]
    with torch.no_grad():
        st = torch.cat([net(xt[a:a + 512]) for a in range(0, xt.shape[0], 512)])
    record = {"command": f"python -m svdd.tasks.dna.train oracles --epochs {epochs}", "kind": kind, "seed": seed,
              "classes": list(CELL_TYPES), "reward": "log P(HepG2) - log P(not HepG2)",
              "train_chromosomes": "odd autosomes" if kind == "guidance" else "even autosomes, X, Y",
              "train_sequences": int(keep.sum()), "val_auroc_chr1": round(best, 4),
              "test_auroc_chr2": round(auroc(hepg2_logit(st), yt == 0), 4),
              "test_accuracy_4class_chr2": round(float((st.argmax(1) == yt).double().mean()), 4),
              "wall_minutes": round((time.time() - t0) / 60, 2), "history": hist}
    save_module(net, WEIGHTS / f"oracle_{kind}", record)
    print({k: v for k, v in record.items() if k != "history"}, flush=True)
    return record


def train_value(args) -> None:
    """SVDD-MC value net: Monte-Carlo regression of the guidance reward on rollouts of the pre-trained model (paper
    Algorithm 3), augmented with forward-masked real training sequences (2,048 rollouts alone give too few distinct
    clean sequences for a 200-bp reward). Validation: held-out rollouts, at several times."""
    from ...training import Rollouts, collect_rollouts, train_value_net
    from . import build_spec
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    spec = build_spec(num_steps=args.steps)
    t0 = time.time()
    cache = Path(args.rollout_cache) if args.rollout_cache else None
    if cache is not None and cache.exists():
        roll = Rollouts.load(cache)
    else:
        roll = collect_rollouts(spec.model, spec.reward, args.rollouts, seed=args.seed, max_batch=512,
                                keep_every=args.keep_every, progress=True)
        if cache is not None:
            roll.save(cache)
    t_roll = time.time() - t0
    extra = None
    if args.real_augment:
        real = load_dhs().tokens["train"]
        with torch.no_grad():
            r_real = torch.cat([spec.reward(real[a:a + 1024]) for a in range(0, real.shape[0], 1024)])
        extra = (real, r_real)
    net = ValueNet()
    rec = train_value_net(net, roll, epochs=args.epochs, batch_size=256, lr=1e-3, seed=args.seed, progress=True,
                          extra_clean=extra, mask_token=4, eps=EPS)
    record = {"command": "python -m svdd.tasks.dna.train value " + " ".join(sys.argv[2:]), "rollouts": args.rollouts,
              "num_steps": args.steps, "keep_every": args.keep_every, "epochs": args.epochs,
              "reward": "guidance oracle", "augmentation": "forward-masked real train sequences" if extra else None,
              "rollout_minutes": round(t_roll / 60, 2), "wall_minutes": round((time.time() - t0) / 60, 2),
              "train_loss_per_epoch": [round(v, 4) for v in rec.losses],
              "val_pearson_by_time_heldout_rollouts": {f"{k:.3f}": round(v, 4) for k, v in sorted(rec.val_corr.items())}}
    save_module(net, WEIGHTS / "value_net", record)
    print(record, flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    d = sub.add_parser("denoiser")
    d.add_argument("--minutes", type=float, default=40)
    d.add_argument("--hidden", type=int, default=64)
    d.add_argument("--stacks", type=int, default=2)
    d.add_argument("--batch", type=int, default=128)
    d.add_argument("--lr", type=float, default=2e-3)
    d.add_argument("--ema", type=float, default=0.999)
    d.add_argument("--eval-every", type=int, default=500)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--threads", type=int, default=2)
    o = sub.add_parser("oracles")
    o.add_argument("--epochs", type=int, default=8)
    o.add_argument("--threads", type=int, default=1)
    v = sub.add_parser("value")
    v.add_argument("--rollouts", type=int, default=2048)
    v.add_argument("--steps", type=int, default=128)
    v.add_argument("--epochs", type=int, default=6)
    v.add_argument("--keep-every", type=int, default=4, help="train on every k-th level of the rollouts")
    v.add_argument("--real-augment", type=int, default=1, help="1: add forward-masked real training sequences")
    v.add_argument("--rollout-cache", default="", help="file to keep / reuse the rollouts")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    if args.what == "denoiser":
        train_denoiser(args)
    elif args.what == "oracles":
        data = load_dhs()
        train_oracle("guidance", data, seed=1, epochs=args.epochs, threads=args.threads)
        train_oracle("evaluation", data, seed=2, epochs=args.epochs, threads=args.threads)
    else:
        train_value(args)


if __name__ == "__main__":
    main()
