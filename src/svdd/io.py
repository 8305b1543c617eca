"""The bottom layer: atomic writes, content hashes, config hashes and diffs, and saving / loading networks (weights as
safetensors, constructor config and training record as JSON). Imports nothing else of svdd."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch


def save_module(module: torch.nn.Module, stem: str | Path, record: dict[str, Any] | None = None) -> None:
    from safetensors.torch import save_file
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    save_file(state, str(stem.with_suffix(".safetensors")))
    meta = {"class": type(module).__name__, "config": getattr(module, "config", {}), "record": record or {}}
    stem.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; a missing, truncated or corrupt file is an error naming it."""
    from safetensors.torch import load_file
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such safetensors file")
    try:
        return load_file(str(path))
    except Exception as exc:  # SafetensorError, or an OSError / ValueError from a torn header
        raise ValueError(f"{path} is not a readable safetensors file ({type(exc).__name__}: {exc}); it may be "
                         "truncated or corrupt: restore or retrain it") from None


def load_module(cls, stem: str | Path) -> torch.nn.Module:
    stem = Path(stem)
    weights, meta = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    if not weights.exists() or not meta.exists():
        raise FileNotFoundError(f"{weights} / {meta} not found: the shipped weights are missing or were not trained yet")
    try:
        info = json.loads(meta.read_text())
    except (ValueError, OSError) as exc:
        raise ValueError(f"{meta} is not a readable JSON record ({exc})") from None
    if info["class"] != cls.__name__:
        raise ValueError(f"{meta} holds a {info['class']}, not a {cls.__name__}")
    module = cls(**info["config"])
    module.load_state_dict(load_tensors(weights))
    return module.eval()


def read_record(stem: str | Path) -> dict[str, Any]:
    return json.loads(Path(stem).with_suffix(".json").read_text())["record"]


def _update(h, t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())


def tensor_hash(t: torch.Tensor | None) -> str | None:
    """First 16 hex digits of a sha256 over a tensor's dtype, shape and bytes; None for None."""
    if t is None:
        return None
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"tensor_hash expects a tensor or None, got {type(t).__name__}")
    h = hashlib.sha256()
    _update(h, t)
    return h.hexdigest()[:16]


def weights_hash(module: Any) -> str | None:
    """First 16 hex digits of a sha256 over a module's state_dict (keys in sorted order, each key with its tensor's
    dtype, shape and bytes); None when ``module`` is not a ``torch.nn.Module`` or has no state."""
    state = module.state_dict() if isinstance(module, torch.nn.Module) else {}
    if not state:
        return None
    h = hashlib.sha256()
    for key, t in sorted(state.items()):
        h.update(key.encode())
        if isinstance(t, torch.Tensor):
            _update(h, t)
        else:  # extra state
            h.update(repr(t).encode())
    return h.hexdigest()[:16]


def cache_dir() -> Path:
    """``$SVDD_CACHE`` (default ``~/.cache/svdd``): data caches, measured batch sizes, rollouts; created on use."""
    d = Path(os.environ.get("SVDD_CACHE", Path.home() / ".cache" / "svdd"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file: flushed, fsync'ed, renamed, and the folder fsync'ed."""
    import uuid
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")  # unique across processes and hosts
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # no torn temporary file stays behind (disk full, interrupted)
        raise
    try:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # folders cannot be fsync'ed on some systems
        pass


def canonical_json(obj: Any) -> str:
    """The JSON text hashes are taken over: sorted keys, non-JSON values by their ``str``."""
    return json.dumps(obj, sort_keys=True, default=str)


def config_hash(config: Any) -> str:
    """First 16 hex digits of a sha256 over a config's canonical JSON."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:16]


def config_diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys where two JSON-like configs differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += config_diff(a.get(k, "<absent>"), b.get(k, "<absent>"), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def dotted_get(config: Any, dotted: str) -> Any:
    """The value at a dotted key of a nested dict (``"<absent>"`` where there is none)."""
    for key in dotted.split("."):
        if not isinstance(config, dict) or key not in config:
            return "<absent>"
        config = config[key]
    return config


def describe_diff(old: Any, new: Any, limit: int = 5) -> str:
    """``"k1, k2 differ(s) (the run: k1=..; now: k1=..)"``: the keys where two configs differ, with both values."""
    keys = config_diff(old, new) or ["(format)"]
    then = ", ".join(f"{k}={dotted_get(old, k)!r}" for k in keys[:limit])
    now = ", ".join(f"{k}={dotted_get(new, k)!r}" for k in keys[:limit])
    return f"{', '.join(keys)} differ(s) (the run: {then}; now: {now})"


def plain_options(opts: dict[str, Any]) -> dict[str, Any]:
    """Options as JSON-able values (objects such as value nets by their type name)."""
    plain = (int, float, str, bool, type(None), list, tuple)
    return {k: (v if isinstance(v, plain) else type(v).__name__) for k, v in opts.items()}
