"""Experiment configs: YAML files in experiments/, read safely into typed dataclasses.

`--profile NAME` means `experiments/synth-NAME.yaml`. Unknown keys, wrong types and
missing files are errors that name the file and the key, raised before any work starts.
"""

from __future__ import annotations

import dataclasses
import keyword
import math
import sys
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from psl.errors import ConfigError

T = TypeVar("T")


def experiments_dir() -> Path:
    """experiments/ of the checkout psl runs from, or the copy installed with it."""
    for candidate in (
        Path(__file__).resolve().parent.parent / "experiments",
        Path(sys.prefix) / "share" / "psl" / "experiments",
    ):
        if candidate.is_dir():
            return candidate
    raise ConfigError("cannot find the experiments/ folder of psl (neither in the checkout nor installed)")


def profile_path(name: str) -> Path:
    path = experiments_dir() / f"synth-{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem.removeprefix("synth-") for p in experiments_dir().glob("synth-*.yaml"))
        raise ConfigError(f"unknown profile {name!r}: no {path}; known profiles: {', '.join(known)}")
    return path


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())  # plain data only: no object construction
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return _unshared(data)


def _unshared(node: Any) -> Any:
    """A YAML alias (`*name`) loads as the very object its anchor did: a copy per use, so that
    `--set student.train.lr=...` never also changes a section that shares the anchor."""
    if isinstance(node, dict):
        return {key: _unshared(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_unshared(value) for value in node]
    return node


def build(cls: type[T], data: Any, where: str) -> T:
    """Builds dataclass `cls` from plain data, checking keys and types; `where` prefixes errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {config_key(f.name): f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    values = {fields[key]: _coerce(hints[fields[key]], value, f"{where}.{key}") for key, value in data.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where}: {error}") from None


def config_key(field_name: str) -> str:
    """A field named after a Python keyword with PEP 8's trailing underscore (`import_`) is
    spelt without it in configs (`teacher.import`)."""
    bare = field_name.removesuffix("_")
    return bare if keyword.iskeyword(bare) else field_name


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        if len([o for o in options if o is not type(None)]) == 1:  # X | None: X's own error says why
            return _coerce(next(o for o in options if o is not type(None)), value, where)
        for option in options:
            if option is not type(None):
                try:
                    return _coerce(option, value, where)
                except ConfigError:
                    pass
        raise ConfigError(f"{where}: {value!r} is not a {hint}")
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{where}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is list:
        (item_type,) = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(item_type, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_type, value_type = typing.get_args(hint)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {_coerce(key_type, k, where): _coerce(value_type, v, f"{where}.{k}") for k, v in value.items()}
    if hint is float:
        return _finite_float(value, where)
    if hint in (int, float, str, bool) and (type(value) is not hint):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def _finite_float(value: Any, where: str) -> float:
    """A float key's value. Ints count, and strings: PyYAML (YAML 1.1) reads 1e-3 without a
    dot as one. NaN and infinities are refused: no setting means them, and one such as
    `train.lr=inf` would only surface later as a diverged or silently broken run."""
    if type(value) not in (int, float, str):
        raise ConfigError(f"{where}: expected float, got {value!r}")
    try:
        number = float(value)
    except (ValueError, OverflowError):  # not a number; or an int beyond the float range
        raise ConfigError(f"{where}: expected float, got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(f"{where}: {value!r} is not a finite number")
    return number


def as_dict(config: Any) -> dict[str, Any]:
    """Plain, YAML/JSON-ready data of a config dataclass (tuples become lists)."""

    def plain(value):
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {config_key(k): plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))
