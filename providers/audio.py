"""Telephony audio: G.711 μ-law tables, a streaming resampler, 20 ms framing. numpy only.

Carriers (Twilio, Telnyx PCMU, Plivo mulaw) speak 8 kHz mono μ-law in 160-byte frames;
TTS engines return PCM16 at 16/22.05/24/48 kHz. This module converts between the two
without Django, per 20 ms frame, so everything is table- or array-based
(docs/carriers.md, "Audio: μ-law" and "Audio: TTS formats and resampling").
"""

from __future__ import annotations

from functools import lru_cache
from math import gcd

import numpy as np

SAMPLE_RATE = 8000
FRAME_BYTES = 160  # 20 ms of 8 kHz μ-law, one byte per sample (docs/carriers.md, "Audio: μ-law")
SILENCE_BYTE = 0xFF  # μ-law code of 0: bits are inverted on the wire, so silence is all ones
SILENCE_FRAME: bytes = bytes([SILENCE_BYTE]) * FRAME_BYTES

_PCM16 = np.dtype("<i2")  # PCM16 is little-endian on every wire and API we talk to


# --- G.711 μ-law (docs/carriers.md, "Audio: μ-law") --------------------------------------


def _build_encode_table() -> np.ndarray:
    """μ-law code for every int16 sample, indexed by the sample's uint16 bit pattern.

    Classic G.711 adds BIAS 132 (0x84) to |x| so that every segment starts at a power of
    two (the exponent is then just the position of the top bit), and clips |x| at 32635 so
    that |x| + BIAS still fits the top segment (32635 + 132 = 32767). Tests must pick one
    encoder, and we match `audioop.lin2ulaw`, which runs the same algorithm in the 14-bit
    domain: floor-shift the sample right by 2 *before* taking the sign, then BIAS
    132>>2 = 33 and CLIP 8159 (= ceil(32635 / 4)). That differs from the classic form for
    381 negative inputs (e.g. -1 -> 0x7E, not 0x7F); decoders agree
    (docs/carriers.md, "Audio: μ-law").
    """
    x = np.arange(1 << 16, dtype=np.uint16).view(np.int16).astype(np.int32) >> 2
    negative = x < 0
    mag = np.minimum(np.where(negative, -x, x), 8159) + 33
    # Segment = first e with mag <= 2^(e+6) - 1 (audioop's seg_uend); e == 8 only for the
    # clipped maximum 8159 + 33 = 8192, which audioop maps to the largest code 0x7F.
    seg_ends = np.array([(1 << (e + 6)) - 1 for e in range(8)], dtype=np.int32)
    seg = np.searchsorted(seg_ends, mag, side="left")
    seg7 = np.minimum(seg, 7)
    code = np.where(seg >= 8, 0x7F, (seg7 << 4) | ((mag >> (seg7 + 1)) & 0x0F))
    # Wire format inverts every bit; the sign bit (0x80) is set for *positive* samples then.
    return (code ^ np.where(negative, 0x7F, 0xFF)).astype(np.uint8)


def _build_decode_table() -> np.ndarray:
    """Sample for each of the 256 codes: mag = ((mantissa << 3) + 132) << exponent - 132.

    The decoder reconstructs the middle of the quantization step and removes the encoder's
    bias again (docs/carriers.md, "Audio: μ-law"); 0xFF and 0x7F both give 0.
    """
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    mag = (((u & 0x0F) << 3) + 0x84 << exponent) - 0x84
    return np.where(u & 0x80, -mag, mag).astype(_PCM16)


_ENCODE = _build_encode_table()
_DECODE = _build_decode_table()


def pcm16_to_array(data: bytes) -> np.ndarray:
    """PCM16 LE bytes as an int16 array (a copy-free view where possible)."""
    if len(data) % 2:
        raise ValueError("PCM16 data must be a whole number of 2-byte samples")
    return np.frombuffer(data, dtype=_PCM16).astype(np.int16, copy=False)


def array_to_pcm16(samples: np.ndarray) -> bytes:
    """Samples as PCM16 LE bytes; floats are rounded, everything is clipped to int16."""
    arr = np.asarray(samples)
    if arr.dtype.kind == "f":
        arr = np.rint(arr)
    return np.clip(arr, -32768, 32767).astype(_PCM16).tobytes()


def ulaw_encode(pcm: bytes | np.ndarray) -> bytes:
    """PCM16 LE mono (bytes or int16 array) -> μ-law, bit-exact with audioop.lin2ulaw."""
    samples = pcm if isinstance(pcm, np.ndarray) else pcm16_to_array(bytes(pcm))
    if samples.dtype != np.int16:
        raise TypeError(f"ulaw_encode needs int16 samples, got {samples.dtype}")
    return _ENCODE[samples.view(np.uint16)].tobytes()


