"""Heap settings for CPU runs: keep freed tensor memory in the process instead of handing it back to the system.

With glibc's default settings a CPU run can pay for page faults on its network calls: a large tensor is mapped
fresh (``mmap``), or the heap top is trimmed after a call frees its activations, so that the next call's activations
are new pages the kernel must zero. `tune_heap` sets glibc's mmap threshold to its largest value (32 MiB) and its
trim threshold to 128 MiB (``mallopt``), so that a call's activations reuse the memory the previous call freed
(measured in README, "Benchmark"); up to 128 MiB of freed memory may stay in the process.

It is done once per process, when the first CPU run starts, and is process-wide. It is left alone where the user
chose: ``SVDD_MALLOC_TUNING=0`` in the environment, or any of glibc's own malloc settings (``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_``, ``GLIBC_TUNABLES`` with a ``glibc.malloc`` entry), and on systems
without glibc. The run's ``result.config["cpu_heap"]`` says what happened.
"""

from __future__ import annotations

import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
MMAP_BYTES = 32 << 20  # the largest mmap threshold glibc accepts on 64-bit systems
TRIM_BYTES = 128 << 20
OPT_OUT = "SVDD_MALLOC_TUNING"
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")

_state: str | None = None


def tune_heap() -> str:
    """Apply the heap settings once per process (see the module docstring); returns what was done, e.g.
    ``"glibc mallopt: mmap threshold 32 MiB, trim threshold 128 MiB"`` or why nothing was."""
    global _state
    if _state is None:
        _state = _apply()
    return _state


def _apply() -> str:
    if os.environ.get(OPT_OUT, "").strip().lower() in ("0", "false", "no", "off"):
        return f"left as it was ({OPT_OUT}={os.environ[OPT_OUT]})"
    chosen = [k for k in _USER_SETTINGS if k in os.environ]
    if "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        chosen.append("GLIBC_TUNABLES")
    if chosen:
        return f"left as it was (set in the environment: {', '.join(chosen)})"
    import platform
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "left as it was (not glibc)"
    import ctypes
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_BYTES) == 1 and libc.mallopt(M_TRIM_THRESHOLD, TRIM_BYTES) == 1
    except (OSError, AttributeError):
        ok = False
    if not ok:
        return "left as it was (mallopt unavailable or refused)"
    return f"glibc mallopt: mmap threshold {MMAP_BYTES >> 20} MiB, trim threshold {TRIM_BYTES >> 20} MiB"
