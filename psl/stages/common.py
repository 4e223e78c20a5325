"""What every stage does the same way: resolve its config (profile, file, --set overrides),
find or generate its data, build and load models from checkpoints."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
import yaml
from torch.overrides import TorchFunctionMode

from psl.config import ConfigError, as_dict, build, profile_path, read_yaml
from psl.data.store import ClipStore, is_store
from psl.models.tagger import AudioTagger, ModelConfig
from psl.train import load_checkpoint

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

    root = Path("data") / f"synth-{resolved.profile or Path(resolved.source).stem}"
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


def model_snapshot(model_cfg: ModelConfig, class_ids, class_names) -> dict:
    """What a checkpoint needs to rebuild its model without unpickling code."""
    return dict(model=as_dict(model_cfg), class_ids=list(class_ids), class_names=list(class_names))


def load_tagger(path: Path, device: torch.device | str = "cpu") -> tuple[AudioTagger, dict]:
    """A tagger from a trainer checkpoint (weights only, no code), with its config snapshot.
    The config and the weights are checked against each other on the meta device before the
    model is built, so a checkpoint that describes an absurd model is refused unallocated."""
    path = Path(path)
    ckpt = load_checkpoint(path)  # any unreadable file is one ValueError naming it
    config = ckpt.get("config", {})
    if not isinstance(config, dict) or "model" not in config or "class_ids" not in config:
        raise ValueError(f"{path} is not a psl tagger checkpoint (no model config and class list in it)")
    class_ids, class_names = config["class_ids"], config.get("class_names", config["class_ids"])
    if not isinstance(class_ids, list) or not class_ids or not isinstance(class_names, list):
        raise ValueError(f"{path}: its class list is not a non-empty list")
    if len(class_names) != len(class_ids):
        raise ValueError(f"{path}: {len(class_ids)} class ids but {len(class_names)} class names")
    cfg = build(ModelConfig, config["model"], f"{path}: model")
    _check_weights(path, ckpt.get("model"), len(class_ids), cfg)
    model = AudioTagger(len(class_ids), cfg)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), {**config, "class_names": class_names}


def _check_weights(path: Path, weights: Any, num_classes: int, cfg: ModelConfig) -> None:
    """The checkpoint's tensors have exactly the names and shapes of the model its config
    describes, and are finite. The model is laid out on the meta device (no memory), so a
    config that asks for petabytes costs nothing; once the shapes match, building the model
    takes no more memory than the checkpoint already did."""
    if not isinstance(weights, dict) or not all(isinstance(t, torch.Tensor) for t in weights.values()):
        raise ValueError(f"{path}: not a psl tagger checkpoint (its `model` entry is not a set of named tensors)")
    try:
        with torch.device("meta"), _LayoutOnly():
            expected = {k: tuple(t.shape) for k, t in AudioTagger(num_classes, cfg).state_dict().items()}
    except (RuntimeError, ValueError, OverflowError, TypeError) as error:  # e.g. sizes beyond int64
        reason = str(error).splitlines()[0][:200]
        raise ValueError(f"{path}: its config describes a model that cannot be built ({reason})") from None
    mismatch = _shape_mismatch(expected, {k: tuple(t.shape) for k, t in weights.items()})
    if mismatch:
        raise ValueError(f"{path}: weights do not fit the model it describes: {mismatch}")
    broken = next((k for k, t in weights.items() if t.is_floating_point() and not torch.isfinite(t).all()), None)
    if broken is not None:
        raise ValueError(f"{path}: weight {broken} holds NaN or Inf values (a diverged run?)")


class _LayoutOnly(TorchFunctionMode):
    """Builds a model's layout without its random init: on the meta device the init's random
    fills are no-ops anyway, but the first one imports torch._dynamo (2-3 s on `psl tag`)."""

    RANDOM_FILLS = {"normal_", "uniform_", "trunc_normal_", "kaiming_normal_", "kaiming_uniform_"}
    RANDOM_FILLS |= {"xavier_normal_", "xavier_uniform_", "orthogonal_"}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") in self.RANDOM_FILLS:
            return args[0] if args else kwargs["tensor"]
        return func(*args, **kwargs)


def _shape_mismatch(expected: dict[str, tuple], found: dict[str, tuple]) -> str | None:
    """The first difference between two {name: shape} tables, in words; None if they agree."""
    for name, shape in expected.items():
        if name not in found:
            return f"{name} is missing"
        if found[name] != shape:
            return f"{name} is {list(found[name])}, the config makes it {list(shape)}"
    unexpected = sorted(set(found) - set(expected))
    return f"{unexpected[0]} is not in the model" if unexpected else None
