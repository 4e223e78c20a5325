"""One way to open a model: a run id, a registered model (models:/NAME@ALIAS or
models:/NAME/VERSION) or a checkpoint file becomes a checked tagger, ready to run.

`open_tagger` is what every command and stage calls: it resolves the reference (a path that
does not exist is named as a missing file, never looked up as a run id), loads the file
safely (tensors and plain data only: a file that would run code is refused unrun), builds
the tagger its config snapshot describes after checking the weights against it, and checks
its class list against the stores it will be used on. `open_release` does the same for the
authors' released teacher (psl.models.release knows its format). Writing checkpoints is the
trainer's (psl.trainer.save_atomic); `model_snapshot` is what they carry to be opened here.
"""

from __future__ import annotations

import pickle
import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from psl.config import as_dict, build
from psl.data.classes import ClassList
from psl.data.store import ClipStore
from psl.errors import CheckpointError, LabelMismatch, MissingInput, ReleaseFormatError
from psl.models.release import RELEASE_FILE, RELEASE_MODEL, release_teacher
from psl.models.tagger import AudioTagger, ModelConfig
from psl.provenance import file_sha256


@dataclass
class OpenedTagger:
    model: AudioTagger  # in eval mode, on the device asked for
    config: dict  # the checkpoint's config snapshot (model, class_ids, class_names, ...)
    sha256: str  # of the checkpoint file
    run_id: str | None  # the MLflow run that logged it; None for a file


def open_tagger(
    reference: str | Path,
    device: torch.device | str = "cpu",
    *,
    stores: Iterable[ClipStore] = (),
    role: str = "model",
) -> OpenedTagger:
    """The tagger that `reference` (a checkpoint file, run id or models:/ URI) names, checked
    to tag the classes of each of `stores`; `role` ("model", "teacher") names it in errors."""
    with tempfile.TemporaryDirectory(prefix="psl-model-") as scratch:
        path, run_id = resolve_checkpoint(reference, Path(scratch))
        model, config = load_tagger(path, device)
        sha256 = file_sha256(path)
    for store in stores:
        check_classes(config, store, role)
    return OpenedTagger(model, config, sha256, run_id)


def resolve_checkpoint(reference: str | Path, scratch: Path) -> tuple[Path, str | None]:
    """A checkpoint path, or the best checkpoint of an MLflow run id or of a registered model
    (downloaded into `scratch`); returns (path, run id or None). A reference that is neither an
    existing file nor shaped like a run id or models:/ URI is a MissingInput."""
    from psl import tracking  # here: opening a file needs no MLflow

    reference = str(reference)
    if not tracking.tracked_model(reference):
        return Path(reference), None
    run_id = tracking.run_of_model(reference) if reference.startswith("models:/") else reference
    return tracking.download_checkpoint(run_id, scratch), run_id


def check_classes(config: dict, store: ClipStore, role: str = "model") -> None:
    """A LabelMismatch unless the checkpoint's classes are `store`'s, in order."""
    if list(store.classes.ids) != list(config["class_ids"]):
        raise LabelMismatch(f"the {role}'s {len(config['class_ids'])} classes are not the classes of {store.path}")


def model_snapshot(model_cfg: ModelConfig, class_ids, class_names) -> dict:
    """What a checkpoint needs to rebuild its model without unpickling code."""
    return dict(model=as_dict(model_cfg), class_ids=list(class_ids), class_names=list(class_names))


