"""Test media with real speech: sentences spoken by espeak-ng at known times, muxed into video.

Used by the tests, the speech benchmark and ``videoseek sample``. Speech synthesis needs the
``espeak-ng`` program (Debian/Ubuntu: ``apt-get install espeak-ng``; macOS: ``brew install
espeak-ng``); :func:`espeak_available` tells whether it is here.

- :func:`espeak_available` - is ``espeak-ng`` on the PATH.
- :func:`speak` - one sentence -> mono float32 samples at 16 kHz.
- :func:`write_spoken_video` - a video (frames from :mod:`agent_tools.synthetic`) whose AAC
  audio track says each ``(start_seconds, sentence)`` at that time.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InvalidArgumentError

__all__ = ["espeak_available", "speak", "write_spoken_video", "AUDIO_RATE", "SAMPLE_TALK"]

AUDIO_RATE = 16000

#: What ``videoseek sample``'s talk.mp4 says: one sentence per 20 s slide, 2 s after it appears.
SAMPLE_TALK = [
    "Welcome to the quarterly review of the travel and operations team.",
    "Revenue grew by twelve percent compared with the last quarter.",
    "Travel expenses were cut by twenty percent this quarter.",
    "The new office in Berlin opens in March next year.",
    "We will hire four new engineers for the data platform.",
    "Customer support now answers most tickets within two hours.",
    "The server outage on Monday lasted almost three hours.",
    "Passwords must now be changed every ninety days.",
    "The marketing budget stays the same as last year.",
    "Our biggest risk is the delay of the mobile application.",
    "Please send your questions to the finance team by Friday.",
    "Thank you all, and see you at the next review.",
]


def espeak_available() -> bool:
    """True when the ``espeak-ng`` program is installed."""
    return shutil.which("espeak-ng") is not None


def speak(sentence: str, voice: str = "en-us", words_per_minute: int = 165) -> np.ndarray:
    """Synthesise ``sentence`` with espeak-ng.

    Returns:
        Mono float32 samples in [-1, 1] at :data:`AUDIO_RATE`.

    Raises:
        InvalidArgumentError: espeak-ng is not installed.
    """
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise InvalidArgumentError("speech synthesis needs the espeak-ng program (apt-get install espeak-ng)")
    raw = subprocess.run(
        [exe, "-v", voice, "-s", str(words_per_minute), "--stdout", sentence],
        check=True, capture_output=True, timeout=60,
    ).stdout
    with wave.open(io.BytesIO(raw)) as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768.0
    if rate != AUDIO_RATE:
        pcm = _resample(pcm, rate)
    return pcm


def _resample(pcm: np.ndarray, rate: int) -> np.ndarray:
    """Mono float32 at ``rate`` -> :data:`AUDIO_RATE`, with PyAV's (libswresample) resampler."""
    import av

    frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1).astype(np.float32), format="flt", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE)
    chunks = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def write_spoken_video(
    path: str | Path,
    duration: float,
    sentences: Sequence[tuple[float, str]],
    fps: int = 5,
    size: tuple[int, int] = (160, 120),
    seed: int = 0,
    scene_seconds: float = 10.0,
) -> Path:
    """Write an H.264 + AAC video that speaks each sentence at its start time.

    Args:
        path: Output ``.mp4``.
        duration: Seconds of video and audio.
        sentences: ``(start_seconds, text)`` pairs; they must fit in ``duration`` and not overlap.
        fps: Video frame rate (frames from :func:`agent_tools.synthetic.render_frame`).
        size: ``(width, height)``.
        seed: Scene palette seed.
        scene_seconds: Scene length of the picture.

    Returns:
        The path written.

    Raises:
        InvalidArgumentError: A sentence does not fit or overlaps the next one.
    """
    import av

    from ..synthetic import render_frame

    n = int(round(duration * AUDIO_RATE))
    track = np.zeros(n, np.float32)
    last_end = -1.0
    for start, text in sorted(sentences):
        pcm = speak(text)
        a = int(round(start * AUDIO_RATE))
        if start < last_end or a + len(pcm) > n:
            raise InvalidArgumentError(
                f"sentence at {start:.1f}s ({len(pcm) / AUDIO_RATE:.1f}s long) overlaps the previous one "
                f"or runs past the {duration:.1f}s video"
            )
        track[a : a + len(pcm)] = pcm
        last_end = start + len(pcm) / AUDIO_RATE
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.options = {"preset": "veryfast", "g": str(fps * 10)}
        aus = out.add_stream("aac", rate=AUDIO_RATE)
        aus.layout = "mono"
        frames = int(round(duration * fps))
        for i in range(frames):
            rgb = render_frame(i, i / fps, width, height, scene_seconds, seed)
            vf = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            vf.pts = i
            vf.time_base = Fraction(1, fps)
            for pkt in vs.encode(vf):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
        step = 1024
        for i in range(0, n, step):
            chunk = track[i : i + step]
            af = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="flt", layout="mono")
            af.sample_rate = AUDIO_RATE
            af.pts = i
            af.time_base = Fraction(1, AUDIO_RATE)
            for pkt in aus.encode(af):
                out.mux(pkt)
        for pkt in aus.encode():
            out.mux(pkt)
    return path

