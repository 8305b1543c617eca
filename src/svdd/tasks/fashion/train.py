"""Retrain the shipped networks of the Fashion-MNIST task from scratch (they land in svdd/tasks/fashion/weights/).

    python -m svdd.tasks.fashion.train ddpm --minutes 6 --device cuda    # diffusers UNet2DModel + DDPMScheduler
    python -m svdd.tasks.fashion.train classifiers                       # reward + evaluation classifiers
    python -m svdd.tasks.fashion.train value                              # SVDD-MC value nets, both ways
    python -m svdd.tasks.fashion.train evaluate --num-samples 1000        # FD of the DDPM's samples, sample grid

Data: the Debian package dataset-fashion-mnist (see data.py). Each network gets a JSON record next to its weights
(command, data, steps, wall time, metrics).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ...io import load_module, save_module
from ...rewards.image import JPEGCompressibility
from ...training import warmup_cosine
from .data import load_split, provenance
from .networks import SCHEDULER_CONFIG, UNET_CONFIG, Classifier, ResClassifier, in_chunks

WEIGHTS = Path(__file__).parent / "weights"


def _command() -> str:
    return "python -m svdd.tasks.fashion.train " + " ".join(sys.argv[1:])


def train_ddpm(args) -> None:
    from diffusers import DDPMScheduler, UNet2DModel
    torch.manual_seed(args.seed)
    dev = torch.device(args.device)
    x_train, _ = load_split("train")
    x_train = x_train.to(dev)
    unet = UNet2DModel(**UNET_CONFIG).to(dev)
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    sched = DDPMScheduler(**SCHEDULER_CONFIG)
    abar = sched.alphas_cumprod.to(dev)
    opt = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=0.0)
    out = Path(args.out) if args.out else WEIGHTS / "ddpm"
    t0, step, last_save, losses = time.time(), 0, time.time(), []
    budget = args.minutes * 60
    amp = dict(device_type="cuda", dtype=torch.bfloat16) if dev.type == "cuda" else None

    def save(final: bool) -> None:
        ema.save_pretrained(out / "unet", safe_serialization=True)
        sched.save_pretrained(out / "scheduler")
        rec = {"command": _command(), "data": provenance(), "steps": step, "batch": args.batch, "lr": args.lr,
               "ema": args.ema, "minutes": round((time.time() - t0) / 60, 2), "device": str(dev),
               "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
               "final_loss_ema": losses[-1] if losses else None, "finished": final}
        (out / "record.json").write_text(json.dumps(rec, indent=2) + "\n")

    running = None
    while time.time() - t0 < budget:
        frac = (time.time() - t0) / budget
        lr = warmup_cosine(args.lr, step, frac, floor=0.05)
        for pg in opt.param_groups:
            pg["lr"] = lr
        idx = torch.randint(0, x_train.shape[0], (args.batch,), device=dev)
        x0 = x_train[idx]
        t = torch.randint(0, SCHEDULER_CONFIG["num_train_timesteps"], (args.batch,), device=dev)
        eps = torch.randn_like(x0)
        a = abar[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        with torch.autocast(**amp) if amp else contextlib.nullcontext():
            pred = unet(xt, t).sample
        loss = F.mse_loss(pred.float(), eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            d = min(args.ema, (1 + step) / (10 + step))
            torch._foreach_lerp_(list(ema.parameters()), list(unet.parameters()), 1 - d)
        step += 1
        if step % 10 == 0 or running is None:
            running = float(loss.detach()) if running is None else 0.9 * running + 0.1 * float(loss.detach())
        if step % 500 == 0:
            losses.append(round(running, 5))
            print(f"step {step} loss {running:.4f} lr {lr:.2e} {time.time() - t0:.0f}s", flush=True)
        if time.time() - last_save > args.save_every:
            save(False)
            last_save = time.time()
    save(True)
    print(f"done: {step} steps in {(time.time() - t0) / 60:.1f} min -> {out}")


def _fit_classifier(net, x, y, x_test, y_test, *, epochs, lr, seed, batch=128, augment=True):
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=5e-4)
    steps = epochs * (x.shape[0] // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    for ep in range(epochs):
        net.train()
        perm = torch.randperm(x.shape[0], generator=g)
        for a in range(0, x.shape[0] - batch + 1, batch):
            xb, yb = x[perm[a:a + batch]], y[perm[a:a + batch]]
            if augment:  # random shifts of up to 2 pixels and horizontal flips
                dx, dy = torch.randint(-2, 3, (2,), generator=g).tolist()
                xb = torch.roll(xb, (dy, dx), (2, 3))
                if torch.rand(1, generator=g) < 0.5:
                    xb = xb.flip(3)
            loss = F.cross_entropy(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        acc = accuracy(net, x_test, y_test)
        print(f"  {type(net).__name__} epoch {ep + 1}: test accuracy {acc:.4f}", flush=True)
    return net.eval()


@torch.no_grad()
def accuracy(net, x, y) -> float:
    net.eval()
    return float(in_chunks(lambda c: net(c).argmax(1), x).eq(y).float().mean())


def train_classifiers(args) -> None:
    torch.set_num_threads(args.threads)
    x, y = load_split("train")
    xt, yt = load_split("test")
    for name, cls, seed in (("classifier_reward", Classifier, 1), ("classifier_eval", ResClassifier, 2)):
        torch.manual_seed(seed)
        t0 = time.time()
        net = _fit_classifier(cls(), x, y, xt, yt, epochs=args.epochs, lr=args.lr, seed=seed)
        acc = accuracy(net, xt, yt)
        save_module(net, WEIGHTS / name, {"command": _command(), "data": provenance(), "seed": seed,
                                          "epochs": args.epochs, "test_accuracy": round(acc, 4),
                                          "minutes": round((time.time() - t0) / 60, 2)})
        print(f"{name}: test accuracy {acc:.4f}")


def _class_logp(x: torch.Tensor, net) -> torch.Tensor:
    return in_chunks(lambda c: torch.log_softmax(net(c), 1), x)


def _targets(kind: str, x0: torch.Tensor, nets) -> torch.Tensor:
    """Compressibility (n,) or log p(c | x0) for all ten classes (n, 10), clamped at CLASS_FLOOR."""
    if kind == "compress":
        return JPEGCompressibility(95)(x0).float()
    return _class_logp(x0, nets["classifier"]).clamp(min=CLASS_FLOOR)


CLASS_FLOOR = -20.0


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten().double(), b.flatten().double()]))[0, 1])


def train_value(args) -> None:
    """SVDD-MC value nets for both rewards, trained both ways the official code knows, on the same budget:
    'data' = forward-noised training images regressed on the clean image's reward; 'rollouts' = states of
    pre-trained rollouts regressed on the rollout's final reward (Algorithm 3). Both are scored on held-out rollouts;
    the better one per reward is shipped as value_<reward>."""
    from ...training import Rollouts, collect_rollouts
    from . import load_model
    from .networks import ImageValueNet
    torch.set_num_threads(args.threads)
    t0 = time.time()
    model = load_model(args.steps)
    nets = {"classifier": load_module(Classifier, WEIGHTS / "classifier_reward")} if "class" in args.rewards else {}
    jpeg = JPEGCompressibility(95)
    cache = Path(args.rollout_cache) if args.rollout_cache else None
    if cache is not None and cache.exists():
        ro = Rollouts.load(cache)
    else:
        ro = collect_rollouts(model, jpeg, args.rollouts + args.heldout, seed=args.seed, max_batch=256, progress=True)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            ro.save(cache)
    print(f"rollouts: {ro.states.shape[1]} x {ro.states.shape[0]} levels in {time.time() - t0:.0f}s", flush=True)
    T = model.num_steps
    final = ro.states[-1]
    levels = torch.arange(T - 1)  # states at levels 1 .. T-1 (index 0 .. T-2); the last step is deterministic
    train_idx, held_idx = torch.arange(args.rollouts), torch.arange(args.rollouts, args.rollouts + args.heldout)
    x_data, _ = load_split("train")
    abar = model.alphas_cumprod.float()
    ts = torch.tensor([int(t) for t in model.timesteps[1:]])  # timestep of levels 1 .. T-1
    records = {}
    for kind in args.rewards.split(","):
        y_roll = _targets(kind, final, nets)
        y_data = _targets(kind, x_data, nets)
        outputs = 1 if kind == "compress" else 10
        results = {}
        for way in ("data", "rollouts"):
            torch.manual_seed(args.seed)
            net = ImageValueNet(width=args.width, outputs=outputs)
            opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
            g = torch.Generator().manual_seed(args.seed)
            for step in range(args.iters):
                lvl = levels[torch.randint(0, T - 1, (args.batch,), generator=g)]
                if way == "data":
                    idx = torch.randint(0, x_data.shape[0], (args.batch,), generator=g)
                    a = abar[ts[lvl]].view(-1, 1, 1, 1)
                    x = a.sqrt() * x_data[idx] + (1 - a).sqrt() * torch.randn(x_data[idx].shape, generator=g)
                    y = y_data[idx]
                else:
                    idx = train_idx[torch.randint(0, args.rollouts, (args.batch,), generator=g)]
                    x, y = ro.states[lvl, idx], y_roll[idx]
                tt = ro.times[lvl].float()
                loss = F.mse_loss(net(x, tt), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                if (step + 1) % 500 == 0:
                    print(f"  {kind}/{way} step {step + 1} loss {loss.item():.4f}", flush=True)
            net.eval()
            corr = {}
            with torch.no_grad():
                for li in sorted({0, (T - 1) // 4, (T - 1) // 2, 3 * (T - 1) // 4, T - 2}):
                    p = net(ro.states[li, held_idx], ro.times[li].float().expand(len(held_idx)))
                    yt = y_roll[held_idx]
                    r = _pearson(p, yt) if outputs == 1 else float(np.mean([_pearson(p[:, c], yt[:, c])
                                                                             for c in range(outputs)]))
                    corr[round(float(ro.times[li]), 3)] = round(r, 3)
            results[way] = {"net": net, "heldout_pearson_by_time": corr, "mean": float(np.mean(list(corr.values())))}
            print(f"{kind}/{way}: held-out rollout Pearson r by time {corr}", flush=True)
        best = max(results, key=lambda w: results[w]["mean"])
        rec = {"command": _command(), "reward": kind, "trained_on": best, "rollouts": args.rollouts,
               "heldout_rollouts": args.heldout, "iters": args.iters, "batch": args.batch, "steps": T,
               "targets": "JPEG kB at q95 (negated)" if kind == "compress" else
               f"log p(c | x0) of classifier_reward for all 10 classes, clamped at {CLASS_FLOOR}",
               "comparison": {w: {"heldout_pearson_by_time": r["heldout_pearson_by_time"], "mean": round(r["mean"], 3)}
                              for w, r in results.items()},
               "minutes_total": round((time.time() - t0) / 60, 2)}
        save_module(results[best]["net"], WEIGHTS / f"value_{kind}", rec)
        records[kind] = rec
        print(f"value_{kind}: shipped the '{best}' net", flush=True)
    (WEIGHTS / "value_comparison.json").write_text(json.dumps(
        {k: r["comparison"] for k, r in records.items()}, indent=2) + "\n")


def evaluate_model(args) -> None:
    """Quality of the shipped DDPM: Fréchet distance (evaluation-classifier features) of N samples to the test set,
    next to N training images (the floor at this N) and N uniform-noise images, plus a sample grid."""
    from ... import sample
    from . import fd_to_test, load_model, load_networks, save_grid
    t0 = time.time()
    model = load_model(args.steps, device=args.device)
    res = sample(model, JPEGCompressibility(95), "pretrained", num_samples=args.num_samples, seed=args.seed,
                 max_batch=512)
    x = res.samples.cpu()
    xtr, _ = load_split("train")
    real = xtr[torch.randperm(xtr.shape[0], generator=torch.Generator().manual_seed(args.seed))[:args.num_samples]]
    with torch.no_grad():
        classes = torch.bincount(load_networks()["evaluator"](x).argmax(1), minlength=10)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rec = {"command": _command(), "num_samples": args.num_samples, "steps": args.steps, "sampler": "DDIM eta=1",
           "frechet_distance": {"model_samples": round(fd_to_test(x), 3),
                                "training_images": round(fd_to_test(real), 3),
                                "uniform_noise": round(fd_to_test(torch.rand_like(x) * 2 - 1), 3)},
           "predicted_class_counts_of_samples": dict(zip(CLASSES_SHORT, classes.tolist())),
           "seconds": round(time.time() - t0, 1), "device": args.device}
    (out / "quality.json").write_text(json.dumps(rec, indent=2) + "\n")
    save_grid(x[:64], out / "samples_grid.png")
    save_grid(real[:64], out / "training_grid.png")
    print(json.dumps(rec, indent=2))


CLASSES_SHORT = ("tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m svdd.tasks.fashion.train")
    sub = p.add_subparsers(dest="what", required=True)
    d = sub.add_parser("ddpm")
    d.add_argument("--minutes", type=float, default=6.0)
    d.add_argument("--batch", type=int, default=256)
    d.add_argument("--lr", type=float, default=6e-4)
    d.add_argument("--ema", type=float, default=0.999)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    d.add_argument("--save-every", type=float, default=60.0)
    d.add_argument("--out", default=None)
    c = sub.add_parser("classifiers")
    c.add_argument("--epochs", type=int, default=6)
    c.add_argument("--lr", type=float, default=3e-3)
    c.add_argument("--threads", type=int, default=2)
    v = sub.add_parser("value")
    v.add_argument("--rewards", default="compress,class")
    v.add_argument("--rollouts", type=int, default=1024)
    v.add_argument("--heldout", type=int, default=256)
    v.add_argument("--steps", type=int, default=50)
    v.add_argument("--iters", type=int, default=1500)
    v.add_argument("--batch", type=int, default=128)
    v.add_argument("--width", type=int, default=32)
    v.add_argument("--lr", type=float, default=1e-3)
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--threads", type=int, default=2)
    v.add_argument("--rollout-cache", default=None, help="file to keep the rollouts in (reused when present)")
    e = sub.add_parser("evaluate")
    e.add_argument("--num-samples", type=int, default=1000)
    e.add_argument("--steps", type=int, default=50)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    e.add_argument("--out", default="results/fashion-model")
    args = p.parse_args(argv)
    {"ddpm": train_ddpm, "classifiers": train_classifiers, "value": train_value, "evaluate": evaluate_model}[args.what](args)


if __name__ == "__main__":
    main()