def ulaw_decode(data: bytes) -> bytes:
    """μ-law -> PCM16 LE bytes, bit-exact with audioop.ulaw2lin."""
    return _DECODE[np.frombuffer(data, dtype=np.uint8)].tobytes()


# --- Resampling (docs/carriers.md, "Audio: TTS formats and resampling") -------------------

TAPS = 31
_HALF = TAPS // 2
_OFFSETS = np.arange(-_HALF, _HALF + 1, dtype=np.int64)
# Kernel weights are fixed-point integers (held in float64): every product and partial sum
# is then an integer below 2^53, computed exactly in any order, so the output cannot depend
# on how the input was split into chunks. 2^30 keeps the quantization error far below one
# output LSB and the accumulator (|sum| <= 31 * 2^15 * 2^30 < 2^50) exact.
_SCALE = 1 << 30


@lru_cache(maxsize=32)
def _kernel(src_rate: int, dst_rate: int) -> np.ndarray:
    """Integer-valued float64 weights, shape (phases, 31), for output positions i*src/dst.

    Output sample i sits at input position i * ratio (ratio = src/dst); its fractional part
    takes `dst/gcd` distinct values, one kernel row each. The plugin's design (docs/carriers.md,
    "Audio: TTS formats and resampling"): a
    windowed-sinc low-pass, 2fc·sinc(2fc·d), at distance d from that position, with
    cutoff fc = min(0.5, 0.5/ratio) x 0.94 cycles per input sample (below the output
    Nyquist when downsampling, the 0.94 guard leaves room for the transition band; floor
    0.01), over the 31 input samples floor(position)-15 .. +15, times a Hann window
    0.5 - 0.5cos(2πk/30) over the tap index k to tame the truncated sinc's ripple.
    """
    g = gcd(src_rate, dst_rate)
    phases = dst_rate // g
    ratio = src_rate / dst_rate
    fc = max(0.01, min(0.5, 0.5 / ratio) * 0.94)
    frac = np.arange(phases) / phases  # row p: position i*ratio with (i*src/g) % phases == p
    distance = _OFFSETS[None, :] - frac[:, None]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(TAPS) / (TAPS - 1))
    weights = 2 * fc * np.sinc(2 * fc * distance) * window
    # Rows are normalized to unit DC gain here and again per output (by the sum of the taps
    # actually used), exactly as the plugin divides by the weight sum at the edges.
    weights /= weights.sum(axis=1, keepdims=True)
    table = np.rint(weights * _SCALE)
    table.flags.writeable = False  # shared between resamplers by the cache
    return table


