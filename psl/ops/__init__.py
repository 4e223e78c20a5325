"""The psl operators: a fused log-mel front end and chunk-wise label pooling.

`log_mel` and `chunk_pool` call the compiled kernels (`torch.ops.psl.*`, from
the extension `psl._C`) when it is built, and otherwise the pure-torch
references in `psl.ops.reference`, after a one-time warning.
"""

from __future__ import annotations

import warnings

import torch

from psl.ops import reference
from psl.ops.contract import LOG_MEL_DEFAULTS, LogMelSettings

try:
    from psl import _C
except ImportError as error:  # the extension was not built (or not for this torch)
    _C = None
    _IMPORT_ERROR = error
else:
    _IMPORT_ERROR = None

_warned = False


def native_available() -> bool:
    """Whether the compiled kernels are loaded."""
    return _C is not None


def cuda_kernels_built() -> bool:
    """Whether the loaded extension contains the CUDA kernels."""
    return _C is not None and _C.cuda_kernels_built()


def _use_native() -> bool:
    global _warned
    if _C is None and not _warned:
        _warned = True
        warnings.warn(
            f"psl: the compiled extension psl._C could not be loaded ({_IMPORT_ERROR}); using the slower "
            "pure-torch references. Build it with `pip install --no-build-isolation -e .` in the psl checkout.",
            RuntimeWarning,
            stacklevel=3,
        )
    return _C is not None


def log_mel(
    wave: torch.Tensor,
    lengths: torch.Tensor | None = None,
    *,
    sample_rate: int = LOG_MEL_DEFAULTS.sample_rate,
    n_fft: int = LOG_MEL_DEFAULTS.n_fft,
    win_length: int | None = None,
    hop_length: int = LOG_MEL_DEFAULTS.hop_length,
    n_mels: int = LOG_MEL_DEFAULTS.n_mels,
    f_min: float = LOG_MEL_DEFAULTS.f_min,
    f_max: float | None = LOG_MEL_DEFAULTS.f_max,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Log-mel spectrogram of a batch of clips, fused in one pass.

    Equals torchaudio's ``MelSpectrogram(sample_rate, n_fft, win_length, hop_length,
    f_min, f_max, n_mels)`` (periodic Hann window, power 2, centred frames with
    reflect padding, HTK mel scale, no norm) followed by
    ``AmplitudeToDB("power", top_db=None)``, i.e. ``10 * log10(max(mel, 1e-10))``.
    The default settings are ``psl.ops.contract.LOG_MEL_DEFAULTS`` (the paper's);
    ``win_length=None`` is ``n_fft`` and ``f_max=None`` is ``sample_rate // 2``.

    Args:
        wave: ``[B, N]`` float32, float16, bfloat16 or int16 (scaled by 1/32768).
            The arithmetic is float32 whatever the input type, also under autocast.
        lengths: optional ``[B]`` int64 numbers of valid samples. Clip ``b`` is
            computed as if it were alone at its own length (reflect padding at its
            own end): its ``1 + lengths[b] // hop_length`` frames come first, the
            remaining frames are -100 dB. May stay on the CPU for a CUDA ``wave``.
        out_dtype: float32 (default), bfloat16 or float16.

    Returns:
        ``[B, n_mels, 1 + N // hop_length]`` log-mel energies in dB.

    Raises:
        RuntimeError: bad shapes or dtypes, ``n_fft`` not a power of two, lengths
            outside ``[n_fft // 2 + 1, N]``, or NaN/Inf in a clip (named by index).
    """
    settings = LogMelSettings(sample_rate, n_fft, win_length, hop_length, n_mels, f_min, f_max)
    if _use_native():
        return torch.ops.psl.log_mel.default(wave, lengths, **settings.as_kwargs(), out_dtype=out_dtype)
    return reference.log_mel(wave, lengths, **settings.as_kwargs(), out_dtype=out_dtype)


def chunk_pool(
    frames: torch.Tensor,
    starts: torch.Tensor,
    length: float,
    valid: torch.Tensor | None = None,
    mode: str = "mean",
) -> torch.Tensor:
    """Pools frame-level probabilities over chunks at arbitrary (fractional) offsets.

    Frame ``t`` covers ``[t, t + 1)`` and chunk ``k`` of clip ``b`` covers
    ``[starts[b, k], starts[b, k] + length)``, clipped to ``[0, valid[b])``.

    Args:
        frames: ``[B, T, C]`` float16 (as the label store keeps them), bfloat16 or float32.
        starts: ``[B, K]`` float32/float64 chunk starts in frame units.
        length: chunk length in frames.
        valid: optional ``[B]`` int64 numbers of valid frames (default ``T``).
        mode: ``"mean"``: average of the frames weighted by their overlap with the
            chunk; ``"max"``: maximum over the frames that overlap it.

    Returns:
        ``[B, K, C]`` float32 (accumulated in float32); zeros for a chunk with no
        valid overlap.
    """
    if _use_native():
        return torch.ops.psl.chunk_pool.default(frames, starts, float(length), valid, mode)
    return reference.chunk_pool(frames, starts, float(length), valid, mode)


if _C is not None:
    # The fake kernels describe the output only: the arguments are checked once, by the
    # C++ kernels, and under torch.compile a bad call is refused when the graph runs.

    @torch.library.register_fake("psl::log_mel")
    def _log_mel_fake(
        wave, lengths=None, *, sample_rate, n_fft, win_length, hop_length, n_mels, f_min, f_max, out_dtype=None
    ):
        shape = (wave.shape[0], n_mels, 1 + wave.shape[-1] // hop_length)
        return wave.new_empty(shape, dtype=torch.float32 if out_dtype is None else out_dtype)

    @torch.library.register_fake("psl::chunk_pool")
    def _chunk_pool_fake(frames, starts, length, valid=None, mode="mean"):
        return frames.new_empty((frames.shape[0], starts.shape[-1], frames.shape[-1]), dtype=torch.float32)


__all__ = [
    "LOG_MEL_DEFAULTS",
    "LogMelSettings",
    "chunk_pool",
    "cuda_kernels_built",
    "log_mel",
    "native_available",
    "reference",
]
