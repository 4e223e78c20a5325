"""What the psl ops take: the log-mel front end's settings and their defaults.

`LOG_MEL_DEFAULTS` is the paper's front end and the only place its values are
written; the op wrappers, the references, `psl.frontend.LogMel` and the C++
schema (which has no defaults) all take them from here.

The arguments themselves are checked once, in C++ (`csrc/ops/log_mel.cpp`,
`csrc/ops/chunk_pool.cpp`), by every compiled backend before it does any work;
the fake kernels only describe the output, so under torch.compile a bad call is
refused by that same check when the graph runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class LogMelSettings:
    """Settings of the log-mel front end (torchaudio's `MelSpectrogram` names).

    The defaults are the paper's: 16 kHz, a 32 ms periodic Hann window (n_fft 512),
    a 10 ms hop, 64 HTK mel bands from 0 Hz to the Nyquist frequency.
    """

    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int | None = None  # None: n_fft (resolved on construction)
    hop_length: int = 160
    n_mels: int = 64
    f_min: float = 0.0
    f_max: float | None = None  # None: sample_rate // 2

    def __post_init__(self) -> None:
        if self.win_length is None:
            object.__setattr__(self, "win_length", self.n_fft)

    def as_kwargs(self) -> dict:
        """The keyword arguments of `torch.ops.psl.log_mel` (all of its settings)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}


LOG_MEL_DEFAULTS = LogMelSettings()
