"""Helpers of the splat tests: random Gaussians and a camera that sees most of them."""

from __future__ import annotations

import math

import torch

from modal_workers.splat.camera import look_at, rigid_inverse
from modal_workers.splat.model import Gaussians


def random_gaussians(count: int, seed: int = 0, sh_degree: int = 0, centre: float = 2.0) -> Gaussians:
    """``count`` random Gaussians around (0, 0, ``centre``): sizes, rotations, opacities and colours vary."""
    gen = torch.Generator().manual_seed(seed)
    rest = (sh_degree + 1) ** 2 - 1
    return Gaussians(
        means=torch.randn(count, 3, generator=gen) * 0.4 + torch.tensor([0.0, 0.0, centre]),
        log_scales=math.log(0.03) + 0.4 * torch.randn(count, 3, generator=gen),
        quats=torch.randn(count, 4, generator=gen),
        opacity_logits=torch.randn(count, generator=gen),
        sh_dc=torch.randn(count, 3, generator=gen) * 0.5,
        sh_rest=torch.randn(count, rest, 3, generator=gen) * 0.2,
    )


def camera(width: int = 64, height: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    """A tilted camera two units from the origin, with an off-centre principal point."""
    viewmat = torch.as_tensor(
        rigid_inverse(look_at((0.3, -0.4, -0.1), (0.0, 0.1, 2.0), up=(0, -1, 0))), dtype=torch.float32
    )
    K = torch.tensor([[52.0, 0.0, width / 2 + 3.0], [0.0, 55.0, height / 2 - 2.0], [0.0, 0.0, 1.0]])
    return viewmat, K
