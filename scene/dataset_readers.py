"""Scene readers: COLMAP sparse models and Blender/NeRF-synthetic transforms → plain records.

Readers return camera geometry and image paths only (no pixels, no device); images are decoded
on the first use of the ``original_image`` of the ``Camera`` that
``scene.camera_utils.load_camera`` builds. Poses are world-to-camera with OpenCV axes (+x right,
+y down, +z forward).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from scene.colmap_loader import read_colmap_model
from utils.graphics_utils import BasicPointCloud, camera_center, fov2focal, getWorld2View, qvec2rotmat
from utils.image_utils import image_size
from utils.sh_utils import SH2RGB

logger = logging.getLogger(__name__)

LLFF_HOLD = 8  # COLMAP --eval: every 8th image (by sorted name) is a test view
_UNDISTORTED_MODELS = ("SIMPLE_PINHOLE", "PINHOLE")


@dataclass(frozen=True)
class CameraInfo:
    """One view as read from disk.

    Attributes:
        width, height: image size in pixels the intrinsics refer to.
        fx, fy, cx, cy: pinhole intrinsics in pixels (pixel centres at +0.5).
        world_to_cam: [4, 4] float64 world-to-camera matrix, OpenCV axes.
    """

    uid: int
    image_name: str
    image_path: Path
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    world_to_cam: np.ndarray
    is_test: bool


@dataclass(frozen=True)
class SceneInfo:
    """A scene: initial points, train/test views and the normalization of getNerfppNorm.

    ``ply_path`` is the file the points came from (None for random points kept in memory).
    """

    point_cloud: BasicPointCloud
    train_cameras: list[CameraInfo]
    test_cameras: list[CameraInfo]
    nerf_normalization: dict
    ply_path: Optional[Path]


def getNerfppNorm(cameras: list[CameraInfo]) -> dict:
    """Centre and radius of the cameras: translate = -mean centre, radius = 1.1 × max distance."""
    centers = np.stack([camera_center(c.world_to_cam) for c in cameras])
    mean = centers.mean(axis=0)
    radius = float(np.linalg.norm(centers - mean, axis=1).max()) * 1.1
    return {"translate": -mean, "radius": radius}


def _intrinsics(camera, path: Path) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) of an undistorted COLMAP camera; refuses distorted models."""
    if camera.model not in _UNDISTORTED_MODELS:
        raise ValueError(f"{path}: camera {camera.id} uses the distorted model {camera.model}; "
                         f"undistort the images first (colmap image_undistorter) to get PINHOLE "
                         f"cameras")
    if camera.model == "SIMPLE_PINHOLE":
        f, cx, cy = camera.params
        return f, f, cx, cy
    return tuple(camera.params)


def readColmapSceneInfo(path: str | Path, images: str = "images", eval: bool = False
                        ) -> SceneInfo:
    """Read ``<path>/sparse/0`` and the images in ``<path>/<images>``.

    Raises:
        FileNotFoundError: a model file or a registered image is missing.
        ValueError: a file is malformed, or a camera model is distorted.
    """
    path = Path(path)
    sparse = path / "sparse" / "0"
    cameras, images_by_id, points = read_colmap_model(sparse)
    image_dir = path / images
    infos = []
    for uid, image in enumerate(sorted(images_by_id.values(), key=lambda im: im.name)):
        if image.camera_id not in cameras:
            raise ValueError(f"{sparse}: image {image.name} refers to missing camera "
                             f"{image.camera_id}")
        camera = cameras[image.camera_id]
        image_path = image_dir / image.name
        if not image_path.is_file():
            raise FileNotFoundError(f"{image_path}: image registered in {sparse} not found "
                                    f"(use -i to pick the image folder)")
        fx, fy, cx, cy = map(float, _intrinsics(camera, sparse / "cameras"))
        infos.append(CameraInfo(uid, str(Path(image.name).with_suffix("")), image_path,
                                camera.width, camera.height, fx, fy, cx, cy,
                                getWorld2View(qvec2rotmat(image.qvec), image.tvec),
                                is_test=eval and uid % LLFF_HOLD == 0))
    pcd = BasicPointCloud(points.xyz, points.rgb / 255.0, np.zeros_like(points.xyz))
    points_file = next(f for f in (sparse / "points3D.bin", sparse / "points3D.txt") if f.is_file())
    return _scene_info(pcd, infos, ply_path=points_file)


