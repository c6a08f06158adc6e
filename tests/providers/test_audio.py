"""providers.audio: μ-law vectors, the resampler, streaming exactness, and 20 ms framing.

docs/carriers.md, "Audio: μ-law", "Audio: TTS formats and resampling" and "Test vectors".
"""

from __future__ import annotations

import math
import warnings
from fractions import Fraction
from types import ModuleType

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from providers.audio import (
    FRAME_BYTES,
    SAMPLE_RATE,
    SILENCE_BYTE,
    SILENCE_FRAME,
    FrameBuffer,
    Resampler,
    array_to_pcm16,
    frames,
    pcm16_to_array,
    resample,
    to_telephony,
    ulaw_decode,
    ulaw_encode,
)


def _audioop() -> ModuleType | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import audioop
    except ImportError:  # Python 3.13+ without audioop-lts
        return None
    return audioop


audioop = _audioop()
needs_audioop = pytest.mark.skipif(audioop is None, reason="audioop not available")


def _pcm(values: list[int] | np.ndarray) -> bytes:
    return np.asarray(values, dtype="<i2").tobytes()


def _tone(freq: float, rate: int, seconds: float, amplitude: float = 10000) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return _pcm(np.rint(amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16))


# --- μ-law ------------------------------------------------------------------------------

# Vectors U1-U3 (docs/carriers.md, "Test vectors"): (int16 input, PCM16LE hex, audioop
# μ-law hex, decoded back)
VECTORS = {
    "U1": (
        [0, 1, -1, 2, -2, 4, -4, 8, -8, 16],
        "00000100ffff0200feff0400fcff0800f8ff1000",
        "ffff7eff7efe7efe7efd",
        [0, 0, -8, 0, -8, 8, -8, 8, -8, 16],
    ),
    "U2": (
        [100, -100, 1000, -1000, 4000, -4000, 8159, -8159, 12345, -12345],
        "64009cffe80318fca00f60f0df1f21e03930c7cf",
        "f272ce4eaf2f9f1f9717",
        [104, -104, 988, -988, 4092, -4092, 8316, -8316, 12412, -12412],
    ),
    "U3": (
        [16384, -16384, 32124, -32124, 32635, -32635, 32767, -32768],
        "004000c07c7d84827b7f8580ff7f0080",
        "8f0f800080008000",
        [16764, -16764, 32124, -32124, 32124, -32124, 32124, -32124],
    ),
}


def test_constants() -> None:
    assert (SAMPLE_RATE, FRAME_BYTES, SILENCE_BYTE) == (8000, 160, 0xFF)
    assert SILENCE_FRAME == b"\xff" * 160
    assert ulaw_encode(b"\x00\x00" * 160) == SILENCE_FRAME  # 160 bytes of 0xFF


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_ulaw_vectors(name: str) -> None:
    values, pcm_hex, ulaw_hex, decoded = VECTORS[name]
    pcm = bytes.fromhex(pcm_hex)
    assert _pcm(values) == pcm
    assert ulaw_encode(pcm).hex() == ulaw_hex
    assert ulaw_encode(np.array(values, dtype=np.int16)).hex() == ulaw_hex
    assert ulaw_decode(bytes.fromhex(ulaw_hex)) == _pcm(decoded)
    assert pcm16_to_array(ulaw_decode(bytes.fromhex(ulaw_hex))).tolist() == decoded


def test_encoder_is_the_audioop_variant_not_the_classic_one() -> None:
    # audioop floor-shifts first, so -1 and -2 land one step lower than classic G.711
    # (docs/carriers.md, "Audio: μ-law").
    assert ulaw_encode(_pcm([-1, -2, -31611])) == bytes([0x7E, 0x7E, 0x00])


def test_decode_extremes_and_both_zero_codes() -> None:
    decoded = pcm16_to_array(ulaw_decode(bytes([0xFF, 0x7F, 0x80, 0x00])))
    assert decoded.tolist() == [0, 0, 32124, -32124]


def test_round_trip_over_all_256_codes() -> None:
    codes = bytes(range(256))
    back = ulaw_encode(ulaw_decode(codes))
    expected = bytearray(codes)
    expected[0x7F] = 0xFF  # negative zero decodes to 0, which encodes as (positive) 0xFF
    assert back == bytes(expected)


@needs_audioop
def test_matches_audioop_on_every_int16_and_every_code() -> None:
    assert audioop is not None
    every = np.arange(-32768, 32768, dtype=np.int16).tobytes()
    assert ulaw_encode(every) == audioop.lin2ulaw(every, 2)
    assert ulaw_decode(bytes(range(256))) == audioop.ulaw2lin(bytes(range(256)), 2)


