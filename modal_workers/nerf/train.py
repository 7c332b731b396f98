"""Training the NeRF: random rays of the training views, MSE on premultiplied colour and on alpha, Adam.

:class:`Trainer` holds the rays of every training view on the device, the field and its optimiser
(instant-NGP's: Adam, β = (0.9, 0.99), ε = 1e-15 on the hash tables); :meth:`Trainer.step` is one
batch; :meth:`Trainer.psnr` renders a fixed sample of the held-out views' pixels (premultiplied
colour over black) and compares. :meth:`Trainer.checkpoint` / :meth:`Trainer.restore` carry the iteration, the
weights, the optimiser's moments and what the checkpoint was trained on (the sha256 of
``transforms.json``), so a retried stage resumes where the last checkpoint left it.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import torch

from modal_workers.nerf.data import PosedView, split, view_rays
from modal_workers.nerf.model import FieldConfig, NerfField, render_rays

CHUNK = 8192
PSNR_PIXELS = 4096


def _rays(views: list[PosedView], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    origins, dirs, targets = [], [], []
    for view in views:
        h, w = view.rgba.shape[:2]
        o, d = view_rays(view.c2w, view.fx, view.fy, view.cx, view.cy, w, h)
        origins.append(o)
        dirs.append(d)
        targets.append(view.rgba.reshape(-1, 4))
    as_tensor = [
        torch.as_tensor(np.concatenate(x), dtype=torch.float32, device=device) for x in (origins, dirs, targets)
    ]
    return as_tensor[0], as_tensor[1], as_tensor[2]


@torch.no_grad()
def render_chunked(field: NerfField, origins: torch.Tensor, dirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Premultiplied RGB and alpha of many rays, :data:`CHUNK` at a time, without gradients."""
    parts = [render_rays(field, origins[i : i + CHUNK], dirs[i : i + CHUNK]) for i in range(0, len(origins), CHUNK)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


class Trainer:
    """One NeRF being trained on ``views`` (every :data:`~modal_workers.nerf.data.HOLD_OUT_EVERY`-th held out)."""

    def __init__(self, views: list[PosedView], config: FieldConfig, device: torch.device, rays: int) -> None:
        self.training, self.held_out = split(views)
        self.device, self.rays, self.iteration = device, rays, 0
        self._held: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.origins, self.dirs, self.targets = _rays(self.training, device)
        self.field = NerfField(config).to(device)
        grid = list(self.field.grid.parameters())
        mlps = [p for n, p in self.field.named_parameters() if not n.startswith("grid.")]
        self.optimiser = torch.optim.Adam(
            [{"params": grid, "eps": 1e-15}, {"params": mlps, "weight_decay": 1e-6}], lr=1e-2, betas=(0.9, 0.99)
        )

    def step(self) -> float:
        """One batch of random training rays; the loss."""
        pick = torch.randint(0, len(self.origins), (self.rays,), device=self.device)
        rgb, alpha = render_rays(self.field, self.origins[pick], self.dirs[pick], stratified=True)
        target = self.targets[pick]
        loss = torch.mean((rgb - target[:, :3] * target[:, 3:]) ** 2) + torch.mean((alpha - target[:, 3]) ** 2)
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        self.optimiser.step()
        self.iteration += 1
        return float(loss.detach())

    def psnr(self) -> float:
        """PSNR (dB) of the held-out views' premultiplied colour (the training views' if none is held out), on
        at most :data:`PSNR_PIXELS` of their pixels (the same ones each time)."""
        if self._held is None:
            origins, dirs, targets = _rays(self.held_out or self.training[:1], self.device)
            generator = torch.Generator().manual_seed(0)
            pick = torch.randperm(len(origins), generator=generator)[:PSNR_PIXELS].to(self.device)
            self._held = origins[pick], dirs[pick], targets[pick]
        origins, dirs, targets = self._held
        rgb, _ = render_chunked(self.field, origins, dirs)
        mse = float(torch.mean((rgb - targets[:, :3] * targets[:, 3:]) ** 2))
        return -10.0 * math.log10(max(mse, 1e-10))

    def checkpoint(self, trained_on: str, extra: dict[str, Any]) -> bytes:
        """The training state as bytes (``torch.save``)."""
        buffer = io.BytesIO()
        state = {
            "iteration": self.iteration, "field": self.field.state_dict(), "optimiser": self.optimiser.state_dict(),
            "config": self.field.config.as_dict(), "trained_on": trained_on, **extra,
        }  # fmt: skip
        torch.save(state, buffer)
        return buffer.getvalue()

    def restore(self, data: bytes, trained_on: str) -> dict[str, Any] | None:
        """Resume from a checkpoint of the same data and config; its contents, or None if it does not fit."""
        state: dict[str, Any] = torch.load(io.BytesIO(data), map_location=self.device, weights_only=True)
        if state.get("trained_on") != trained_on or state.get("config") != self.field.config.as_dict():
            return None
        self.field.load_state_dict(state["field"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.iteration = int(state["iteration"])
        return state
