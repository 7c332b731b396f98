"""VLM benchmark: a session's chunk close → result latency against the bare ``model.generate`` call.

Both sides run the tiny random Gemma 3 of ``bench/harness/tiny_gemma.py`` (built into a temporary
directory and loaded offline through :class:`~modal_workers.vlm.model.VlmModel`; on CUDA when
present, else CPU), greedy, ``MAX_NEW_TOKENS`` tokens per chunk (the tiny model never stops early,
so both sides generate exactly as many):

* ``session``: :class:`~modal_workers.vlm.session.VlmSession` is fed ``CHUNK_FRAMES`` JPEG frames
  per chunk; the chunk closes on its last frame and is run at once. The figure is the result's
  ``latency_ms`` (close → answer): sampling, JPEG decoding, the conversation's messages (earlier
  turns kept up to ``CONTEXT_TOKENS``), the chat template, the processor, ``generate`` and decoding.
* ``bare generate``: ``model.generate`` on the very inputs the session's processor produced for
  each chunk (same prompt, same images), timed alone right after that chunk (interleaved, so load
  from elsewhere on a shared machine hits both sides alike).

The ratio value / baseline is the adapter's and the session's overhead on top of the model. With a
model this small, generation is cheap, so the overhead shows; on a real model it is a far smaller
share. ``BENCH_VLM_CHUNKS`` sets how many chunks each side runs (p99 needs enough of them).

Then the live figures, through the whole stack (:mod:`bench.vlm_stack`: nats-server, the gateway and
the dispatcher in processes of their own, its pool running ``modal_workers.vlm:run`` on the tiny
model): the WS ack latency of a vlm session at ``LIVE_FPS`` frames/s of 640x480 JPEG while its model
runs (``LIVE_PARAMS``: a chunk every 8 frames, ``max_new_tokens`` chosen so the model is busy most of
the time; the busy share is measured and reported), against the same rounds sent to a second
session that no worker serves yet (the model idle); and the close → result latency of the chunks
of those rounds as the worker reports it (waiting for the model included).
"""

from __future__ import annotations

import asyncio
import io
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import REPEATS, Result, median

