"""The C heap keeps freed memory for reuse once aigc_jax is imported (aigc_jax/host.py)."""

import os
import platform
import subprocess
import sys

import pytest

from aigc_jax import host

BLOCK = 64 << 20
PAGES = BLOCK // 4096

# A worker thread (as XLA's are) allocates, touches and frees a block larger than glibc's mmap threshold
# five times; the probe prints the minor page faults that cost.
PROBE = f"""
import ctypes, resource, threading
import aigc_jax  # noqa: F401

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
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

glibc_only = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only"
)


def _page_faults(**env: str) -> int:
    environ = {k: v for k, v in os.environ.items() if k != host.KEEP_DEFAULTS_ENV} | env
    probe = subprocess.run([sys.executable, "-c", PROBE], env=environ, capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
    return int(probe.stdout.strip())


@glibc_only
def test_freed_blocks_are_reused_not_faulted_in_again():
    # first touch only: the four later rounds reuse the pages
    assert _page_faults() < 2 * PAGES


@glibc_only
def test_opting_out_keeps_glibcs_behaviour():
    # each round maps a fresh block and faults every page in
    assert _page_faults(**{host.KEEP_DEFAULTS_ENV: "1"}) > 4 * PAGES


@glibc_only
def test_result_files_say_how_malloc_ran(tmp_path):
    from aigc_jax import results

    if os.environ.get(host.KEEP_DEFAULTS_ENV, "") not in ("", "0"):
        pytest.skip("this test run opted out")
    record = results.write(tmp_path / "result.json", metrics={})
    assert record["malloc"] == "glibc keeps freed memory (aigc_jax/host.py)"