def _read_transforms(path: Path, transforms_file: str, is_test: bool, first_uid: int
                     ) -> list[CameraInfo]:
    """Cameras of one Blender ``transforms_*.json`` (OpenGL camera-to-world → OpenCV)."""
    json_path = path / transforms_file
    if not json_path.is_file():
        raise FileNotFoundError(f"{json_path}: Blender transforms file not found")
    try:
        meta = json.loads(json_path.read_text())
        fov_x = float(meta["camera_angle_x"])
        frames = [(f["file_path"], np.array(f["transform_matrix"], dtype=np.float64))
                  for f in meta["frames"]]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{json_path}: not a NeRF transforms file ({exc!r})") from None
    infos = []
    for i, (file_path, cam_to_world) in enumerate(frames):
        image_path = path / file_path
        if image_path.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            image_path = image_path.with_name(image_path.name + ".png")
        if not image_path.is_file():
            raise FileNotFoundError(f"{image_path}: image listed in {json_path} not found")
        if cam_to_world.shape != (4, 4):
            raise ValueError(f"{json_path}: frame {file_path} has a transform_matrix of shape "
                             f"{cam_to_world.shape}, expected (4, 4)")
        width, height = image_size(image_path)
        cam_to_world[:3, 1:3] *= -1  # OpenGL (y up, z back) → OpenCV (y down, z forward)
        focal = fov2focal(fov_x, width)
        infos.append(CameraInfo(first_uid + i, Path(file_path).stem, image_path, width, height,
                                focal, focal, width / 2, height / 2,
                                np.linalg.inv(cam_to_world), is_test))
    return infos


def random_point_cloud(count: int, seed: int = 0) -> BasicPointCloud:
    """``count`` points uniform in the cube [-1.3, 1.3]³ with random near-grey SH colours
    (the original 3DGS initialization for Blender scenes)."""
    rng = np.random.default_rng(seed)
    xyz = rng.random((count, 3)) * 2.6 - 1.3
    colors = SH2RGB(rng.random((count, 3)) / 255.0)
    return BasicPointCloud(xyz, colors, np.zeros_like(xyz))


def readNerfSyntheticInfo(path: str | Path, eval: bool = False, num_random_points: int = 100_000,
                          seed: int = 0) -> SceneInfo:
    """Read ``transforms_train.json`` and ``transforms_test.json``; without ``eval`` the test
    views join the training set (as in 3DGS). Points are random (no point cloud on disk)."""
    path = Path(path)
    train = _read_transforms(path, "transforms_train.json", False, 0)
    test = _read_transforms(path, "transforms_test.json", eval, len(train))
    logger.info("Blender scene %s: %d random initial points", path, num_random_points)
    return _scene_info(random_point_cloud(num_random_points, seed), train + test, ply_path=None)


def _scene_info(pcd: BasicPointCloud, cameras: list[CameraInfo], ply_path: Optional[Path]
                ) -> SceneInfo:
    train = [c for c in cameras if not c.is_test]
    return SceneInfo(pcd, train, [c for c in cameras if c.is_test], getNerfppNorm(train),
                     ply_path)


sceneLoadTypeCallbacks: dict[str, Callable[..., SceneInfo]] = {
    "Colmap": readColmapSceneInfo,
    "Blender": readNerfSyntheticInfo,
}


def scene_type(path: str | Path) -> str:
    """"Colmap" (``sparse/`` present) or "Blender" (``transforms_train.json`` present).

    Raises:
        FileNotFoundError: the folder is missing.
        ValueError: the folder is neither layout.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: scene folder not found (-s/--source_path)")
    if (path / "sparse").is_dir():
        return "Colmap"
    if (path / "transforms_train.json").is_file():
        return "Blender"
    raise ValueError(f"{path}: not a scene folder (expected sparse/0/ for COLMAP or "
                     f"transforms_train.json for Blender)")