CHUNKS = int(os.environ.get("BENCH_VLM_CHUNKS", "40"))
CHUNK_FRAMES, MAX_IMAGES, MAX_NEW_TOKENS, CONTEXT_TOKENS = 8, 4, 16, 512
FRAME_SIZE = (320, 240)
NOTES = [
    f"vlm: the tiny random Gemma 3 of bench/harness/tiny_gemma.py, {CHUNKS} chunks of {CHUNK_FRAMES} JPEG frames "
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
    from contracts.specs.session_params import VlmParams
    from modal_workers.vlm.session import VlmSession, decode_frame

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
    """The VLM latency figures: the session against bare ``generate``, then the live ones."""
    _env()
    from bench.harness.tiny_gemma import build_tiny_gemma
    from modal_workers.vlm.model import VlmModel

    with tempfile.TemporaryDirectory(prefix="gpurelay-bench-vlm-") as tmp:
        model_dir = build_tiny_gemma(Path(tmp) / "model")
        model = VlmModel.load(str(model_dir))
        frames = jpeg_frames(CHUNK_FRAMES * 4)
        measure(model, frames, 4)  # warm-up: first kernels, the chat template's compilation
        ours, bare = measure(model, frames, CHUNKS)
        live = asyncio.run(measure_live(model_dir, Path(tmp)))
    where = "CUDA" if model.device.type == "cuda" else "CPU"
    label = f"tiny Gemma 3 ({where}), {MAX_IMAGES} images, {MAX_NEW_TOKENS} tokens"
    return [
        Result.compare(f"VLM chunk close→result p50, {label}", median(ours), "ms", median(bare)),
        Result.compare(f"VLM chunk close→result p99, {label}", percentile(ours, 99), "ms", percentile(bare, 99)),
        *live_results(live),
    ]


# -- live: the whole stack ------------------------------------------------------------------------
LIVE_FPS, LIVE_SECONDS, LIVE_WARMUP = 15.0, 10.0, 24
LIVE_PARAMS = {"chunk_frames": 8, "chunk_seconds": 2.0, "max_images_per_chunk": 4, "max_new_tokens": 128}
TARGET_ACK_P99_MS = 20.0
NOTES.append(
    f"vlm (live): nats-server, the gateway and the dispatcher in processes of their own, its pool of one running "
    f"modal_workers.vlm:run on the tiny model (same shared cores as the client). {LIVE_FPS:.0f} frames/s of one "
    f"640x480 JPEG (~80 KB) on the session socket for {LIVE_SECONDS:.0f} s, {REPEATS} rounds, median; "
    f"chunks of {LIVE_PARAMS['chunk_frames']} frames, {LIVE_PARAMS['max_new_tokens']} new tokens each, so the "
    "model is busy most of the time (its busy share is a figure). Baseline: the same rounds sent to a second "
    "vlm session no worker serves yet (the model idle). Close → result is the worker's latency_ms of the "
    "chunks of those rounds: when the model falls behind it includes the wait (and frames coalesce)."
)


async def measure_live(model_dir: Path, tmp: Path) -> dict[str, Any]:
    """Ack latencies with the model running and idle, the results' latencies, the model's busy share."""
    import nats

    from bench.session_worker import gateway
    from bench.sessions import Client, jpeg_frame, p50_p99
    from bench.vlm_stack import VlmClient, dispatcher
    from contracts.streams import KV_APIKEYS
    from contracts.subjects import Namespace
    from modal_workers.vlm.model import device
    from services.common.auth.apikeys import ApiKeyStore
    from services.common.nats.server.embedded import EmbeddedNats

    ns, count = Namespace("benchvlm"), int(LIVE_FPS * LIVE_SECONDS)
    with EmbeddedNats(tmp / "nats") as server:
        async with (
            gateway(server.url, ns.name, tmp / "data") as (port, _),
            dispatcher(server.url, ns.name, tmp / "data", model_dir),
        ):
            nc = await nats.connect(server.url, connect_timeout=5)
            _, key = await ApiKeyStore(await nc.jetstream().key_value(ns.bucket(KV_APIKEYS))).create("bench")
            await nc.close()
            client, acks = VlmClient(port, key), Client(port, key, jpeg_frame())
            try:
                live = await client.start(**LIVE_PARAMS)
                async with client.watch(live) as watcher:
                    await watcher.until(lambda w: "ready" in w.messages)
                    idle = await client.start(**LIVE_PARAMS)  # queued: the pool's one process serves `live`
                    await acks.ws_frames(live, LIVE_WARMUP, LIVE_FPS)
                    await watcher.until(lambda w: any(r["last_seq"] == LIVE_WARMUP for r in w.results))
                    idle_rounds = [await acks.ws_frames(idle, count, LIVE_FPS) for _ in range(REPEATS)]
                    busy0, started = float(watcher.metrics.get("model_busy_s", 0.0)), time.monotonic()
                    model_rounds = [await acks.ws_frames(live, count, LIVE_FPS) for _ in range(REPEATS)]
                    last = LIVE_WARMUP + REPEATS * count
                    await watcher.until(lambda w: any(r["last_seq"] == last for r in w.results), 60)
                    await watcher.until(lambda w: int(w.metrics.get("results", 0)) >= len(w.results), 10)
                    busy = (float(watcher.metrics["model_busy_s"]) - busy0) / (time.monotonic() - started)
                    await client.control(idle, "cancel")
                    await client.control(live, "stop")
                    await watcher.until(lambda w: w.terminal is not None, 60)
            finally:
                await client.aclose()

    def acked(rounds: list[Any]) -> tuple[float, float]:
        pairs = [p50_p99([at - due for due, at in sent.values()]) for sent in rounds]
        return median(p[0] for p in pairs), median(p[1] for p in pairs)

    latencies = [float(r["latency_ms"]) for r in watcher.results if r["first_seq"] > LIVE_WARMUP]
    summary = watcher.terminal["data"]["result"] if watcher.terminal else {}
    return {
        "model": acked(model_rounds), "idle": acked(idle_rounds), "latencies": latencies, "busy": busy,
        "dropped_pct": 100 * summary.get("frames_dropped", 0) / (LIVE_WARMUP + REPEATS * count),
        "device": "CUDA" if device() == "cuda" else "CPU",
    }  # fmt: skip


def live_results(live: dict[str, Any]) -> list[Result]:
    """The live figures as results."""
    (model50, model99), (idle50, idle99), latencies = live["model"], live["idle"], live["latencies"]
    where = f"{LIVE_FPS:.0f} frames/s while the model runs (baseline: model idle)"
    through = f"vlm session: chunk close→result through the stack (tiny Gemma 3, {live['device']})"
    return [
        Result.compare(f"vlm session: WS frame ack p50 at {where}", model50, "ms", idle50),
        Result.compare(
            f"vlm session: WS frame ack p99 at {where}, target ≤ {TARGET_ACK_P99_MS:.0f} ms", model99, "ms", idle99
        ),
        Result("vlm session: model busy share while streaming", 100 * live["busy"], "%"),
        Result(f"{through} p50", median(latencies), "ms"),
        Result(f"{through} p99", percentile(latencies, 99), "ms"),
        Result("vlm session: frames coalesced away while the model was behind", live["dropped_pct"], "%"),
    ]


if __name__ == "__main__":
    from bench.common import format_table

    print(format_table(run()))
