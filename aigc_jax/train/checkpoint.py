"""Checkpoints: the only module that imports Orbax.

A checkpoint holds two items: the train state and, when training, the Grain iterator state, so a resumed
run continues on the exact next batch. Restoring takes an abstract target whose leaves carry shardings,
so a checkpoint written on one mesh restores onto another.
"""

import contextlib
import logging
import pathlib
from collections.abc import Iterator
from typing import Any

import grain
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
            restored = self._manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as error:  # Orbax raises many types for a damaged or mismatched checkpoint.
            first_line = (str(error).splitlines() or [""])[0][:300]
            reason = f"{type(error).__name__}: {first_line}" if first_line else type(error).__name__
            raise UserError(
                f"cannot restore the checkpoint {self.directory / str(step)} ({reason}). If it is damaged, "
                "move that step folder away to resume from the previous one; if the config changed shape, "
                "train in a new --workdir"
            ) from error
        return restored["state"]

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