class Resampler:
    """Stateful streaming resampler for PCM16 LE mono.

    Output sample i is produced as soon as its whole 31-sample window has arrived, so
    `process` calls over any split of the input, followed by `flush`, return exactly the
    bytes of one `process(all) + flush()`. The stream starts and ends like the plugin's
    one-shot resampler: taps before the first or after the last sample are left out and
    the rest renormalized. `flush` ends the stream (emitting the tail up to
    floor(samples / ratio) outputs) and resets the resampler for a new one.
    """

    def __init__(self, src_rate: int, dst_rate: int = SAMPLE_RATE) -> None:
        if src_rate <= 0 or dst_rate <= 0:
            raise ValueError("sample rates must be positive")
        self.src_rate = int(src_rate)
        self.dst_rate = int(dst_rate)
        g = gcd(self.src_rate, self.dst_rate)
        self._up, self._down = self.dst_rate // g, self.src_rate // g
        self._weights = _kernel(self.src_rate, self.dst_rate)
        self._totals = self._weights.sum(axis=1).astype(np.int64)
        self._reset()

    def _reset(self) -> None:
        self._stray = b""  # odd trailing byte of the last chunk: half a sample
        # Input samples still needed, led by 15 zeros so every window has an index (the
        # zeros get zero weight below); _base is the absolute index of _buf[0].
        self._buf = np.zeros(_HALF)
        self._base = -_HALF
        self._count = 0  # input samples received
        self._next = 0  # next output index

    def process(self, pcm16: bytes) -> bytes:
        """Feed any number of bytes; returns the PCM16 output samples that are now final."""
        data = self._stray + bytes(pcm16)
        whole = len(data) - len(data) % 2
        self._stray = data[whole:]
        if self.src_rate == self.dst_rate:
            return data[:whole]
        new = np.frombuffer(data, dtype=_PCM16, count=whole // 2)
        self._buf = np.concatenate((self._buf, new))
        self._count += new.size
        up, down, n = self._up, self._down, self._count
        # Ready: last tap floor(i*down/up) + 15 <= n - 1, and (i + 1) * ratio <= n, so that
        # no sample is emitted that floor(total / ratio) would not include.
        window_ready = ((n - _HALF) * up - 1) // down + 1
        return self._emit(min(window_ready, n * up // down), end=None)

    def flush(self) -> bytes:
        """End of stream: the remaining outputs (a stray odd byte is dropped); then reset."""
        out = b""
        if self.src_rate != self.dst_rate:
            self._buf = np.concatenate((self._buf, np.zeros(_HALF)))
            out = self._emit(self._count * self._up // self._down, end=self._count)
        self._reset()
        return out

    def _emit(self, stop: int, end: int | None) -> bytes:
        if stop <= self._next:
            return b""
        positions = np.arange(self._next, stop, dtype=np.int64) * self._down
        centers, phases = np.divmod(positions, self._up)  # input index, fraction * up
        last = self._count if end is None else end
        start = int(centers[0]) - _HALF - self._base  # first tap of the first window in _buf
        if self._up == 1 and centers[0] >= _HALF and centers[-1] + _HALF < last:
            # Integer ratio, no stream edge: the windows are a strided view of _buf (step
            # `down` samples), one matrix-vector product, no copies.
            step = self._buf.strides[0]
            windows = np.lib.stride_tricks.as_strided(
                self._buf[start:], shape=(centers.size, TAPS), strides=(self._down * step, step)
            )
            acc = (windows @ self._weights[0]).astype(np.int64)
            total = self._totals[phases]
        else:
            windows = self._buf[(centers - self._base)[:, None] + _OFFSETS]
            weights, total = self._weights[phases], self._totals[phases]
            if centers[0] < _HALF or centers[-1] + _HALF >= last:
                # Taps outside the stream are left out and the rest renormalized, as in the
                # plugin's resampler.
                taps = centers[:, None] + _OFFSETS
                weights = weights * ((taps >= 0) & (taps < last))
                total = weights.sum(axis=1).astype(np.int64)  # > 0: main lobe always inside
            acc = np.einsum("ij,ij->i", windows, weights).astype(np.int64)
        # Integer-valued float64 below 2^53 is exact in any summation order; then
        # floor(acc/total + 1/2) in integers = the plugin's Math.round(weighted / sum).
        out = (2 * acc + total) // (2 * total)
        self._next = stop
        keep = (stop * self._down) // self._up - _HALF  # first tap of the next output
        self._buf = self._buf[keep - self._base :]
        self._base = keep
        return np.minimum(np.maximum(out, -32768), 32767).astype(_PCM16).tobytes()


def resample(pcm16: bytes, src_rate: int, dst_rate: int = SAMPLE_RATE) -> bytes:
    """One-shot resample: floor(samples / ratio) output samples; same rate -> unchanged."""
    if src_rate == dst_rate:
        return bytes(pcm16)
    resampler = Resampler(src_rate, dst_rate)
    return resampler.process(pcm16) + resampler.flush()


def to_telephony(pcm16: bytes, src_rate: int) -> bytes:
    """PCM16 at any rate -> 8 kHz μ-law, ready for `frames`."""
    return ulaw_encode(resample(pcm16, src_rate, SAMPLE_RATE))


# --- 20 ms framing (docs/carriers.md, "Audio: μ-law") --------------------------------------


def frames(ulaw: bytes, size: int = FRAME_BYTES) -> list[bytes]:
    """Split μ-law into `size`-byte frames, the last one padded with silence (0xFF)."""
    if size <= 0:
        raise ValueError("frame size must be positive")
    data = bytes(ulaw)
    out = [data[i : i + size] for i in range(0, len(data), size)]
    if out and len(out[-1]) < size:
        out[-1] = out[-1].ljust(size, bytes([SILENCE_BYTE]))
    return out


class FrameBuffer:
    """Collects streamed μ-law bytes and hands out whole frames, keeping the remainder."""

    def __init__(self, size: int = FRAME_BYTES) -> None:
        if size <= 0:
            raise ValueError("frame size must be positive")
        self.size = size
        self._pending = bytearray()

    def __len__(self) -> int:
        return len(self._pending)

    def push(self, data: bytes) -> list[bytes]:
        self._pending += data
        whole = len(self._pending) - len(self._pending) % self.size
        out = [bytes(self._pending[i : i + self.size]) for i in range(0, whole, self.size)]
        del self._pending[:whole]
        return out

    def flush(self) -> list[bytes]:
        out = frames(bytes(self._pending), self.size)
        self._pending.clear()
        return out
