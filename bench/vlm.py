"""VLM benchmark: a session's chunk close → result latency against the bare ``model.generate`` call.

Both sides run the tiny random Gemma 3 of ``tests/support/tiny_gemma.py`` (built into a temporary
directory and loaded offline through :class:`~modal_workers.vlm_model.VlmModel`; on CUDA when
present, else CPU), greedy, ``MAX_NEW_TOKENS`` tokens per chunk (the tiny model never stops early,
so both sides generate exactly as many):

* ``session``: :class:`~modal_workers.vlm_session.VlmSession` is fed ``CHUNK_FRAMES`` JPEG frames
  per chunk; the chunk closes on its last frame and is run at once. The figure is the result's
  ``latency_ms`` (close → answer): sampling, JPEG decoding, the conversation's messages (earlier
  turns kept up to ``CONTEXT_TOKENS``), the chat template, the processor, ``generate`` and decoding.
* ``bare generate``: ``model.generate`` on the very inputs the session's processor produced for
  each chunk (same prompt, same images), timed alone right after that chunk (interleaved, so load
  from elsewhere on a shared machine hits both sides alike).

The ratio value / baseline is the adapter's and the session's overhead on top of the model. With a
model this small, generation is cheap, so the overhead shows; on a real model it is a far smaller
share. ``BENCH_VLM_CHUNKS`` sets how many chunks each side runs (p99 needs enough of them).
"""

from __future__ import annotations

import io
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Result, median

CHUNKS = int(os.environ.get("BENCH_VLM_CHUNKS", "40"))
CHUNK_FRAMES, MAX_IMAGES, MAX_NEW_TOKENS, CONTEXT_TOKENS = 8, 4, 16, 512
FRAME_SIZE = (320, 240)
NOTES = [
    f"vlm: the tiny random Gemma 3 of tests/support/tiny_gemma.py, {CHUNKS} chunks of {CHUNK_FRAMES} JPEG frames "
    f"({FRAME_SIZE[0]}x{FRAME_SIZE[1]}), {MAX_IMAGES} shown to the model, {MAX_NEW_TOKENS} new tokens, greedy, "
    f"earlier turns kept up to {CONTEXT_TOKENS} tokens. Baseline: model.generate alone on the same inputs, "
    "interleaved chunk by chunk (lower is better; no target: the ratio is the session's and the adapter's "
    "overhead, which a model this small magnifies).",
]


def _env() -> None:
    root = Path(__file__).resolve().parent.parent / ".gpurelay-test"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HOME", str(root / "hf"))


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile of ``values`` (q in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def jpeg_frames(count: int) -> list[bytes]:
    """``count`` distinct JPEG frames of ``FRAME_SIZE``."""
    from PIL import Image

    frames = []
    for k in range(count):
        out = io.BytesIO()
        Image.new("RGB", FRAME_SIZE, (k * 37 % 256, k * 11 % 256, 128)).save(out, format="JPEG", quality=85)
        frames.append(out.getvalue())
    return frames


def bare_generate_ms(model: Any, batch: Any) -> float:
    """Milliseconds of ``model.generate`` alone on ``batch`` (the processor's output)."""
    import torch

    start = time.perf_counter()
    with torch.inference_mode():
        output = model.model.generate(**batch, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
    elapsed = (time.perf_counter() - start) * 1000
    if output.shape[1] - batch["input_ids"].shape[1] != MAX_NEW_TOKENS:
        raise RuntimeError("bare generate stopped early")
    return elapsed


def measure(model: Any, frames: list[bytes], chunks: int) -> tuple[list[float], list[float]]:
    """Per chunk: the session's close → result latency, then bare ``generate`` on the same inputs (ms)."""
    from contracts.session_params import VlmParams
    from modal_workers.vlm_session import VlmSession, decode_frame

    params = VlmParams(
        chunk_frames=CHUNK_FRAMES,
        max_images_per_chunk=MAX_IMAGES,
        max_new_tokens=MAX_NEW_TOKENS,
        context_tokens=CONTEXT_TOKENS,
    )
    session = VlmSession(params, model)
    ours, bare = [], []
    for seq in range(chunks * CHUNK_FRAMES):
        session.add_frame(seq, seq / 30, frames[seq % len(frames)])
        if (chunk := session.next_chunk()) is None:
            continue
        outcome = session.run(chunk)
        if outcome is None or outcome.result["tokens"] != MAX_NEW_TOKENS:
            raise RuntimeError(f"the chunk did not generate {MAX_NEW_TOKENS} tokens: {outcome}")
        ours.append(float(outcome.result["latency_ms"]))
        images = [decode_frame(frame.data) for frame in chunk.frames]
        batch = model.processor(text=model.last_prompt, images=images, return_tensors="pt", add_special_tokens=False)
        bare.append(bare_generate_ms(model, batch.to(model.device, dtype=model.dtype)))
    return ours, bare


def run() -> list[Result]:
    """The VLM latency figures (p50 and p99 over ``CHUNKS`` chunks)."""
    _env()
    from modal_workers.vlm_model import VlmModel
    from tests.support.tiny_gemma import build_tiny_gemma

    with tempfile.TemporaryDirectory(prefix="gpurelay-bench-vlm-") as tmp:
        model = VlmModel.load(str(build_tiny_gemma(Path(tmp))))
        frames = jpeg_frames(CHUNK_FRAMES * 4)
        measure(model, frames, 4)  # warm-up: first kernels, the chat template's compilation
        ours, bare = measure(model, frames, CHUNKS)
    where = "CUDA" if model.device.type == "cuda" else "CPU"
    label = f"tiny Gemma 3 ({where}), {MAX_IMAGES} images, {MAX_NEW_TOKENS} tokens"
    return [
        Result.compare(f"VLM chunk close→result p50, {label}", median(ours), "ms", median(bare)),
        Result.compare(f"VLM chunk close→result p99, {label}", percentile(ours, 99), "ms", percentile(bare, 99)),
    ]


if __name__ == "__main__":
    from bench.common import format_table

    print(format_table(run()))
