"""Retrain the shipped networks of the molecule task (weights land in svdd/tasks/molecule/weights/).

    python -m svdd.tasks.molecule.train denoiser --minutes 40        # masked diffusion on MOSES train (SELFIES)
    python -m svdd.tasks.molecule.train value --reward qed           # SVDD-MC value nets (need the denoiser)
    python -m svdd.tasks.molecule.train value --reward sa
    python -m svdd.tasks.molecule.train value --reward docking --rollouts 768
    python -m svdd.tasks.molecule.train export-tokens --out .carry/moses     # MOSES token rows as .npz (~15 MB)
    python -m svdd.tasks.molecule.train denoiser --tokens .carry/moses --device cuda --amp --batch 1024 --out DIR
                                                                     # numpy + torch only: no RDKit/SELFIES/molsets

Each writes ``NAME.safetensors`` and ``NAME.json`` (config + record: command, data, wall time, metrics). The denoiser
checkpoints (weights, EMA and optimizer state, as safetensors) every ``--eval-every`` steps; ``--resume`` continues
from the checkpoint with the remaining time budget.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from pathlib import Path

import torch

from ...io import save_module
from ...training import load_checkpoint, mdlm_loss, save_checkpoint, warmup_cosine
from .data import SEQ_LEN, VOCAB, cache_dir, moses_tokens
from .networks import TransformerDenoiser

WEIGHTS = Path(__file__).parent / "weights"
EPS = 1e-5
MASK = len(VOCAB)


def train_denoiser(args) -> None:
    """Masked diffusion on MOSES train (2048 molecules held out for the validation NELBO). ``--tokens DIR`` reads the
    rows from `export_tokens`'s files (numpy only: no RDKit, SELFIES or molsets); ``--device cuda`` keeps the data,
    model, EMA and noise on the GPU and syncs only at eval points; ``--out DIR`` writes the weights, record and
    checkpoint there instead of the package's weights folder and ``$SVDD_CACHE``."""
    dev = torch.device(args.device)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    if args.tokens:
        from .data import load_tokens, tokens_file
        data = load_tokens(args.tokens, "train")
        source = f"MOSES train tokens from {tokens_file(args.tokens, 'train').name} (export-tokens of molsets 0.3.1)"
    else:
        data = moses_tokens("train")
        source = "MOSES train (molsets 0.3.1)"
    perm = torch.randperm(data.shape[0], generator=torch.Generator().manual_seed(args.seed))
    data = data.to(dev, torch.uint8)
    val, train = data[perm[:2048].to(dev)].long(), data[perm[2048:].to(dev)]
    del data
    g = torch.Generator(dev).manual_seed(args.seed)
    net = TransformerDenoiser(vocab=len(VOCAB), seq_len=SEQ_LEN, dim=args.dim, layers=args.layers, heads=args.heads,
                              ff=4 * args.dim).to(dev)
    ema = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.01, fused=dev.type == "cuda" or None)
    fwd = torch.compile(net) if args.compile else net
    amp = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=args.amp)
    out = Path(args.out) if args.out else None
    ckpt = (out or cache_dir()) / "molecule-denoiser-checkpoint.safetensors"
    if out:
        out.mkdir(parents=True, exist_ok=True)
    step, history, best, elapsed0 = 0, [], math.inf, 0.0
    if args.resume and ckpt.exists():
        meta = load_checkpoint(ckpt, {"net": net, "ema": ema}, opt)
        step, history, best, elapsed0 = meta["step"], meta["history"], meta["best"], meta["elapsed"]
        g.manual_seed(args.seed + step)
        print(f"resumed at step {step} ({elapsed0 / 60:.1f} min)", flush=True)
    t0 = time.time() - elapsed0
    budget = args.minutes * 60
    pe, pn = list(ema.parameters()), list(net.parameters())

    def val_nats(model) -> float:
        vg = torch.Generator(dev).manual_seed(123)
        with torch.no_grad(), amp:
            tot = torch.stack([mdlm_loss(model, val[a:a + 512], vg, mask_index=MASK, eps=EPS).sum()
                               for a in range(0, val.shape[0], 512) for _ in range(2)]).sum()
        return float(tot) / 2 / val.shape[0]

    while time.time() - t0 < budget:
        frac = (time.time() - t0) / budget
        for pg in opt.param_groups:
            pg["lr"] = warmup_cosine(args.lr, step, frac, floor=0.1)
        x0 = train[torch.randint(0, train.shape[0], (args.batch,), generator=g, device=dev)].long()
        with amp:
            loss = mdlm_loss(fwd, x0, g, mask_index=MASK, eps=EPS).mean() / x0.shape[1]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(pn, 1.0)
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(pe, pn, 1 - min(args.ema, (1 + step) / (10 + step)))
        step += 1
        if step % args.eval_every == 0:
            v = val_nats(ema)
            history.append({"step": step, "minutes": round((time.time() - t0) / 60, 2),
                            "train_loss_nats_per_token": round(loss.item(), 4), "val_nelbo_nats_per_molecule": round(v, 3)})
            print(history[-1], flush=True)
            best = min(best, v)
            save_checkpoint(ckpt, {"net": net, "ema": ema}, opt, {"step": step, "history": history, "best": best,
                                                   "elapsed": time.time() - t0})
    v = val_nats(ema)
    record = {"command": "python -m svdd.tasks.molecule.train denoiser " + " ".join(args.argv[1:]),
              "data": f"{source}, {val.shape[0] + train.shape[0]} molecules that fit {len(VOCAB)} SELFIES tokens "
                      f"and length {SEQ_LEN}; 2048 held out for validation",
              "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu", "amp_bf16": args.amp,
              "compile": args.compile, "steps": step, "batch": args.batch, "lr": args.lr, "ema": args.ema,
              "wall_minutes": round((time.time() - t0) / 60, 1), "threads": args.threads,
              "val_nelbo_nats_per_molecule": round(v, 3), "history": history}
    save_module(ema, (out or WEIGHTS) / "denoiser", record)
    print({k: v for k, v in record.items() if k != "history"}, flush=True)


