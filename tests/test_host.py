"""The C heap keeps freed memory for reuse after host.keep_freed_memory() (aigc_jax/host.py)."""

import os
import platform
import subprocess
import sys

import pytest

from aigc_jax import host

BLOCK = 64 << 20
PAGES = BLOCK // 4096

# A worker thread (as XLA's are) allocates, touches and frees a block larger than glibc's mmap threshold
# five times; the probe prints whether the heap was set and the minor page faults the rounds cost.
PROBE = f"""
import ctypes, resource, sys, threading
from aigc_jax import host

kept = host.keep_freed_memory() if sys.argv[1:] == ["keep"] else False

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]

def churn():
    for _ in range(5):
        block = libc.malloc({BLOCK})
        ctypes.memset(block, 1, {BLOCK})
        libc.free(block)

before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
thread = threading.Thread(target=churn)
thread.start()
thread.join()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

glibc_only = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only"
)


def _probe(*args: str, **env: str) -> tuple[bool, int]:
    environ = {k: v for k, v in os.environ.items() if k != host.KEEP_DEFAULTS_ENV} | env
    probe = subprocess.run([sys.executable, "-c", PROBE, *args], env=environ, capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
    kept, faults = probe.stdout.split()
    return kept == "True", int(faults)


@glibc_only
def test_freed_blocks_are_reused_not_faulted_in_again():
    kept, faults = _probe("keep")
    assert kept
    assert faults < 2 * PAGES  # first touch only: the four later rounds reuse the pages


@glibc_only
def test_glibc_as_it_comes_faults_every_round_in():
    kept, faults = _probe()
    assert not kept
    assert faults > 4 * PAGES  # each round maps a fresh block: what keep_freed_memory is for


@glibc_only
def test_opting_out_keeps_glibcs_behaviour():
    kept, faults = _probe("keep", **{host.KEEP_DEFAULTS_ENV: "1"})
    assert not kept
    assert faults > 4 * PAGES


def test_result_files_say_how_malloc_ran(tmp_path, monkeypatch):
    from aigc_jax import results

    for kept, words in (
        (True, "glibc keeps freed memory (aigc_jax/host.py)"),
        (False, "the platform's default"),
    ):
        monkeypatch.setattr(host, "_kept", kept)
        assert results.write(tmp_path / "result.json", metrics={})["malloc"] == words


def test_transformer_systems_keep_freed_memory_when_built(monkeypatch):
    from aigc_jax.systems import transformer_g2p

    calls = []
    monkeypatch.setattr(host, "keep_freed_memory", lambda: calls.append(True))
    transformer_g2p.TransformerG2p(transformer_g2p.get_config("smoke"), transformer_g2p.Phonemes(["AA", "B"]))
    assert calls == [True]
