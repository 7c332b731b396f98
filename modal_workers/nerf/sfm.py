"""Camera poses with COLMAP (pycolmap): SIFT features, matching, incremental mapping, the largest model.

:func:`sfm_images` writes the photos COLMAP sees: RGB (a photo with alpha composited over black, so
the masked-out background is one plain colour), shrunk to a long side of at most ``sfm_max_side``.
:func:`reconstruct` extracts SIFT (at most ``sift_max_features`` a photo; on the GPU where pycolmap
was built with CUDA), matches every pair up to ``exhaustive_max_images`` photos and sequential
neighbours above, maps incrementally (seeded; while the largest model misses photos, again with the next seed, up to
``sfm_mapping_trials`` times: RANSAC's luck can split a model; then, up to ``sfm_match_rounds`` in all,
the photos are matched again with a new verification seed and mapped again) and keeps the model with the
most registered images.
:func:`transforms` writes nerfstudio's ``transforms.json``: per frame its photo (``images/<name in
the archive>``), intrinsics at the photo's full size and camera-to-world matrix in the OpenGL
convention (x right, y up, z back), plus ``gpurelay_scene``: a centre and radius of the sparse points
(5th–95th percentiles) for the NeRF's bounds.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from modal_workers.nerf.archive import Photo, read_rgba
from modal_workers.nerf.settings import NerfSettings

CAMERA_MODEL = "SIMPLE_RADIAL"
_PARAMS = {  # COLMAP model → names of its parameters in transforms.json
    "SIMPLE_PINHOLE": ("f", "cx", "cy"),
    "PINHOLE": ("fl_x", "fl_y", "cx", "cy"),
    "SIMPLE_RADIAL": ("f", "cx", "cy", "k1"),
    "RADIAL": ("f", "cx", "cy", "k1", "k2"),
    "OPENCV": ("fl_x", "fl_y", "cx", "cy", "k1", "k2", "p1", "p2"),
}


def sfm_images(photos: list[Photo], folder: Path, max_side: int) -> dict[str, float]:
    """Write each photo as ``folder/{index:04d}.png`` for COLMAP; sfm file name → full size / SfM size."""
    folder.mkdir(parents=True, exist_ok=True)
    scales = {}
    for index, photo in enumerate(photos):
        image = read_rgba(photo.path)
        if image.shape[2] == 4:
            alpha = image[..., 3:].astype(np.float32) / 255.0
            image = (image[..., :3] * alpha).round().astype(np.uint8)
        scale = min(1.0, max_side / max(photo.width, photo.height))
        if scale < 1.0:
            size = (max(1, round(photo.width * scale)), max(1, round(photo.height * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        name = f"{index:04d}.png"
        cv2.imwrite(str(folder / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        scales[name] = photo.width / image.shape[1]
    return scales


def reconstruct(
    images: Path, work: Path, settings: NerfSettings, progress: Callable[[float, str], None], single_camera: bool
) -> Any:
    """The largest COLMAP model of the photos in ``images`` (``None`` when nothing registered); with
    ``single_camera`` (every photo one size: likely one device and zoom) they share one camera. While
    the best model misses photos, features are matched again (a new draw of the two-view verification's
    RANSAC; a bad draw once left 4 of the test scene's 16 photos for every mapping seed), up to
    ``sfm_match_rounds`` times in all."""
    import pycolmap

    pycolmap.logging.minloglevel = 1  # warnings and errors only: INFO is a line per image and step
    count, rounds = sum(1 for _ in images.iterdir()), settings.sfm_match_rounds
    best: Any = None
    for round_ in range(rounds):  # a later round reports at the first's end: progress does not go back
        _match(pycolmap, images, work, settings, single_camera, round_, progress)
        for trial in range(settings.sfm_mapping_trials):  # a model that stops short may be completed by another seed
            label = f"incremental mapping, trial {trial + 1}" + (f", round {round_ + 1} of {rounds}" if round_ else "")
            progress(0.95 if round_ else 0.75 + 0.2 * trial / settings.sfm_mapping_trials, label)
            options = pycolmap.IncrementalPipelineOptions()
            options.random_seed = trial
            sparse = work / f"sparse-{round_}-{trial}"
            sparse.mkdir(parents=True, exist_ok=True)
            for model in pycolmap.incremental_mapping(work / "database.db", images, sparse, options).values():
                if best is None or model.num_reg_images() > best.num_reg_images():
                    best = model
            if best is not None and best.num_reg_images() == count:
                return best
    return best


def _match(
    pycolmap: Any, images: Path, work: Path, settings: NerfSettings, single_camera: bool, round_: int,
    progress: Callable[[float, str], None],
) -> None:  # fmt: skip
    """A fresh ``work/database.db`` of the photos' SIFT features and verified matches (RANSAC seeded
    with ``round_``; every pair up to ``exhaustive_max_images`` photos, sequential neighbours above)."""
    database = work / "database.db"
    database.unlink(missing_ok=True)
    count = sum(1 for _ in images.iterdir())
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = CAMERA_MODEL
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.sift.max_num_features = settings.sift_max_features
    mode = pycolmap.CameraMode.SINGLE if single_camera else pycolmap.CameraMode.AUTO
    progress(0.95 if round_ else 0.05, f"SIFT features of {count} photos" + (f", round {round_ + 1}" if round_ else ""))
    pycolmap.extract_features(database, images, camera_mode=mode, reader_options=reader, extraction_options=extraction)
    progress(0.95 if round_ else 0.35, f"matching again, round {round_ + 1}" if round_ else "matching")
    verification = pycolmap.TwoViewGeometryOptions()
    verification.ransac.random_seed = round_
    if count <= settings.exhaustive_max_images:
        pycolmap.match_exhaustive(database, verification_options=verification)
    else:
        pairing = pycolmap.SequentialPairingOptions()
        pairing.overlap = 20
        pycolmap.match_sequential(database, pairing_options=pairing, verification_options=verification)


def intrinsics(camera: Any, scale: float) -> dict[str, float]:
    """A COLMAP camera's intrinsics in transforms.json's names, at ``scale`` × its size."""
    model = camera.model.name
    if model not in _PARAMS:
        raise ValueError(f"camera model {model} is not supported")
    values = dict(zip(_PARAMS[model], (float(v) for v in camera.params), strict=True))
    if "f" in values:
        values["fl_x"] = values["fl_y"] = values.pop("f")
    out = {k: v * scale if k in ("fl_x", "fl_y", "cx", "cy") else v for k, v in values.items()}
    out |= {"w": round(camera.width * scale), "h": round(camera.height * scale)}
    return {"k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0} | out


def camera_to_world(cam_from_world: np.ndarray) -> np.ndarray:
    """The 4×4 camera-to-world matrix (OpenGL camera axes) of a 3×4 world-to-camera (OpenCV) one."""
    w2c = np.eye(4)
    w2c[:3] = cam_from_world
    c2w = np.linalg.inv(w2c)
    c2w[:3, 1:3] *= -1.0
    return c2w


def transforms(model: Any, photos: list[Photo], scales: dict[str, float]) -> dict[str, Any]:
    """nerfstudio's ``transforms.json`` of the registered photos (name order) and the scene's bounds."""
    frames = []
    for image in sorted(model.images.values(), key=lambda i: i.name):
        if not image.has_pose:
            continue
        index = int(image.name.split(".")[0])
        frame = {"file_path": f"images/{photos[index].name}", "colmap_im_id": int(image.image_id)}
        frame |= intrinsics(model.cameras[image.camera_id], scales[image.name])
        frame["transform_matrix"] = camera_to_world(image.cam_from_world().matrix()).round(8).tolist()
        frames.append(frame)
    points = np.array([p.xyz for p in model.points3D.values()]).reshape(-1, 3)
    low, high = np.percentile(points, 5, axis=0), np.percentile(points, 95, axis=0)
    first = {k: frames[0][k] for k in ("fl_x", "fl_y", "cx", "cy", "w", "h", "k1", "k2", "p1", "p2")}
    scene = {"center": ((low + high) / 2).round(6).tolist(), "radius": round(float(np.linalg.norm(high - low) / 2), 6)}
    return {"camera_model": "OPENCV", **first, "frames": frames, "gpurelay_scene": scene}


def sparse_zip(model: Any, work: Path) -> Path:
    """The model written as COLMAP binaries (``sparse/0/cameras.bin`` …) in a zip."""
    folder = work / "sparse-out" / "sparse" / "0"
    folder.mkdir(parents=True, exist_ok=True)
    model.write(folder)
    target = work / "sparse.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, f"sparse/0/{path.name}")
    return target