def export(args) -> None:
    """MOSES token rows as ``.npz`` files for `train_denoiser`'s ``--tokens`` (needs MOSES, RDKit and SELFIES once,
    or the ``.npy`` caches under ``$SVDD_CACHE``)."""
    from .data import export_tokens
    files = export_tokens(args.out)
    for name, (n, size) in files.items():
        print(f"{Path(args.out) / name}: {n} molecules, {size / 1e6:.1f} MB", flush=True)
    print(f"total {sum(s for _, s in files.values()) / 1e6:.1f} MB", flush=True)


def train_value(args) -> None:
    """SVDD-MC value net for one reward: Monte-Carlo regression of the reward of pre-trained rollouts on their noisy
    states (paper Algorithm 3), plus forward-masked real MOSES molecules with their rewards for the cheap rewards
    (``--real``). Validation: Pearson correlation with the final reward on held-out rollouts, at several times."""
    from ...training import Rollouts, collect_rollouts, train_value_net
    from . import build_spec
    from .networks import ValueNet
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    kw = {"cache": args.docking_cache or None, "workers": args.workers} if args.reward == "docking" else {}
    spec = build_spec(args.reward, num_steps=args.steps, **kw)
    t0 = time.time()
    from ...io import weights_hash
    den = weights_hash(spec.model.network)[:12]  # rollouts of another denoiser are never reused
    cache = cache_dir() / (f"molecule-rollouts-{args.reward}-{args.rollouts}-T{args.steps}-k{args.keep_every}-"
                           f"s{args.seed}-{den}.safetensors")
    if cache.exists():
        roll = Rollouts.load(cache)
    else:
        roll = collect_rollouts(spec.model, spec.reward, args.rollouts, seed=args.seed, max_batch=512,
                                keep_every=args.keep_every, progress=True)
        roll.save(cache)
    t_roll = time.time() - t0
    extra = None
    if args.real > 0:
        rows = moses_tokens("train")
        real = rows[torch.randperm(rows.shape[0], generator=torch.Generator().manual_seed(args.seed))[:args.real]]
        with torch.no_grad():
            r_real = torch.cat([spec.reward(real[a:a + 1024]).float() for a in range(0, real.shape[0], 1024)])
        ok = ~torch.isnan(r_real)
        extra = (real[ok], r_real[ok])
    net = ValueNet(vocab=len(VOCAB))
    rec = train_value_net(net, roll, epochs=args.epochs, batch_size=256, lr=args.lr, seed=args.seed, progress=True,
                          extra_clean=extra, mask_token=MASK, eps=EPS)
    r = roll.rewards[~torch.isnan(roll.rewards)]
    record = {"command": "python -m svdd.tasks.molecule.train value " + " ".join(sys.argv[2:]),
              "reward": spec.reward.name, "rollouts": args.rollouts, "num_steps": args.steps,
              "keep_every": args.keep_every, "epochs": args.epochs, "lr": args.lr,
              "failed_rollout_rewards": int(torch.isnan(roll.rewards).sum()),
              "rollout_reward_mean": round(float(r.mean()), 4), "rollout_reward_std": round(float(r.std()), 4),
              "augmentation": f"{extra[0].shape[0]} forward-masked MOSES train molecules" if extra else None,
              "rollout_minutes": round(t_roll / 60, 2), "wall_minutes": round((time.time() - t0) / 60, 2),
              "train_loss_per_epoch": [round(v, 5) for v in rec.losses],
              "val_pearson_by_time_heldout_rollouts": {f"{k:.3f}": round(v, 4) for k, v in sorted(rec.val_corr.items())}}
    save_module(net, WEIGHTS / f"value_{args.reward}", record)
    print(record, flush=True)