def load_weights(path: Path, error: type[CheckpointError] = CheckpointError, what: str = "psl checkpoint") -> Any:
    """A file's contents, loaded with torch.load's weights_only: tensors and plain containers,
    no code. A file that would construct other objects when unpickled is refused, not run; any
    other unreadable file (text, arbitrary or cut-short bytes) is one `error` naming it,
    whatever torch.load raised. A missing file stays an OSError, for the caller to name."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # arbitrary bytes make torch warn (an odd "pickle protocol") first
            return torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except pickle.UnpicklingError as failure:
        code = next((line.strip() for line in str(failure).splitlines() if "GLOBAL" in line), None)
        if code is not None:
            raise error(f"{path}: refused: it holds more than tensors and plain data ({code[:300]})") from None
        raise error(f"{path}: not a readable {what} ({_load_failure(failure)})") from None
    except Exception as failure:  # the unpickler fails on arbitrary bytes with any exception (KeyError on text)
        raise error(f"{path}: not a readable {what} ({_load_failure(failure)})") from None


def _load_failure(error: Exception) -> str:
    """What torch.load says went wrong, in one line: the fact, not its advice around it."""
    advice = ("Weights only load failed", "Please file an issue", "Check the documentation")
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    facts = [line for line in lines if not line.startswith(advice)]
    return f"{type(error).__name__}: {facts[0][:300]}" if facts else type(error).__name__


def load_checkpoint(path: Path) -> dict:
    """A checkpoint written by the trainer, loaded safely (load_weights); a CheckpointError
    naming the file for anything that is not one."""
    checkpoint = load_weights(path)
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: not a psl checkpoint (a {type(checkpoint).__name__}, not a dict)")
    return checkpoint


def load_tagger(path: Path, device: torch.device | str = "cpu") -> tuple[AudioTagger, dict]:
    """A tagger from a trainer checkpoint (weights only, no code), with its config snapshot.
    The config and the weights are checked against each other on the meta device before the
    model is built, so a checkpoint that describes an absurd model is refused unallocated."""
    path = Path(path)
    ckpt = load_checkpoint(path)  # any unreadable file is one CheckpointError naming it
    config = ckpt.get("config", {})
    if not isinstance(config, dict) or "model" not in config or "class_ids" not in config:
        raise CheckpointError(f"{path} is not a psl tagger checkpoint (no model config and class list in it)")
    class_ids, class_names = config["class_ids"], config.get("class_names", config["class_ids"])
    if not isinstance(class_ids, list) or not class_ids or not isinstance(class_names, list):
        raise CheckpointError(f"{path}: its class list is not a non-empty list")
    if len(class_names) != len(class_ids):
        raise CheckpointError(f"{path}: {len(class_ids)} class ids but {len(class_names)} class names")
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
        raise CheckpointError(f"{path}: not a psl tagger checkpoint (its `model` entry is not a set of named tensors)")
    try:
        with torch.device("meta"), _LayoutOnly():
            expected = {k: tuple(t.shape) for k, t in AudioTagger(num_classes, cfg).state_dict().items()}
    except (RuntimeError, ValueError, OverflowError, TypeError) as error:  # e.g. sizes beyond int64
        reason = str(error).splitlines()[0][:200]
        raise CheckpointError(f"{path}: its config describes a model that cannot be built ({reason})") from None
    mismatch = _shape_mismatch(expected, {k: tuple(t.shape) for k, t in weights.items()})
    if mismatch:
        raise CheckpointError(f"{path}: weights do not fit the model it describes: {mismatch}")
    broken = next((k for k, t in weights.items() if t.is_floating_point() and not torch.isfinite(t).all()), None)
    if broken is not None:
        raise CheckpointError(f"{path}: weight {broken} holds NaN or Inf values (a diverged run?)")


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


def load_release_teacher(path: Path) -> AudioTagger:
    """The authors' released teacher in `path` as an AudioTagger in eval mode (its class count
    from the file), loaded safely; a ReleaseFormatError naming the file for anything else."""
    return release_teacher(load_weights(Path(path), ReleaseFormatError, "PyTorch file"), Path(path))


def open_release(file: Path, classes: ClassList) -> OpenedTagger:
    """The released teacher for `psl teacher import`, checked to have an output for each of
    AudioSet's `classes`; its config is the snapshot a psl checkpoint of it carries."""
    file = Path(file)
    if not file.is_file():
        raise MissingInput(f"{file} does not exist (the release's file is {RELEASE_FILE})")
    model = load_release_teacher(file)
    if model.num_classes != len(classes):
        raise ReleaseFormatError(f"{file}: {model.num_classes} outputs, but AudioSet has {len(classes)} classes")
    return OpenedTagger(model, model_snapshot(RELEASE_MODEL, classes.ids, classes.names), file_sha256(file), None)
