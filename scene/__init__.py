"""``Scene``: the cameras of a COLMAP or Blender scene plus the model folder it trains into."""
from __future__ import annotations

import dataclasses
import json
import logging
import random
from argparse import Namespace
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np
from plyfile import PlyData, PlyElement

from arguments import ModelParams, write_cfg_args
from scene.camera_utils import MAX_AUTO_WIDTH, camera_to_JSON, load_camera
from scene.cameras import Camera
from scene.dataset_readers import CameraInfo, SceneInfo, scene_type, sceneLoadTypeCallbacks
from utils.graphics_utils import BasicPointCloud
from utils.output_paths import CAMERAS_JSON, INPUT_PLY, point_cloud_dir, point_cloud_path
from utils.system_utils import atomic_path, searchForMaxIteration

if TYPE_CHECKING:
    from scene.gaussian_model import GaussianModel

logger = logging.getLogger(__name__)


def read_scene_info(args: ModelParams, seed: int = 0) -> SceneInfo:
    """Read the scene at ``args.source_path`` with the reader of its layout."""
    kind = scene_type(args.source_path)
    options = {"Colmap": {"images": args.images},
               "Blender": {"num_random_points": args.num_random_points, "seed": seed}}[kind]
    return sceneLoadTypeCallbacks[kind](args.source_path, eval=args.eval, **options)


def write_point_cloud_ply(path: str | Path, pcd: BasicPointCloud) -> None:
    """Write ``pcd`` as a PLY with x y z nx ny nz (float32) red green blue (uint8), atomically."""
    names = ("x", "y", "z", "nx", "ny", "nz", "red", "green", "blue")
    vertices = np.empty(len(pcd.points), dtype=[(n, "f4") for n in names[:6]]
                        + [(n, "u1") for n in names[6:]])
    columns = np.concatenate([pcd.points, pcd.normals], axis=1)
    rgb = np.clip(np.round(np.asarray(pcd.colors) * 255.0), 0, 255)
    for i, name in enumerate(names):
        vertices[name] = columns[:, i] if i < 6 else rgb[:, i - 6]
    with atomic_path(path) as tmp:
        PlyData([PlyElement.describe(vertices, "vertex")]).write(str(tmp))


class Scene:
    """Train/test cameras of a scene and the model folder (like 3DGS's Scene).

    Args:
        args: scene folder, model folder, resolution, background, eval split, data device.
        gaussians: filled from ``point_cloud/iteration_<N>/point_cloud.ply`` when
            ``load_iteration`` is given (-1 = latest), else from the scene's initial points.
        shuffle: shuffle the camera lists with a local RNG seeded by ``seed``.
        seed: seed of the shuffle and of Blender's random initial points.
    """

    def __init__(self, args: ModelParams, gaussians: Optional["GaussianModel"] = None,
                 load_iteration: Optional[int] = None, shuffle: bool = True,
                 seed: int = 0) -> None:
        self.args = args
        self.model_path = Path(args.model_path)
        self.gaussians = gaussians
        self.loaded_iter: Optional[int] = None
        if load_iteration is not None:
            self.loaded_iter = (searchForMaxIteration(point_cloud_dir(self.model_path))
                                if load_iteration == -1 else load_iteration)
            logger.info("Loading trained model at iteration %d", self.loaded_iter)

        self.scene_info = read_scene_info(args, seed)
        self.cameras_extent: float = self.scene_info.nerf_normalization["radius"]
        if args.resolution == -1 and any(c.width > MAX_AUTO_WIDTH for c in
                                         self.scene_info.train_cameras + self.scene_info.test_cameras):
            logger.info("Images wider than %d px are downscaled to that width (-r -1); use -r 1 "
                        "to keep the full resolution", MAX_AUTO_WIDTH)
        rng = random.Random(seed)
        self.train_cameras = self._load(self.scene_info.train_cameras, rng if shuffle else None)
        self.test_cameras = self._load(self.scene_info.test_cameras, rng if shuffle else None)
        logger.info("Scene %s: %d train / %d test cameras, extent %.3f", args.source_path,
                    len(self.train_cameras), len(self.test_cameras), self.cameras_extent)

        if gaussians is not None:
            if self.loaded_iter is not None:
                gaussians.load_ply(self.point_cloud_path(self.loaded_iter))
            else:
                gaussians.create_from_pcd(self.scene_info.point_cloud, self.cameras_extent)

    def _load(self, infos: list[CameraInfo], rng: Optional[random.Random]) -> list[Camera]:
        infos = list(infos)
        if rng is not None:
            rng.shuffle(infos)
        return [load_camera(info, self.args.resolution, self.args.white_background,
                            self.args.data_device) for info in infos]

    def point_cloud_path(self, iteration: int) -> Path:
        """``<model_path>/point_cloud/iteration_<N>/point_cloud.ply``."""
        return point_cloud_path(self.model_path, iteration)

    def save(self, iteration: int) -> Path:
        """Save the Gaussians as the 3DGS PLY of ``iteration``; returns its path."""
        if self.gaussians is None:
            raise ValueError("Scene.save: this scene was built without a GaussianModel")
        path = self.point_cloud_path(iteration)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.gaussians.save_ply(path)
        return path

    def write_model_files(self, cfg: Optional[Namespace | dict] = None) -> None:
        """Write ``cfg_args`` (``cfg``, default the ModelParams), ``input.ply`` (initial
        points) and ``cameras.json`` (test cameras, then train) into the model folder."""
        self.model_path.mkdir(parents=True, exist_ok=True)
        write_cfg_args(self.model_path, cfg if cfg is not None else dataclasses.asdict(self.args))
        write_point_cloud_ply(self.model_path / INPUT_PLY, self.scene_info.point_cloud)
        infos = self.scene_info.test_cameras + self.scene_info.train_cameras
        with atomic_path(self.model_path / CAMERAS_JSON) as tmp:
            tmp.write_text(json.dumps([camera_to_JSON(i, c) for i, c in enumerate(infos)]))

    def load_images(self, train: bool = True, test: bool = True) -> None:
        """Decode the ground truth of the train and/or test views now (cameras otherwise decode
        theirs on first use), so that a run that needs them fails on a bad image at once,
        before it writes anything."""
        for camera in (self.train_cameras if train else []) + (self.test_cameras if test else []):
            camera.original_image  # the property decodes the image and keeps it

    def getTrainCameras(self) -> list[Camera]:
        return self.train_cameras

    def getTestCameras(self) -> list[Camera]:
        return self.test_cameras
