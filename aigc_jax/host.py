"""How this process's C heap serves XLA:CPU: freed memory is kept for reuse, not given back.

XLA:CPU mallocs one temporary buffer per run of an executable (the whole step's scratch space: 424 MiB
for the transformer_g2p `cpu` train step) and frees it when the run ends. glibc serves a request that
large with a fresh mmap(), and from threads other than the main one it always does, whatever its
thresholds say; so every step page-faults its whole scratch space in again. On 2 cores that was 112,000
minor faults and ~230 ms of kernel time in a ~500-ms G2P step. With all threads on glibc's main heap,
mmap() off and trimming off, the next step reuses the freed pages (what preloading tcmalloc achieves,
without a preload): the G2P step took 373 ms against 499 (benchmarks/heap_setting.py).

Only steps whose scratch outgrows glibc's thread arenas (64 MiB heaps) gain: the transformer systems
call `keep_freed_memory` when built (their `cpu` train steps' scratch, from the compiled step's
`memory_analysis()`: gpt_shakespeare 127 MiB, dialogue_chitchat 335 MiB, transformer_g2p 424 MiB). The
convnets' steps need far less (cnn_fashion 29 MiB) and gain nothing: 52.0 ms with it against 50.0
without (benchmarks/heap_setting.py; a first comparison, not kept, had it ~10% slower). It also costs
memory, as the heap never shrinks and keeps freed blocks of several sizes: G2P training, whose length
buckets make steps of several sizes, peaked at 2.96 GB resident against 1.67 GB (and trained 8% more
steps in the same two minutes; README, Benchmarks).
`AIGC_JAX_MALLOC_DEFAULTS=1` leaves glibc as it is.

Convolutions on XLA:CPU's threads: this jaxlib hands dots, convolutions and reductions to YNNPACK, which
runs each convolution on one thread, so a convnet's forward pass (a chain of convolutions) keeps one core
of two idle. `use_threaded_convolutions`, called when aigc_jax is imported, keeps YNNPACK for dots and
reductions only (`CPU_XLA_FLAGS`), and convolutions go to XLA's multi-threaded Eigen kernels: the
cnn_fashion cpu train step took 13.7–17.1 ms against 18.2–20.6, the DCGAN's 13.3–17.4 against 15.2–18.2
(separate processes of `benchmarks/cpu_devices.py --child NAME 1`, AMD EPYC Zen 5, 2 cores; README,
Benchmarks). Reductions must stay: without them (YNNPACK for dots only) BatchNorm's statistics compile
to slow loops and the cnn step took ~21 ms. Networks without convolutions compile to the same program
either way (the gpt_shakespeare step's optimised HLO is identical). `AIGC_JAX_XLA_DEFAULTS=1`, or an
XLA_FLAGS that sets the option itself, leaves XLA as it is; like every XLA flag it takes effect only if
set before JAX first compiles. It is set only with the jaxlib it was measured on (the pinned one): an XLA
that does not know a flag in XLA_FLAGS aborts, and the accelerator sessions' image has another JAX.
"""

import ctypes
import importlib.metadata
import os
import platform

KEEP_DEFAULTS_ENV = "AIGC_JAX_MALLOC_DEFAULTS"
XLA_DEFAULTS_ENV = "AIGC_JAX_XLA_DEFAULTS"
_YNN_OPTION = "--xla_cpu_experimental_ynn_fusion_type"
_YNN_KEPT = ("DOT", "INDIVIDUAL_DOT", "REDUCE")  # this jaxlib's default adds INDIVIDUAL_CONVOLUTION
CPU_XLA_FLAGS = f"{_YNN_OPTION}=" + ",".join(f"LIBRARY_FUSION_TYPE_{kind}" for kind in _YNN_KEPT)
YNN_OPTION_JAXLIB = "0.10.2"  # the jaxlib whose XLA was measured with the option (pyproject's pin)
# mallopt() parameters, from glibc's <malloc.h>
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_KEEP_FREED = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1))
_kept = False  # whether keep_freed_memory succeeded in this process


def keep_freed_memory() -> bool:
    """Makes glibc's malloc keep and reuse freed memory; returns whether it did (glibc, not opted out).

    Takes full effect before JAX first computes: a thread that has already allocated keeps its own
    arena, whose large blocks are mmap()s (called after a few G2P steps it still removed 90% of their
    page faults). With mmap() off, glibc still falls back to it when the main heap cannot grow, so no
    allocation fails that would have succeeded."""
    global _kept
    if os.environ.get(KEEP_DEFAULTS_ENV, "") not in ("", "0"):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL("libc.so.6")
    _kept = all(libc.mallopt(parameter, value) == 1 for parameter, value in _KEEP_FREED)
    return _kept


def malloc_setting() -> str:
    """How this process's malloc treats freed memory, in words for result files."""
    return "glibc keeps freed memory (aigc_jax/host.py)" if _kept else "the platform's default"


def use_threaded_convolutions() -> bool:
    """Adds `CPU_XLA_FLAGS` to XLA_FLAGS (YNNPACK keeps dots and reductions, not convolutions; see the
    module docstring); returns whether it did: not when opted out with AIGC_JAX_XLA_DEFAULTS=1, when
    XLA_FLAGS already sets the option, or with a jaxlib other than `YNN_OPTION_JAXLIB`."""
    flags = os.environ.get("XLA_FLAGS", "")
    if os.environ.get(XLA_DEFAULTS_ENV, "") not in ("", "0") or _YNN_OPTION in flags:
        return False
    if jaxlib_version() != YNN_OPTION_JAXLIB:
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {CPU_XLA_FLAGS}".strip()
    return True


def jaxlib_version() -> str | None:
    """The installed jaxlib's version (None without one)."""
    try:
        return importlib.metadata.version("jaxlib")
    except importlib.metadata.PackageNotFoundError:
        return None
