"""Configs: `ml_collections` ConfigDicts, presets and `--config.a.b=value` overrides.

Every system defines `get_config(preset)`; this module applies command-line overrides to it with type
checking, so a misspelt key or a value of the wrong type ends in one clear `UserError` instead of a run
that silently ignores it.
"""

import ast
import difflib
import json
import pathlib
from collections.abc import Sequence
from typing import Any

import ml_collections

from aigc_jax.errors import UserError

CONFIG_FILE = "config.json"  # saved in every workdir, beside the checkpoints


def parse_overrides(args: Sequence[str]) -> dict[str, str]:
    """`["--config.optim.lr=3e-4", "--config.train.steps", "10"]` → `{"optim.lr": "3e-4", ...}`."""
    overrides: dict[str, str] = {}
    it = iter(args)
    for arg in it:
        if not arg.startswith("--config."):
            raise UserError(
                f"unexpected argument {arg!r}; config overrides look like --config.train.steps=100"
            )
        key, sep, value = arg[len("--config.") :].partition("=")
        if not sep:
            value = next(it, None)
            if value is None:
                raise UserError(f"--config.{key} needs a value, e.g. --config.{key}=VALUE")
        overrides[key] = value
    return overrides


def _all_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    keys = []
    for name, value in config.items():
        keys.append(prefix + name)
        if isinstance(value, ml_collections.ConfigDict):
            keys.extend(_all_keys(value, prefix + name + "."))
    return keys


def convert(flag: str, text: str, current: Any) -> Any:
    """Parses the command-line value `text` of `flag` (e.g. `--config.train.steps`) into the type of the
    value it replaces."""
    if isinstance(current, bool):
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise UserError(f"{flag} takes true or false, not {text!r}")
    if isinstance(current, str):
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if current is None:
            return text
        raise UserError(
            f"{flag}={text!r} is not a valid {type(current).__name__} (current value {current!r})"
        ) from None
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(current, tuple) and isinstance(value, list | tuple):
        return tuple(value)
    if current is not None and not isinstance(value, type(current)):
        raise UserError(
            f"{flag}={text!r} is a {type(value).__name__}, "
            f"but this key holds a {type(current).__name__} (current value {current!r})"
        )
    return value


def apply_overrides(
    config: ml_collections.ConfigDict, overrides: dict[str, str]
) -> ml_collections.ConfigDict:
    """Returns a copy of `config` with the dotted overrides applied; unknown keys raise `UserError`."""
    config = ml_collections.ConfigDict(config.to_dict())
    known = _all_keys(config)
    for key, text in overrides.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=3)
            hint = f" Did you mean {', '.join('--config.' + c for c in close)}?" if close else ""
            raise UserError(f"unknown config key --config.{key}.{hint}")
        *parents, leaf = key.split(".")
        node = config
        for parent in parents:
            node = node[parent]
        node[leaf] = convert(f"--config.{key}", text, node[leaf])
    return config


def to_json(config: ml_collections.ConfigDict) -> str:
    return json.dumps(config.to_dict(), indent=2, sort_keys=True)


def from_json(text: str) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(_tuples(json.loads(text)))


def _tuples(value: Any) -> Any:
    """Parsed JSON with lists as tuples: JSON has none, and configs use tuples for shapes (mesh.shape)."""
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def load_workdir_config(workdir: str | pathlib.Path) -> ml_collections.ConfigDict:
    """The config a workdir was trained with."""
    path = pathlib.Path(workdir) / CONFIG_FILE
    if not path.exists():
        raise UserError(f"{workdir} is not a training workdir (no {CONFIG_FILE}); train into it first")
    return _read_config(path)


def _read_config(path: pathlib.Path) -> ml_collections.ConfigDict:
    """A workdir's recorded config; a `UserError` if the file is not one (e.g. cut short or edited)."""
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        problem = str(error)
    else:
        if isinstance(config, dict) and isinstance(config.get("name"), str):
            return ml_collections.ConfigDict(_tuples(config))
        problem = "not a config with a system name"
    raise UserError(
        f"{path} is damaged ({problem}); put back a good copy, or train into a new --workdir "
        "(the checkpoints beside it belong to the config it held)"
    )


def check_workdir(workdir: str | pathlib.Path, config: ml_collections.ConfigDict) -> None:
    """Refuses a workdir that holds another system's run, before anything is written into it."""
    path = pathlib.Path(workdir) / CONFIG_FILE
    if path.exists():
        previous = _read_config(path)
        if previous.name != config.name:
            raise UserError(
                f"{workdir} holds a {previous.name} run, not {config.name}; choose another --workdir"
            )


def record_config(workdir: str | pathlib.Path, config: ml_collections.ConfigDict) -> None:
    """Writes the config beside the checkpoints. `loop.fit` calls it only once the workdir's checkpoint
    (if any) has restored under this config, so a failed or mismatched run never replaces the record of
    the config that the existing checkpoints were trained with."""
    path = pathlib.Path(workdir) / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_json(config))


def _leaves(config: ml_collections.ConfigDict, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, value) of every setting that is not itself a group of settings."""
    leaves = []
    for name, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            leaves.extend(_leaves(value, prefix + name + "."))
        else:
            leaves.append((prefix + name, value))
    return leaves


def check_fractions(config: ml_collections.ConfigDict) -> None:
    """Refuses a dropout rate or label smoothing outside [0, 1), or a probability outside [0, 1], found by
    how the setting's name ends; they would otherwise train silently on nonsense (dropout 1.5 keeps a
    negative share of the units)."""
    for key, value in _leaves(config):
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if key.endswith(("dropout", "smoothing")) and not 0 <= value < 1:
            raise UserError(f"config.{key} must be in [0, 1), not {value}")
        if key.endswith("probability") and not 0 <= value <= 1:
            raise UserError(f"config.{key} must be in [0, 1], not {value}")
