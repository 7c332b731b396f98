"""Video output for the pose workload: drawing and encoding in a thread behind a bounded queue.

Decoding is :mod:`modal_workers.media.video`'s reader thread; with this writer thread, both ends of the
video overlap with inference, which runs in the workload's own thread.
"""

from __future__ import annotations

import queue
import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from modal_workers.media.video_out import Preview, Renditions

_DONE = object()


class FrameWriter:
    """Draw and encode frames in a thread: ``submit(frame, overlay)`` queues one, ``close()`` finishes.

    ``draw(frame, overlay)`` runs in the writer thread. Frames are written as MPEG-4 by OpenCV;
    when ``ffmpeg`` is on the path the file is then re-encoded as H.264 with ``+faststart``. With a
    ``webm`` path the same drawn frames also go to a VP8 preview within ``preview``'s bounds, which
    every browser plays (:class:`~modal_workers.media.video_out.Renditions`).
    """

    def __init__(
        self,
        path: Path,
        fps: float,
        size: tuple[int, int],
        draw: Callable[[np.ndarray, Any], np.ndarray],
        webm: Path | None = None,
        preview: Preview | None = None,
    ) -> None:
        self.path, self.draw, self.written = path, draw, 0
        self._raw = path.with_suffix(".raw.mp4")
        self._writer = Renditions(self._raw, fps, size, "mp4v", webm, preview)
        self.webm, self.webm_size, self.webm_fps = self._writer.webm, self._writer.webm_size, self._writer.webm_fps
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=32)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="pose-encode", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not _DONE:
            if self._error is not None:
                continue
            try:
                self._writer.write(self.draw(*item))
                self.written += 1
            except Exception as exc:  # noqa: BLE001 - raised again in close()
                self._error = exc

    def submit(self, frame: np.ndarray, overlay: Any) -> None:
        """Queue ``frame`` to be drawn with ``overlay`` and written (blocks while the queue is full)."""
        self._queue.put((frame, overlay))

    def abort(self) -> None:
        """Stop without finishing the file (the run failed); the partial file is removed."""
        self._error = self._error or RuntimeError("aborted")
        self._queue.put(_DONE)
        self._thread.join()
        self._writer.abort()

    def close(self) -> Path:
        """Flush, finish the file (H.264 when ffmpeg is present) and return its path."""
        self._queue.put(_DONE)
        self._thread.join()
        self._writer.release()
        if self._error is not None:
            raise self._error
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg:
            args = [ffmpeg, "-y", "-loglevel", "error", "-i", str(self._raw), "-c:v", "libx264"]
            args += ["-pix_fmt", "yuv420p", "-movflags", "+faststart", str(self.path)]
            if subprocess.run(args, check=False, timeout=1800).returncode == 0:
                self._raw.unlink(missing_ok=True)
                return self.path
        self._raw.replace(self.path)
        return self.path