def sample_quality(args) -> None:
    """Samples of the shipped denoiser against MOSES: validity, uniqueness, novelty, internal diversity and
    Wasserstein distances of QED, SA, MW, logP and heavy atoms to MOSES test; added to the denoiser's record (and the
    same numbers for MOSES test molecules themselves, as the floor of the distances)."""
    import svdd
    from ...io import load_module, read_record
    from . import build_model, reference
    from .data import decode
    from .metrics import report
    from .networks import TransformerDenoiser
    torch.set_num_threads(args.threads)
    t0 = time.time()
    out = {}
    for steps in args.steps:
        model = build_model(num_steps=steps)
        x = svdd.sample(model, lambda z: torch.zeros(z.shape[0]), "pretrained", num_samples=args.n, seed=args.seed,
                        max_batch=512).samples
        out[f"T={steps}"] = {k: round(v, 4) for k, v in report(decode(x)).items()}
        nelbo = model.nelbo(x, num_draws=4, max_batch=512)
        out[f"T={steps}"]["nelbo_nats_median"] = round(float(nelbo.median()), 2)
        print(steps, out[f"T={steps}"], flush=True)
    real = reference(args.n, args.seed + 1)
    out["moses_test"] = {k: round(v, 4) for k, v in report(decode(real)).items()}
    print("test", out["moses_test"], flush=True)
    record = read_record(WEIGHTS / "denoiser")
    record["sample_quality"] = {"command": "python -m svdd.tasks.molecule.train quality " + " ".join(sys.argv[2:]),
                                "samples": args.n, "seed": args.seed, "minutes": round((time.time() - t0) / 60, 2),
                                "note": "validity is 1.0 by construction (SELFIES); the Wasserstein distances of "
                                        "MOSES test molecules to other MOSES test molecules are the floor",
                                **out}
    save_module(load_module(TransformerDenoiser, WEIGHTS / "denoiser"), WEIGHTS / "denoiser", record)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    d = sub.add_parser("denoiser")
    d.add_argument("--minutes", type=float, default=40)
    d.add_argument("--dim", type=int, default=128)
    d.add_argument("--layers", type=int, default=6)
    d.add_argument("--heads", type=int, default=4)
    d.add_argument("--batch", type=int, default=256)
    d.add_argument("--lr", type=float, default=1e-3)
    d.add_argument("--ema", type=float, default=0.999)
    d.add_argument("--eval-every", type=int, default=500)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--threads", type=int, default=2)
    d.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out or $SVDD_CACHE")
    d.add_argument("--tokens", default="", help="folder of export-tokens' .npz files (no RDKit / SELFIES / molsets)")
    d.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    d.add_argument("--amp", action="store_true", help="bf16 autocast (cuda)")
    d.add_argument("--compile", action="store_true", help="torch.compile the training forward")
    d.add_argument("--out", default="", help="folder for denoiser.safetensors/.json and the checkpoint "
                                             "(default: the package's weights folder; checkpoint in $SVDD_CACHE)")
    e = sub.add_parser("export-tokens")
    e.add_argument("--out", required=True, help="folder for the MOSES train and test .npz token files")
    v = sub.add_parser("value")
    v.add_argument("--reward", choices=("qed", "sa", "docking"), required=True)
    v.add_argument("--rollouts", type=int, default=2048)
    v.add_argument("--steps", type=int, default=64)
    v.add_argument("--keep-every", type=int, default=2, help="train on every k-th level of the rollouts")
    v.add_argument("--epochs", type=int, default=3)
    v.add_argument("--lr", type=float, default=2e-3)
    v.add_argument("--real", type=int, default=0, help="forward-masked real MOSES train molecules added (cheap rewards)")
    v.add_argument("--docking-cache", default="", help="SQLite reward cache for the docking reward")
    v.add_argument("--workers", type=int, default=2, help="docking worker processes")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--threads", type=int, default=2)
    q = sub.add_parser("quality")
    q.add_argument("--n", type=int, default=1000)
    q.add_argument("--steps", type=int, nargs="+", default=[64, 32])
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    run = {"denoiser": train_denoiser, "value": train_value, "quality": sample_quality, "export-tokens": export}
    run[args.what](args)


if __name__ == "__main__":
    main()
