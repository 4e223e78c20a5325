"""Experiment configs: YAML files in experiments/, read safely into typed dataclasses.

`--profile NAME` means `experiments/synth-NAME.yaml`. Unknown keys, wrong types and
missing files are errors that name the file and the key, raised before any work starts.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file and key."""


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
    return data


def build(cls: type[T], data: Any, where: str) -> T:
    """Builds dataclass `cls` from plain data, checking keys and types; `where` prefixes errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    values = {name: _coerce(hints[name], value, f"{where}.{name}") for name, value in data.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where}: {error}") from None


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
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
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        # PyYAML (YAML 1.1) reads 1e-3 without a dot as a string.
        try:
            return float(value)
        except ValueError:
            pass
    if hint in (int, float, str, bool) and (type(value) is not hint):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def as_dict(config: Any) -> dict[str, Any]:
    """Plain, YAML/JSON-ready data of a config dataclass (tuples become lists)."""

    def plain(value):
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))
