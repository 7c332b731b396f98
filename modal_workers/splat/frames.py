"""The frame memory of a splat session: posed frames kept on the training device, bounded.

API: :class:`PosedFrame` (an RGB frame as a uint8 tensor with its camera, view matrix and ``K`` as
tensors, its arrival ``index``, capture ``seq`` and whether a step has used it);
:class:`FrameMemory` (``max_frames``, ``latest``, a seeded ``random.Random``):

* :meth:`FrameMemory.add` keeps at most ``max_frames`` frames, a uniform sample of every frame added
  (reservoir sampling), so a long session neither forgets its first views nor grows without bound;
  separately it tracks the ``latest`` frames by ``seq`` (:attr:`FrameMemory.latest`, oldest first),
  whatever order they arrived in;
* :meth:`FrameMemory.put_back` takes back the frames a resumed session had trained on before its
  snapshot (its memory, restored), as used, and samples on as if the frames it stands for had all been added;
* :meth:`FrameMemory.views` is what one training step looks at: the newest frame plus random kept ones.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass

import torch

from modal_workers.splat.camera import Camera


@dataclass
class PosedFrame:
    """One frame: ``image`` (H, W, 3) uint8, ``viewmat`` (4, 4) and ``K`` (3, 3) float32, one device."""

    index: int
    seq: int
    image: torch.Tensor
    camera: Camera
    viewmat: torch.Tensor
    K: torch.Tensor
    used: bool = False

    @classmethod
    def make(cls, index: int, seq: int, image: torch.Tensor, camera: Camera, device: torch.device) -> PosedFrame:
        """A frame with its camera's matrices as float32 tensors on ``device``."""
        viewmat = torch.as_tensor(camera.viewmat, dtype=torch.float32, device=device)
        K = torch.as_tensor(camera.intrinsics.matrix(), dtype=torch.float32, device=device)
        return cls(index, seq, image, camera, viewmat, K)


class FrameMemory:
    """At most ``max_frames`` frames (a uniform sample of all added) plus the ``latest`` newest by seq."""

    def __init__(self, max_frames: int, latest: int, rng: random.Random) -> None:
        self.max_frames, self.latest_count, self.rng = max_frames, latest, rng
        self.kept: list[PosedFrame] = []
        self.latest: list[PosedFrame] = []
        self.added = 0

    def add(self, frame: PosedFrame) -> None:
        """Remember ``frame`` (it may replace a random kept one, with probability max_frames / added)."""
        self.added += 1
        bisect.insort(self.latest, frame, key=lambda f: f.seq)
        del self.latest[: -self.latest_count]
        if len(self.kept) < self.max_frames:
            self.kept.append(frame)
            return
        slot = self.rng.randrange(self.added)
        if slot < self.max_frames:
            self.kept[slot] = frame

    def put_back(self, frames: list[PosedFrame], represents: int) -> None:
        """Remember ``frames`` (trained on before: used) standing for ``represents`` frames added in all."""
        for frame in frames:
            frame.used = True
            self.add(frame)
        self.added = max(self.added, represents)

    @property
    def newest(self) -> PosedFrame:
        """The frame with the highest seq."""
        return self.latest[-1]

    def views(self, count: int) -> list[PosedFrame]:
        """The newest frame and up to ``count - 1`` other kept frames, drawn at random."""
        others = [f for f in self.kept if f is not self.newest]
        return [self.newest, *self.rng.sample(others, min(len(others), count - 1))]
