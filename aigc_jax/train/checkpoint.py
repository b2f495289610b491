"""Checkpoints: the only module that imports Orbax.

A checkpoint holds two items: the train state and, when training, the Grain iterator state, so a resumed
run continues on the exact next batch. Restoring takes an abstract target whose leaves carry shardings,
so a checkpoint written on one mesh restores onto another.
"""

import contextlib
import gc
import logging
import pathlib
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp

from aigc_jax.errors import UserError


@contextlib.contextmanager
def _quiet_absl() -> Iterator[None]:
    """Orbax warns that a read-only manager will not save; for eval and sampling that is the point."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _is_failed_read_noise(report: "sys.UnraisableHookArgs") -> bool:
    error = report.exc_value
    if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
        return True
    # a read left unfinished by the failed restore, closed when collected: it re-raises its read error
    return getattr(report.object, "__qualname__", None) == "_read_array_index_and_device_put"


def _not_an_unretrieved_failure(record: logging.LogRecord) -> bool:
    """False for asyncio's "Future exception was never retrieved" and "Task exception ..." records."""
    return not record.getMessage().partition("\n")[0].endswith("exception was never retrieved")


# the coroutines of Orbax's array-metadata store, left unstarted when a restore fails
_ORBAX_UNAWAITED = r"coroutine 'Store\._get_array_metadatas' was never awaited"


@contextlib.contextmanager
def _failed_read_noise_dropped() -> Iterator[None]:
    """When Orbax's restore fails, the TensorStore reads still in flight end up in the asyncio event loop
    Orbax has already closed: each callback prints an unraisable "Event loop is closed" traceback, and
    asyncio logs "Future (or Task) exception was never retrieved" for each failed read it collects — ~60
    tracebacks around the one-line error a damaged checkpoint should give. Drops exactly those kinds
    of report while restoring and, after a failed restore, for the rest of the process, since the
    stragglers arrive later; every other report passes through. A failed restore also collects garbage at
    once, so that its unfinished read coroutines are closed (each re-raising its read error) while this
    hook is certainly the one installed: pytest, for one, puts its own back after each test. Orbax's
    metadata reads that never started are collected then too, each with a "coroutine ... was never
    awaited" RuntimeWarning (printed by `warnings`, not the hook): ignored from the first restore on,
    whether it failed or not (`_ORBAX_UNAWAITED`; nothing else sends it)."""
    previous = sys.unraisablehook
    asyncio_logger = logging.getLogger("asyncio")

    def hook(report: "sys.UnraisableHookArgs") -> None:
        if not _is_failed_read_noise(report):
            previous(report)

    sys.unraisablehook = hook
    asyncio_logger.addFilter(_not_an_unretrieved_failure)
    warnings.filterwarnings("ignore", message=_ORBAX_UNAWAITED, category=RuntimeWarning)
    try:
        yield
    except Exception:
        gc.collect()
        raise
    # not reached when the restore raised: see above
    sys.unraisablehook = previous
    asyncio_logger.removeFilter(_not_an_unretrieved_failure)


class Checkpointer:
    """Async Orbax checkpoints of `state` (+ data iterator) under `workdir/checkpoints`."""

    def __init__(self, workdir: str | pathlib.Path, keep: int = 3, read_only: bool = False):
        if keep < 1:  # Orbax's LatestN(0) would delete every checkpoint, the one just saved included
            raise UserError(f"config.train.keep_checkpoints must be at least 1, not {keep}")
        self.directory = pathlib.Path(workdir).absolute() / "checkpoints"
        if read_only and not self.directory.is_dir():
            raise UserError(
                f"{workdir} holds no checkpoints; train first: aigc-jax train NAME --workdir {workdir}"
            )
        with _quiet_absl():
            options = ocp.CheckpointManagerOptions(
                create=not read_only,
                read_only=read_only,
                preservation_policy=ocp.checkpoint_managers.LatestN(keep),
                enable_async_checkpointing=True,
            )
            self._manager = ocp.CheckpointManager(
                self.directory, options=options, item_names=("state", "data")
            )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any, data_iterator: grain.DatasetIterator | None = None) -> None:
        items = {"state": ocp.args.StandardSave(state)}
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
        self._manager.save(step, args=ocp.args.Composite(**items), force=True)

    def restore(
        self, abstract_state: Any, data_iterator: grain.DatasetIterator | None = None, step: int | None = None
    ) -> Any:
        """Restores `step` (default: the latest) into the shardings of `abstract_state`.

        `data_iterator`, when given, is moved to the saved position in place.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise UserError(f"no checkpoint found in {self.directory}; train first")
        items = {"state": ocp.args.StandardRestore(abstract_state)}
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        try:
            with _failed_read_noise_dropped():
                restored = self._manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as error:  # Orbax raises many types for a damaged or mismatched checkpoint.
            path = self.directory / str(step)
            differences = _weight_differences(abstract_state, path / "state")
            if differences:
                raise UserError(
                    f"cannot restore the checkpoint {path}: it was trained with another model shape "
                    f"({differences}). Train in a new --workdir, or pass the settings that run was trained "
                    f"with (its {path.parent.parent / 'config.json'})"
                ) from error
            first_line = (str(error).splitlines() or [""])[0][:300]
            reason = f"{type(error).__name__}: {first_line}" if first_line else type(error).__name__
            raise UserError(
                f"cannot restore the checkpoint {path} ({reason}). If it is damaged, move that step folder "
                "away to resume from the previous one; if the config changed shape, train in a new --workdir"
            ) from error
        return restored["state"]

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


def _weights(tree: Any) -> dict[str, tuple[int, ...]]:
    """'params/Conv_0/kernel' → shape, for the model's weights and statistics (`params`, `model_state`):
    the parts of a train state that are plain nested dicts both here and in a checkpoint's metadata."""
    shapes = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        names = [str(getattr(key, "key", getattr(key, "name", getattr(key, "idx", key)))) for key in path]
        if names and names[0] in ("params", "model_state"):
            shapes["/".join(names)] = tuple(getattr(leaf, "shape", ()))
    return shapes


def _weight_differences(abstract_state: Any, state_directory: pathlib.Path, shown: int = 3) -> str:
    """How the weights this config makes differ from a checkpoint's ('' when they match or the checkpoint's
    metadata cannot be read — then the checkpoint itself is the likelier problem)."""
    try:
        with _quiet_absl(), ocp.StandardCheckpointer() as checkpointer:  # closed: no stray async work
            stored = checkpointer.metadata(state_directory).item_metadata
    except Exception:  # a damaged checkpoint: the caller reports Orbax's own error
        return ""
    here, there = _weights(abstract_state), _weights(stored)
    if not there:  # damaged metadata reads as an empty tree
        return ""
    lines = [
        f"{name} is {there[name]} there, {shape} here"
        for name, shape in here.items()
        if name in there and there[name] != shape
    ]
    lines += [f"{name} is only here" for name in here if name not in there]
    lines += [f"{name} is only there" for name in there if name not in here]
    more = f"; and {len(lines) - shown} more" if len(lines) > shown else ""
    return "; ".join(lines[:shown]) + more
