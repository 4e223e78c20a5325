"""Settings of the synthetic benchmark (the `synth:` section of experiments/synth-*.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field

from psl.data.synth.events import EVENT_CLASSES, TRANSFER_ONLY_CLASSES


@dataclass(frozen=True)
class MissingLabels:
    """A true tag is dropped from the weak label with probability
    `max_drop * max(exp(-duration / short_seconds), 1 / (1 + exp((snr_db - quiet_snr_db) / quiet_width_db)))`
    where `duration` is the class's total event time in the clip and `snr_db` its loudest
    event: short or quiet events are the ones raters miss."""

    max_drop: float = 0.6
    short_seconds: float = 1.0
    quiet_snr_db: float = 0.0
    quiet_width_db: float = 3.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_drop <= 1.0:
            raise ValueError(f"max_drop must be in [0, 1], got {self.max_drop}")
        if self.short_seconds <= 0 or self.quiet_width_db <= 0:
            raise ValueError("short_seconds and quiet_width_db must be positive")


@dataclass(frozen=True)
class TransferSet:
    """The FSD-like transfer set: variable-length clips, written as 44.1 kHz files in the
    FSD50K layout and ingested like the real one."""

    train_clips: int = 200
    val_clips: int = 50
    eval_clips: int = 100
    shared_classes: int = 14  # the first N benchmark classes; the rest are new
    new_classes: int = len(TRANSFER_ONLY_CLASSES)
    seconds: tuple[float, float] = (0.5, 30.0)
    sample_rate: int = 44100
    second_event_probability: float = 0.3

    def __post_init__(self) -> None:
        if not 0 <= self.new_classes <= len(TRANSFER_ONLY_CLASSES):
            raise ValueError(f"new_classes must be in [0, {len(TRANSFER_ONLY_CLASSES)}]")
        if not 0.3 <= self.seconds[0] <= self.seconds[1]:
            raise ValueError(f"seconds must be an increasing pair >= 0.3, got {self.seconds}")


@dataclass(frozen=True)
class SynthConfig:
    seed: int = 0
    num_classes: int = len(EVENT_CLASSES)
    clip_seconds: float = 10.0
    splits: dict[str, int] = field(default_factory=lambda: {"full": 3000, "balanced": 300, "val": 100, "eval": 300})
    events_per_clip: tuple[int, int] = (1, 4)
    event_seconds: tuple[float, float] = (0.2, 10.0)  # log-uniform, capped at the clip length
    snr_db: tuple[float, float] = (-6.0, 20.0)  # event RMS over background RMS
    background_dbfs: tuple[float, float] = (-50.0, -30.0)
    full_class_skew: float = 1.0  # Zipf exponent of the class frequencies in `full` (AudioSet-like)
    missing: MissingLabels = field(default_factory=MissingLabels)
    transfer: TransferSet | None = field(default_factory=TransferSet)

    def __post_init__(self) -> None:
        if not 2 <= self.num_classes <= len(EVENT_CLASSES):
            raise ValueError(f"num_classes must be in [2, {len(EVENT_CLASSES)}], got {self.num_classes}")
        if set(self.splits) != {"full", "balanced", "val", "eval"}:
            raise ValueError(f"splits must name full, balanced, val and eval, got {sorted(self.splits)}")
        if any(n < 1 for n in self.splits.values()):
            raise ValueError("every split needs at least one clip")
        if not 1 <= self.events_per_clip[0] <= self.events_per_clip[1]:
            raise ValueError(f"events_per_clip must be an increasing pair >= 1, got {self.events_per_clip}")
        if not 0 < self.event_seconds[0] <= self.event_seconds[1]:
            raise ValueError(f"event_seconds must be an increasing positive pair, got {self.event_seconds}")
        if self.clip_seconds < 0.5:
            raise ValueError(f"clip_seconds must be >= 0.5, got {self.clip_seconds}")
        if self.transfer is not None and self.transfer.shared_classes > self.num_classes:
            raise ValueError("transfer.shared_classes cannot exceed num_classes")


def load_synth_config(path) -> SynthConfig:
    """The `synth:` section of an experiment YAML file."""
    from psl.config import ConfigError, build, read_yaml

    data = read_yaml(path)
    if "synth" not in data:
        raise ConfigError(f"{path}: no `synth:` section")
    return build(SynthConfig, data["synth"], f"{path}: synth")