@needs_audioop
@given(st.binary(max_size=2000).map(lambda b: b[: len(b) // 2 * 2]), st.binary(max_size=500))
def test_matches_audioop_on_random_data(pcm: bytes, ulaw: bytes) -> None:
    assert audioop is not None
    assert ulaw_encode(pcm) == audioop.lin2ulaw(pcm, 2)
    assert ulaw_decode(ulaw) == audioop.ulaw2lin(ulaw, 2)


def test_encode_rejects_half_samples_and_non_int16_arrays() -> None:
    with pytest.raises(ValueError):
        ulaw_encode(b"\x00\x00\x00")
    with pytest.raises(TypeError):
        ulaw_encode(np.zeros(4, dtype=np.float32))
    assert ulaw_encode(b"") == b"" and ulaw_decode(b"") == b""


def test_pcm16_array_helpers_clip_round_and_are_little_endian() -> None:
    assert array_to_pcm16(np.array([40000, -40000, 5])) == _pcm([32767, -32768, 5])
    assert array_to_pcm16(np.array([1.6, -1.6, 1e9])) == _pcm([2, -2, 32767])
    assert array_to_pcm16(np.array([1], dtype=np.int16)) == b"\x01\x00"
    arr = pcm16_to_array(b"\x01\x00\xff\xff")
    assert arr.dtype == np.int16 and arr.tolist() == [1, -1]


# --- resampler: the plugin's own tests (docs/carriers.md, "Audio: TTS formats and resampling") ---


def test_8k_input_comes_back_unchanged() -> None:
    pcm = _tone(440, 8000, 0.1)
    assert resample(pcm, 8000) == pcm
    assert resample(pcm + b"\x01", 8000, 8000) == pcm + b"\x01"
    r = Resampler(8000)
    assert r.process(pcm[:11]) + r.process(pcm[11:]) + r.flush() == pcm


def test_0_6_s_of_48k_becomes_9600_bytes() -> None:
    assert len(resample(_tone(440, 48000, 0.6), 48000)) == 9600


@pytest.mark.parametrize("rate", [24000, 48000, 22050])
def test_6khz_tone_is_attenuated_below_10_percent_of_1khz(rate: int) -> None:
    def rms(freq: float) -> float:
        out = pcm16_to_array(resample(_tone(freq, rate, 0.5), rate)).astype(float)[40:-40]
        return float(np.sqrt(np.mean(out**2)))

    low, high = rms(1000), rms(6000)
    assert low > 0.9 * 10000 / math.sqrt(2)  # the pass band keeps its level
    assert high < 0.1 * low


def test_0_5_s_of_24k_becomes_4000_ulaw_bytes() -> None:
    out = to_telephony(_tone(440, 24000, 0.5), 24000)
    assert len(out) == 4000
    assert out == ulaw_encode(resample(_tone(440, 24000, 0.5), 24000))


# --- resampler: agreement with the plugin's formula, streaming exactness --------------------


def _reference(samples: list[int], src: int, dst: int) -> list[int]:
    """Float port of the plugin's resampler, positions taken as exact fractions."""
    ratio = src / dst
    fc = max(0.01, (0.5 / ratio if ratio > 1 else 0.5) * 0.94)
    out = []
    for i in range(len(samples) * dst // src):
        pos = Fraction(i * src, dst)
        center = math.floor(pos)
        weighted = total = 0.0
        for tap in range(-15, 16):
            j = center + tap
            if 0 <= j < len(samples):
                x = 2 * fc * float(j - pos)
                low_pass = 2 * fc * (math.sin(math.pi * x) / (math.pi * x) if x else 1.0)
                coeff = low_pass * (0.5 - 0.5 * math.cos(2 * math.pi * (tap + 15) / 30))
                weighted += samples[j] * coeff
                total += coeff
        out.append(max(-32768, min(32767, math.floor(weighted / total + 0.5))))
    return out


@pytest.mark.parametrize(
    "src,dst",
    [(24000, 8000), (22050, 8000), (48000, 8000), (16000, 8000), (8000, 16000), (8000, 24000)],
)
def test_matches_the_reference_formula_within_one_lsb(src: int, dst: int) -> None:
    rng = np.random.default_rng(src + dst)
    samples = rng.integers(-32768, 32768, 900).tolist()
    samples[100:140] = [32767] * 40  # overshoot must clip, not wrap
    ours = pcm16_to_array(resample(_pcm(samples), src, dst)).astype(int)
    ref = np.array(_reference(samples, src, dst))
    assert ours.size == ref.size == 900 * dst // src
    assert np.abs(ours - ref).max() <= 1
    assert np.mean(ours == ref) > 0.99


@given(st.integers(1, 5000), st.sampled_from([24000, 16000, 48000, 22050, 44100, 11025]))
def test_output_length_is_floor_of_n_over_ratio(n: int, src: int) -> None:
    assert len(resample(b"\x00\x10" * n, src)) == 2 * (n * 8000 // src)


@settings(max_examples=60)
@given(
    st.integers(1, 40),
    st.integers(-32768, 32767),
    st.sampled_from([(24000, 8000), (22050, 8000), (48000, 8000), (8000, 16000)]),
)
def test_constant_input_stays_constant_up_to_both_stream_edges(
    n: int, value: int, rates: tuple[int, int]
) -> None:
    out = pcm16_to_array(resample(_pcm([value] * n), *rates))
    assert out.size == n * rates[1] // rates[0]
    assert (out == value).all()


@st.composite
def _chunked(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    n = draw(st.integers(0, 3000))
    seed = draw(st.integers(0, 2**32 - 1))
    data = np.random.default_rng(seed).integers(-32768, 32768, n).astype("<i2").tobytes()
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    return data, cuts


@settings(max_examples=60, deadline=None)
@given(_chunked(), st.sampled_from([24000, 16000, 48000, 22050]))
def test_chunked_processing_equals_one_shot(case: tuple[bytes, list[int]], src: int) -> None:
    data, cuts = case
    r = Resampler(src)
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    streamed = b"".join(r.process(p) for p in pieces) + r.flush()
    assert streamed == resample(data, src)


@pytest.mark.parametrize("src", [24000, 22050])
def test_odd_byte_chunks_keep_the_stray_byte(src: int) -> None:
    data = _tone(1000, src, 0.05) + _tone(3000, src, 0.05)
    r = Resampler(src)
    streamed = b"".join(r.process(data[i : i + 7]) for i in range(0, len(data), 7)) + r.flush()
    assert streamed == resample(data, src)
    one_byte = Resampler(src)
    by_byte = b"".join(one_byte.process(data[i : i + 1]) for i in range(len(data)))
    assert by_byte + one_byte.flush() == streamed


def test_streams_instead_of_waiting_for_flush() -> None:
    r = Resampler(24000)
    chunk = _tone(1000, 24000, 0.02)  # 480 samples -> 160 out, 5 held back for the last taps
    first = r.process(chunk)
    assert len(first) == 2 * (160 - 5)
    assert len(r.process(chunk)) == 2 * 160
    assert len(r.flush()) == 2 * 5


def test_a_fresh_resampler_per_chunk_differs_but_one_stream_does_not() -> None:
    data = _tone(1000, 24000, 0.1)
    chunks = [data[i : i + 960] for i in range(0, len(data), 960)]
    stateless = b"".join(resample(c, 24000) for c in chunks)
    r = Resampler(24000)
    streamed = b"".join(r.process(c) for c in chunks) + r.flush()
    assert streamed == resample(data, 24000) != stateless


def test_flush_resets_for_the_next_stream() -> None:
    data = _tone(700, 22050, 0.03) + b"\x05"
    r = Resampler(22050)
    first = r.process(data) + r.flush()
    assert r.process(data[:-1]) + r.flush() == first == resample(data[:-1], 22050)
    assert r.flush() == b""


def test_rejects_non_positive_rates() -> None:
    with pytest.raises(ValueError):
        Resampler(0)


# --- framing (docs/carriers.md, "Audio: μ-law") ---------------------------------------------


def test_frames_split_and_pad_the_last_with_silence() -> None:
    assert frames(b"") == []
    data = bytes(range(256)) + bytes(64)
    assert frames(data) == [data[:160], data[160:]]
    [one, two] = frames(data[:161])
    assert one == data[:160] and two == b"\xa0" + b"\xff" * 159
    assert frames(b"\x01\x02\x03", size=2) == [b"\x01\x02", b"\x03\xff"]
    with pytest.raises(ValueError):
        frames(b"x", size=0)


def test_frame_buffer_keeps_the_remainder() -> None:
    fb = FrameBuffer()
    assert fb.push(b"\x01" * 100) == []
    assert fb.push(b"\x02" * 100) == [b"\x01" * 100 + b"\x02" * 60]
    assert len(fb) == 40
    assert fb.push(b"\x03" * 320) == [b"\x02" * 40 + b"\x03" * 120, b"\x03" * 160]
    assert fb.flush() == [b"\x03" * 40 + b"\xff" * 120]
    assert fb.flush() == [] and len(fb) == 0
    assert fb.push(SILENCE_FRAME) == [SILENCE_FRAME]


@given(st.lists(st.binary(max_size=400), max_size=10), st.integers(1, 200))
def test_frame_buffer_equals_framing_the_whole_stream(chunks: list[bytes], size: int) -> None:
    fb = FrameBuffer(size)
    out = [frame for chunk in chunks for frame in fb.push(chunk)] + fb.flush()
    assert out == frames(b"".join(chunks), size)
    assert all(len(frame) == size for frame in out)
