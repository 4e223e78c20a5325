"""Procedural sound-event classes for the synthetic benchmark.

Each class is a function `(rng, n, sr) -> float32[n]` that draws its own parameters
(pitch, rate, spectral shape, envelope) for every instance. Several classes are close
to each other on purpose (tone families, noise colours, chirp directions, bells and
gongs, speech and singing), so that tagging is not trivial. The result is normalised
to unit RMS; the mixer sets the level.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.fft import next_fast_len

EventFn = Callable[[np.random.Generator, int, int], np.ndarray]


def _t(n: int, sr: int) -> np.ndarray:
    return np.arange(n) / sr


def _normalise(x: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    return (x / rms if rms > 0 else x).astype(np.float32)


def _band_noise(rng, n, sr, lo, hi, slope_db_per_octave=0.0) -> np.ndarray:
    """Gaussian noise with a spectrum limited to [lo, hi] Hz and tilted by a slope."""
    m = next_fast_len(n, real=True)  # FFT sizes with small prime factors only
    spec = np.fft.rfft(rng.standard_normal(m))
    f = np.fft.rfftfreq(m, 1 / sr)
    gain = ((f >= lo) & (f <= hi)).astype(np.float64)
    if slope_db_per_octave:
        gain *= (np.maximum(f, 1.0) / 1000.0) ** (slope_db_per_octave / 6.02)
    return np.fft.irfft(spec * gain, m)[:n]


def _harmonics(f0: np.ndarray, sr: int, n_harm: int, rolloff: float, rng) -> np.ndarray:
    """Sum of harmonics of a (possibly time-varying) fundamental f0[n] in Hz."""
    phase = 2 * np.pi * np.cumsum(f0) / sr
    out = np.zeros(len(f0))
    for k in range(1, n_harm + 1):
        out += rolloff ** (k - 1) * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    return out


def _repeat(rng, n, sr, rate_hz, unit: Callable[[int], np.ndarray], jitter=0.1) -> np.ndarray:
    """Places `unit(length)` at a roughly periodic rate. The first one starts within the first
    half of the span, so an event shorter than the period is never silent."""
    out = np.zeros(n)
    period = sr / rate_hz
    pos = rng.uniform(0, min(period, n / 2))
    while pos < n:
        start = int(pos)
        u = unit(n - start)
        out[start : start + len(u)] += u[: n - start]
        pos += period * rng.uniform(1 - jitter, 1 + jitter)
    return out


def _decay(n, sr, tau) -> np.ndarray:
    return np.exp(-_t(n, sr) / tau)


def harmonic_low(rng, n, sr):
    f0 = rng.uniform(100, 250) * np.ones(n)
    return _harmonics(f0, sr, rng.integers(3, 9), rng.uniform(0.5, 0.8), rng)


def harmonic_high(rng, n, sr):
    f0 = rng.uniform(500, 1000) * np.ones(n)
    return _harmonics(f0, sr, rng.integers(2, 6), rng.uniform(0.4, 0.7), rng)


def whistle(rng, n, sr):
    t = _t(n, sr)
    f0 = rng.uniform(1500, 3000) * (1 + 0.01 * np.sin(2 * np.pi * rng.uniform(4, 7) * t))
    return np.sin(2 * np.pi * np.cumsum(f0) / sr)


def _sweep(rng, n, sr, up: bool):
    lo, hi = rng.uniform(200, 500), rng.uniform(2000, 4000)
    period = min(n / sr, rng.uniform(0.3, 1.5))
    frac = (_t(n, sr) % period) / period
    f = lo * (hi / lo) ** (frac if up else 1 - frac)
    return np.sin(2 * np.pi * np.cumsum(f) / sr)


def chirp_up(rng, n, sr):
    return _sweep(rng, n, sr, up=True)


def chirp_down(rng, n, sr):
    return _sweep(rng, n, sr, up=False)


def siren(rng, n, sr):
    t = _t(n, sr)
    center, depth = rng.uniform(700, 1100), rng.uniform(200, 400)
    f = center + depth * np.sin(2 * np.pi * t / rng.uniform(1.0, 3.0))
    phase = 2 * np.pi * np.cumsum(f) / sr
    return np.sin(phase) + 0.3 * np.sin(2 * phase)


def alarm_beep(rng, n, sr):
    t = _t(n, sr)
    gate = (np.sin(2 * np.pi * rng.uniform(2, 6) * t) > 0).astype(np.float64)
    return gate * np.sign(np.sin(2 * np.pi * rng.uniform(2000, 3500) * t)) * 0.5


def pulse_train(rng, n, sr):
    width = int(sr * 0.002)
    return _repeat(rng, n, sr, rng.uniform(5, 20), lambda m: np.hanning(min(width, m)) * 1.0, jitter=0.02)


def clicks(rng, n, sr):
    out = np.zeros(n)
    count = max(1, int(rng.uniform(3, 15) * n / sr))
    out[rng.integers(0, n, count)] = rng.choice([-1.0, 1.0], count)
    return np.convolve(out, np.hanning(int(sr * 0.001) + 2), mode="same")


def white_noise(rng, n, sr):
    return rng.standard_normal(n)


def pink_noise(rng, n, sr):
    return _band_noise(rng, n, sr, 20, sr / 2, -3.0)


def brown_noise(rng, n, sr):
    return _band_noise(rng, n, sr, 20, sr / 2, -6.0)


def band_noise_low(rng, n, sr):
    lo = rng.uniform(150, 300)
    return _band_noise(rng, n, sr, lo, lo * rng.uniform(1.8, 2.5))


def band_noise_high(rng, n, sr):
    lo = rng.uniform(3000, 4500)
    return _band_noise(rng, n, sr, lo, min(lo * rng.uniform(1.3, 1.6), sr / 2 - 100))


def _formant_filter(x, sr, formants) -> np.ndarray:
    """Shapes x with Gaussian resonances (centre, bandwidth in Hz), circularly over a fast FFT size."""
    m = next_fast_len(len(x), real=True)
    spec = np.fft.rfft(x, m)
    f = np.fft.rfftfreq(m, 1 / sr)
    gain = sum(np.exp(-0.5 * ((f - fc) / bw) ** 2) for fc, bw in formants)
    return np.fft.irfft(spec * gain, m)[: len(x)]


def _glottal(rng, n, sr, f0):
    phase = np.cumsum(f0) / sr
    return (phase % 1.0) * 2 - 1  # sawtooth: rich harmonics for the formants to shape


def speech_like(rng, n, sr):
    t = _t(n, sr)
    f0 = rng.uniform(100, 220) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
    vowels = [(rng.uniform(300, 800), 80), (rng.uniform(900, 2200), 120), (rng.uniform(2300, 3000), 150)]
    voiced = _formant_filter(_glottal(rng, n, sr, f0), sr, vowels)
    syllables = np.clip(np.sin(2 * np.pi * rng.uniform(3, 6) * t + rng.uniform(0, 6)), 0, None) ** 0.5
    return voiced * syllables


def singing(rng, n, sr):
    t = _t(n, sr)
    f0 = rng.uniform(200, 500) * (1 + 0.02 * np.sin(2 * np.pi * rng.uniform(5, 6.5) * t))
    vowels = [(rng.uniform(500, 800), 90), (rng.uniform(1000, 1400), 120), (rng.uniform(2500, 3000), 150)]
    return _formant_filter(_glottal(rng, n, sr, f0), sr, vowels)


def bird_chirps(rng, n, sr):
    length = int(sr * rng.uniform(0.04, 0.12))
    lo, hi = rng.uniform(2500, 4000), rng.uniform(4500, 7000)

    def chirplet(m):
        k = min(length, m)
        f = lo + (hi - lo) * np.sin(np.linspace(0, np.pi, k))
        return np.sin(2 * np.pi * np.cumsum(f) / sr) * np.hanning(k)

    return _repeat(rng, n, sr, rng.uniform(3, 10), chirplet, jitter=0.4)


def cricket(rng, n, sr):
    t = _t(n, sr)
    carrier = np.sin(2 * np.pi * rng.uniform(4000, 5000) * t)
    pulses = (np.sin(2 * np.pi * rng.uniform(20, 50) * t) > 0.3).astype(np.float64)
    chirps = (np.sin(2 * np.pi * rng.uniform(1, 3) * t) > -0.2).astype(np.float64)
    return carrier * pulses * chirps


def engine_hum(rng, n, sr):
    t = _t(n, sr)
    f0 = rng.uniform(30, 80) * (1 + 0.02 * np.sin(2 * np.pi * 0.3 * t))
    return _harmonics(f0, sr, 10, 0.85, rng) + 0.3 * _band_noise(rng, n, sr, 20, 400)


def motor_whine(rng, n, sr):
    f0 = np.linspace(rng.uniform(150, 250), rng.uniform(250, 450), n)
    return _harmonics(f0, sr, 6, 0.6, rng) + 0.2 * _band_noise(rng, n, sr, 100, 2000)


def kick_drum(rng, n, sr):
    def kick(m):
        k = min(int(0.25 * sr), m)
        f = 50 + 100 * np.exp(-_t(k, sr) / 0.03)
        return np.sin(2 * np.pi * np.cumsum(f) / sr) * _decay(k, sr, 0.08)

    return _repeat(rng, n, sr, rng.uniform(1.5, 4), kick, jitter=0.01)


def snare_drum(rng, n, sr):
    def snare(m):
        k = min(int(0.2 * sr), m)
        body = np.sin(2 * np.pi * rng.uniform(180, 250) * _t(k, sr)) * _decay(k, sr, 0.03)
        return body + rng.standard_normal(k) * _decay(k, sr, 0.06)

    return _repeat(rng, n, sr, rng.uniform(1.5, 4), snare, jitter=0.01)


def _inharmonic(rng, n, sr, f0, ratios, tau):
    """Inharmonic partials struck at irregular times, each strike ringing out with time constant tau."""
    t = _t(n, sr)
    tone = sum(np.sin(2 * np.pi * f0 * r * t) / (i + 1) for i, r in enumerate(ratios))
    ring = np.zeros(n)
    ring_len = int(min(n, 4 * tau * sr))
    pos = 0.0
    while pos < n:
        start = int(pos)
        k = min(ring_len, n - start)
        ring[start : start + k] = np.maximum(ring[start : start + k], _decay(k, sr, tau))
        pos += sr * 2 * tau * rng.uniform(0.7, 1.3)
    return tone * ring


def bell(rng, n, sr):
    return _inharmonic(rng, n, sr, rng.uniform(600, 1200), [1.0, 2.76, 5.40, 8.93], rng.uniform(0.3, 0.8))


def gong(rng, n, sr):
    return _inharmonic(rng, n, sr, rng.uniform(150, 350), [1.0, 1.52, 2.31, 3.15], rng.uniform(1.0, 2.5))


def water_drip(rng, n, sr):
    def drip(m):
        k = min(int(0.05 * sr), m)
        f = rng.uniform(800, 1500) * np.exp(_t(k, sr) / 0.03)
        return np.sin(2 * np.pi * np.cumsum(np.minimum(f, sr / 2 - 1)) / sr) * _decay(k, sr, 0.012)

    return _repeat(rng, n, sr, rng.uniform(1, 5), drip, jitter=0.6)


def rain(rng, n, sr):
    drops = np.zeros(n)
    count = int(rng.uniform(200, 600) * n / sr)
    drops[rng.integers(0, n, count)] = rng.standard_normal(count)
    return _band_noise(rng, n, sr, 1000, sr / 2, 0.0) * 0.3 + np.convolve(drops, np.hanning(12), mode="same")


def bark(rng, n, sr):
    f0 = rng.uniform(350, 600)

    def woof(m):
        k = min(int(sr * rng.uniform(0.1, 0.2)), m)
        f = f0 * (1 + 0.3 * np.sin(np.linspace(0, np.pi, k)))
        voiced = _formant_filter(_glottal(rng, k, sr, f), sr, [(800, 200), (1600, 300)])
        return voiced * np.hanning(k)

    return _repeat(rng, n, sr, rng.uniform(1.5, 4), woof, jitter=0.3)


def rumble(rng, n, sr):
    return _band_noise(rng, n, sr, 20, rng.uniform(100, 160))


# Classes only in the FSD-like transfer set.
def phone_ring(rng, n, sr):
    t = _t(n, sr)
    f1, f2 = rng.uniform(900, 1100), rng.uniform(1300, 1500)
    tone = np.sin(2 * np.pi * f1 * t) + np.sin(2 * np.pi * f2 * t)
    return tone * (np.sin(2 * np.pi * 20 * t) > 0) * ((t % 3.0) < 1.0)


def typing(rng, n, sr):
    def key(m):
        k = min(int(sr * 0.015), m)
        return _band_noise(rng, k, sr, 2000, 6000) * _decay(k, sr, 0.004)

    return _repeat(rng, n, sr, rng.uniform(5, 9), key, jitter=0.5)


def applause(rng, n, sr):
    claps = np.zeros(n)
    count = int(rng.uniform(30, 80) * n / sr)
    claps[rng.integers(0, n, count)] = 1.0
    burst = _band_noise(rng, int(sr * 0.01), sr, 800, 4000)
    return np.convolve(claps, burst, mode="same")


def flute(rng, n, sr):
    t = _t(n, sr)
    f0 = rng.uniform(400, 900) * (1 + 0.005 * np.sin(2 * np.pi * 5 * t))
    return _harmonics(f0, sr, 3, 0.3, rng) + 0.1 * _band_noise(rng, n, sr, 500, 6000)


def trumpet(rng, n, sr):
    f0 = rng.uniform(230, 500) * np.ones(n)
    return _harmonics(f0, sr, 12, 0.9, rng)


def heartbeat(rng, n, sr):
    def beat(m):
        k = min(int(0.4 * sr), m)
        thump = np.sin(2 * np.pi * 45 * _t(k, sr)) * _decay(k, sr, 0.04)
        second = np.roll(thump, int(0.18 * sr)) * 0.7
        second[: int(0.18 * sr)] = 0
        return thump + second

    return _repeat(rng, n, sr, rng.uniform(1.0, 1.6), beat, jitter=0.05)


# (id, display name, generator). The order is the class index of the benchmark.
EVENT_CLASSES: list[tuple[str, str, EventFn]] = [
    ("speech", "Speech-like formant babble", speech_like),
    ("singing", "Singing (sustained vowel)", singing),
    ("engine", "Engine hum", engine_hum),
    ("siren", "Siren", siren),
    ("bird", "Bird chirps", bird_chirps),
    ("bell", "Bell", bell),
    ("drum_kick", "Kick drum", kick_drum),
    ("white_noise", "White noise", white_noise),
    ("harmonic_low", "Low harmonic tone", harmonic_low),
    ("chirp_up", "Upward chirp", chirp_up),
    ("alarm", "Alarm beeps", alarm_beep),
    ("rain", "Rain", rain),
    ("dog", "Bark", bark),
    ("drum_snare", "Snare drum", snare_drum),
    ("cricket", "Cricket", cricket),
    ("pink_noise", "Pink noise", pink_noise),
    ("harmonic_high", "High harmonic tone", harmonic_high),
    ("chirp_down", "Downward chirp", chirp_down),
    ("gong", "Gong", gong),
    ("motor", "Motor whine", motor_whine),
    ("whistle", "Whistle", whistle),
    ("clicks", "Clicks", clicks),
    ("pulse_train", "Pulse train", pulse_train),
    ("brown_noise", "Brown noise", brown_noise),
    ("band_noise_low", "Low band noise", band_noise_low),
    ("band_noise_high", "Hiss (high band noise)", band_noise_high),
    ("water_drip", "Water drips", water_drip),
    ("rumble", "Rumble", rumble),
]

TRANSFER_ONLY_CLASSES: list[tuple[str, str, EventFn]] = [
    ("phone_ring", "Telephone ring", phone_ring),
    ("typing", "Typing", typing),
    ("applause", "Applause", applause),
    ("flute", "Flute", flute),
    ("trumpet", "Trumpet", trumpet),
    ("heartbeat", "Heartbeat", heartbeat),
]


def render(fn: EventFn, rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """One instance of length n with 10 ms fades, at unit RMS."""
    x = np.asarray(fn(rng, n, sr), dtype=np.float64)[:n]
    fade = min(int(0.01 * sr), n // 2)
    if fade > 0:
        ramp = np.linspace(0.0, 1.0, fade)
        x[:fade] *= ramp
        x[n - fade :] *= ramp[::-1]
    return _normalise(x)
