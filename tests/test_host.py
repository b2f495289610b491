"""The C heap keeps freed memory for reuse after host.keep_freed_memory(), and XLA:CPU runs convolutions on
its own threads instead of YNNPACK's one after host.use_threaded_convolutions() (aigc_jax/host.py)."""

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


def test_importing_aigc_jax_takes_convolutions_off_ynnpack():
    """conftest set XLA_FLAGS before importing aigc_jax, whose import added the option: this process's
    convolutions compile to XLA's own kernels, its dots and reductions still to YNNPACK fusions."""
    import jax
    import jax.numpy as jnp

    assert "--xla_force_host_platform_device_count=8" in os.environ["XLA_FLAGS"]  # conftest's, kept
    if host.jaxlib_version() != host.YNN_OPTION_JAXLIB:
        assert host.CPU_XLA_FLAGS not in os.environ["XLA_FLAGS"]  # another XLA may abort on the option
        pytest.skip(f"jaxlib {host.jaxlib_version()}: the option is left out (checked)")
    assert host.CPU_XLA_FLAGS in os.environ["XLA_FLAGS"]
    if jax.default_backend() != "cpu":
        pytest.skip("an XLA:CPU option")

    def compiled(fn, *args):
        return jax.jit(fn).lower(*args).compile().as_text()

    # a cnn_fashion convolution: YNNPACK takes one this size by default (not tiny ones)
    images, kernel = jnp.ones((32, 14, 14, 64)), jnp.ones((3, 3, 64, 64))
    conv = compiled(
        lambda x, k: jax.lax.conv_general_dilated(
            x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        ),
        images,
        kernel,
    )
    assert "convolution" in conv and "ynn_fusion" not in conv
    assert "ynn_fusion" in compiled(lambda a, b: a @ b, jnp.ones((64, 64)), jnp.ones((64, 64)))
    assert "ynn_fusion" in compiled(lambda x: x.sum(axis=(0, 1, 2)), jnp.ones((32, 14, 14, 64)))


@pytest.mark.parametrize(
    ("env", "flags_after"),
    [
        ({"XLA_FLAGS": "--a=1"}, f"--a=1 {host.CPU_XLA_FLAGS}"),
        ({}, host.CPU_XLA_FLAGS),
        ({"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT"}, None),  # the user's
        ({"XLA_FLAGS": "--a=1", host.XLA_DEFAULTS_ENV: "1"}, None),  # opted out
        ({"XLA_FLAGS": "--a=1", "jaxlib": "0.11.2"}, None),  # another XLA, which may not know the option
    ],
)
def test_threaded_convolutions_flag_respects_the_user(monkeypatch, env, flags_after):
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.delenv(host.XLA_DEFAULTS_ENV, raising=False)
    env = dict(env)
    jaxlib = env.pop("jaxlib", host.YNN_OPTION_JAXLIB)
    monkeypatch.setattr(host, "jaxlib_version", lambda: jaxlib)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert host.use_threaded_convolutions() is (flags_after is not None)
    assert os.environ.get("XLA_FLAGS", "") == (flags_after or env.get("XLA_FLAGS", ""))


def test_result_files_record_xla_flags(tmp_path, monkeypatch):
    from aigc_jax import results

    monkeypatch.setenv("XLA_FLAGS", "--a=1")
    assert results.write(tmp_path / "result.json", metrics={})["xla_flags"] == "--a=1"
