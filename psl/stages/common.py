"""What every stage does the same way: resolve its config (profile, file, --set overrides),
find or generate its data. (Opening a model from a checkpoint: psl.checkpoints.)"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from psl.config import ConfigError, build, profile_path, read_yaml
from psl.data.store import ClipStore, is_store

T = TypeVar("T")
DEFAULT_PROFILE = "demo"


@dataclass(frozen=True)
class DataConfig:
    root: str = ""  # a store root; empty: the profile's synthetic benchmark under data/
    train_split: str = "full"
    val_split: str = "val"
    eval_split: str = "eval"
    clip_seconds: float = 10.0  # training items: random crops of this length (whole clips if shorter)

    def __post_init__(self) -> None:
        if not self.clip_seconds > 0:
            raise ValueError(f"clip_seconds must be positive, got {self.clip_seconds}")


@dataclass(frozen=True)
class TrackingConfig:
    log_model: bool = True  # log the best model as an MLflow PyTorch model
    register_as: str = ""  # registered model name; empty: do not register


@dataclass
class Resolved:
    """A stage's config file (or profile) with overrides applied."""

    source: Path
    profile: str | None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The experiment's name in default folders: the profile, or the config file's stem."""
        return self.profile or self.source.stem


def default_out(what: str, resolved: Resolved) -> Path:
    """The one rule for a command's output folder when --out is not given: runs/WHAT-EXPERIMENT
    (runs/teacher-demo, runs/labels-demo, runs/transfer-linear-audioset, ...); commands that
    belong to no experiment write to runs/WHAT (runs/teacher-imported, runs/analysis)."""
    return Path("runs") / f"{what}-{resolved.name}"


def resolve_config(profile: str | None, config: Path | None, overrides: list[str], section: str | None) -> Resolved:
    """Reads `--config` (or the profile's file, `demo` by default) and applies `--set a.b=value`
    to its `section` (to the whole file when `section` is None, as `psl pipeline` does).
    Values are parsed as YAML scalars (3, 1e-3, true, [1, 2])."""
    if profile and config:
        raise ConfigError("give --profile or --config, not both")
    source = Path(config) if config else profile_path(profile or DEFAULT_PROFILE)
    data = read_yaml(source)
    if section is not None and section not in data:
        raise ConfigError(f"{source}: no `{section}:` section")
    target = copy.deepcopy(data if section is None else data[section]) or {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        try:
            set_dotted(target, key, yaml.safe_load(text))
        except yaml.YAMLError as error:
            raise ConfigError(f"--set {key}: cannot parse {text!r}: {error}") from None
    name = None if config else (profile or DEFAULT_PROFILE)
    return Resolved(source, name, target if section is None else {**data, section: target})


def set_dotted(config: dict, key: str, value: Any) -> None:
    """config["a"]["b"] = value for key "a.b", creating sections on the way."""
    node = config
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {part} is not a section")
    node[parts[-1]] = value


def build_section(cls: type[T], resolved: Resolved, section: str) -> T:
    if section not in resolved.data:
        raise ConfigError(f"{resolved.source}: no `{section}:` section")
    return build(cls, resolved.data[section], f"{resolved.source}: {section}")


def data_root(cfg: DataConfig, resolved: Resolved, override: Path | None) -> Path:
    """The store root: --data, else the config's, else the profile's synthetic benchmark
    (generated on first use under data/synth-PROFILE)."""
    if override:
        return Path(override)
    if cfg.root:
        return Path(cfg.root)
    if "synth" not in resolved.data:
        raise ConfigError(f"{resolved.source}: no data root and no `synth:` section to generate one; pass --data")
    from psl.data.synth.config import SynthConfig
    from psl.data.synth.generate import generate

    root = Path("data") / f"synth-{resolved.name}"
    generate(build(SynthConfig, resolved.data["synth"], f"{resolved.source}: synth"), root)
    return root


def open_split(root: Path, split: str) -> ClipStore:
    path = Path(root) / split
    if not is_store(path):
        raise ConfigError(
            f"{root} has no split {split!r} (expected a clip store in {path}); see `psl data info {root}`"
        )
    return ClipStore(path)


def same_classes(stores: dict[str, ClipStore]) -> None:
    first_name, first = next(iter(stores.items()))
    for name, store in stores.items():
        if store.classes != first.classes:
            raise ConfigError(f"splits {first_name} and {name} have different class lists")
