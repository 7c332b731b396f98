"""The 3DGS PLY layout: property order, channel-major f_rest, exact round trips, same renders."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from modal_workers.runtime.worker_runtime import PermanentError
from modal_workers.splat.model import Gaussians
from modal_workers.splat.ply import ply_properties, read_ply, to_ply_bytes, write_ply
from modal_workers.splat.raster import rasterize
from tests.workers.splat.support import camera, random_gaussians


def test_header_is_the_3dgs_layout() -> None:
    assert ply_properties(0) == [
        "x",
        "y",
        "z",
        "nx",
        "ny",
        "nz",
        "f_dc_0",
        "f_dc_1",
        "f_dc_2",
        "opacity",
        "scale_0",
        "scale_1",
        "scale_2",
        "rot_0",
        "rot_1",
        "rot_2",
        "rot_3",
    ]
    assert len(ply_properties(3)) == 17 + 45
    assert ply_properties(3)[9:11] == ["f_rest_0", "f_rest_1"]
    assert ply_properties(3)[53] == "f_rest_44"
    data = to_ply_bytes(random_gaussians(5, sh_degree=3))
    header = data[: data.index(b"end_header\n")].decode()
    assert header.startswith("ply\nformat binary_little_endian 1.0\n")
    assert "element vertex 5\n" in header
    lines = [line.split() for line in header.splitlines() if line.startswith("property")]
    assert [name for _, _, name in lines] == ply_properties(3)
    assert {kind for _, kind, _ in lines} == {"float"}
    assert len(data) - len(header) - len("end_header\n") == 5 * 62 * 4


def test_values_are_stored_as_viewers_expect() -> None:
    g = Gaussians(
        means=torch.tensor([[1.0, 2.0, 3.0]]),
        log_scales=torch.tensor([[-1.0, -2.0, -3.0]]),
        quats=torch.tensor([[0.9, 0.1, 0.2, 0.3]]),
        opacity_logits=torch.tensor([1.5]),
        sh_dc=torch.tensor([[0.1, 0.2, 0.3]]),
        sh_rest=torch.arange(9.0).reshape(1, 3, 3) + 10 * torch.tensor([0.0, 1.0, 2.0])[None, None, :],
    )
    vertex = PlyData.read(io.BytesIO(to_ply_bytes(g)))["vertex"]
    row = {p.name: float(vertex[p.name][0]) for p in vertex.properties}
    assert (row["x"], row["y"], row["z"]) == (1.0, 2.0, 3.0)
    assert (row["nx"], row["ny"], row["nz"]) == (0.0, 0.0, 0.0)
    assert row["opacity"] == 1.5  # the logit
    assert (row["scale_0"], row["scale_2"]) == (-1.0, -3.0)  # log scales
    assert row["rot_0"] == pytest.approx(0.9)  # w first
    # sh_rest[0, k, c] = 3k + c + 10c; the file is channel-major: f_rest_{c * (K-1) + k}.
    assert [row[f"f_rest_{i}"] for i in range(9)] == [0.0, 3.0, 6.0, 11.0, 14.0, 17.0, 22.0, 25.0, 28.0]


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_round_trip_is_exact(degree: int, tmp_path: Path) -> None:
    g = random_gaussians(300, seed=degree, sh_degree=degree)
    path = write_ply(g, tmp_path / "scene.ply")
    assert not list(tmp_path.glob("*.partial"))
    for back in (read_ply(path), read_ply(path.read_bytes())):
        assert back.sh_degree == degree
        for name in ("means", "log_scales", "quats", "opacity_logits", "sh_dc", "sh_rest"):
            assert torch.equal(getattr(back, name), getattr(g, name)), name


def test_a_reloaded_ply_renders_the_same_image() -> None:
    g = random_gaussians(800, seed=11, sh_degree=2)
    viewmat, K = camera()
    before = rasterize(g, viewmat, K, 64, 48, sh_degree=2).image
    after = rasterize(read_ply(to_ply_bytes(g)), viewmat, K, 64, 48, sh_degree=2).image
    assert before.std() > 0.05
    torch.testing.assert_close(after, before, atol=1e-6, rtol=0)


def test_properties_are_found_by_name_in_any_order() -> None:
    names = [
        "opacity",
        "x",
        "y",
        "z",
        "rot_0",
        "rot_1",
        "rot_2",
        "rot_3",
        "scale_0",
        "scale_1",
        "scale_2",
        "f_dc_0",
        "f_dc_1",
        "f_dc_2",
        "red",
    ]  # no normals, an extra property
    table = np.zeros(2, dtype=[(n, "<f4") for n in names])
    table["x"], table["opacity"], table["rot_0"] = [1.0, 2.0], [0.5, -0.5], 1.0
    out = io.BytesIO()
    PlyData([PlyElement.describe(table, "vertex")], text=True).write(out)
    g = read_ply(out.getvalue())
    assert g.count == 2
    assert g.sh_degree == 0
    assert g.means[:, 0].tolist() == [1.0, 2.0]
    assert g.opacity_logits.tolist() == [0.5, -0.5]


def test_bad_files_are_refused() -> None:
    good = to_ply_bytes(random_gaussians(3))
    table = np.zeros(1, dtype=[(n, "<f4") for n in ["x", "y", "z", "f_rest_0"]])
    out = io.BytesIO()
    PlyData([PlyElement.describe(table, "vertex")]).write(out)
    for data, fragment in (
        (b"not a ply", "readable"),
        (good[: len(good) - 7], "readable"),
        (out.getvalue(), "SH degree"),
    ):
        with pytest.raises(PermanentError, match=fragment) as caught:
            read_ply(data)
        assert caught.value.code == "invalid_ply"
    table = np.zeros(1, dtype=[(n, "<f4") for n in ["x", "y", "z"]])
    out = io.BytesIO()
    PlyData([PlyElement.describe(table, "vertex")]).write(out)
    with pytest.raises(PermanentError, match="lacks f_dc_0"):
        read_ply(out.getvalue())


def test_an_empty_model_writes_a_valid_file() -> None:
    back = read_ply(to_ply_bytes(Gaussians.empty(1)))
    assert back.count == 0
    assert back.sh_degree == 1
    assert math.isqrt(back.sh_rest.shape[1] + 1) == 2
