"""Scene loading: COLMAP (binary/text) and Blender readers, cameras, resolution, splits, files."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from plyfile import PlyData

from arguments import ModelParams, read_cfg_args
from scene import Scene, camera_utils
from scene.camera_utils import load_camera, target_size
from scene.colmap_loader import read_colmap_model
from scene.dataset_readers import readColmapSceneInfo, readNerfSyntheticInfo
from scene.gaussian_model import GaussianModel

COLMAP_SCENES = ("statuette", "sacre_coeur")


def _colmap_layout(root: Path, source: Path, sparse: Path) -> Path:
    """A scene folder whose images/ is ``source/images`` and sparse/0 is ``sparse``."""
    (root / "sparse").mkdir(parents=True)
    (root / "images").symlink_to(source / "images")
    (root / "sparse" / "0").symlink_to(sparse)
    return root


def _fake_colmap(root: Path, camera_line: str) -> Path:
    """A one-image COLMAP text scene with the given cameras.txt line."""
    sparse = root / "sparse" / "0"
    sparse.mkdir(parents=True)
    (root / "images").mkdir()
    Image.new("RGB", (64, 48), (10, 20, 30)).save(root / "images" / "a.png")
    (sparse / "cameras.txt").write_text(f"# fake\n{camera_line}\n")
    (sparse / "images.txt").write_text("1 1 0 0 0 0 0 0 1 a.png\n\n")
    (sparse / "points3D.txt").write_text("1 0 0 1 255 0 0 0.5 1 0\n")
    return root


# ----------------------------------------------------------------- COLMAP files


@pytest.mark.parametrize("name", COLMAP_SCENES)
def test_colmap_text_reads_like_binary(shared_data: Path, name: str) -> None:
    cams_b, images_b, points_b = read_colmap_model(shared_data / name / "sparse" / "0")
    cams_t, images_t, points_t = read_colmap_model(shared_data / name / "sparse_txt" / "0")
    assert cams_b.keys() == cams_t.keys() and images_b.keys() == images_t.keys()
    for key, cam in cams_b.items():
        other = cams_t[key]
        assert (cam.model, cam.width, cam.height) == (other.model, other.width, other.height)
        np.testing.assert_array_equal(cam.params, other.params)
    for key, image in images_b.items():
        other = images_t[key]
        assert (image.name, image.camera_id) == (other.name, other.camera_id)
        for field in ("qvec", "tvec", "xys", "point3D_ids"):
            np.testing.assert_array_equal(getattr(image, field), getattr(other, field))
    for a, b in zip(points_b, points_t):
        np.testing.assert_array_equal(a, b)
    assert len(points_b.ids) > 1000 and np.all(np.diff(points_b.ids) > 0)


def test_text_scene_equals_binary_scene(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "statuette"
    text_scene = _colmap_layout(tmp_path / "s", source, source / "sparse_txt" / "0")
    binary, text = readColmapSceneInfo(source), readColmapSceneInfo(text_scene)
    assert [c.image_name for c in binary.train_cameras] == [c.image_name for c in text.train_cameras]
    for a, b in zip(binary.train_cameras, text.train_cameras):
        assert (a.width, a.height, a.fx, a.fy, a.cx, a.cy) == (b.width, b.height, b.fx, b.fy, b.cx, b.cy)
        np.testing.assert_array_equal(a.world_to_cam, b.world_to_cam)
    np.testing.assert_array_equal(binary.point_cloud.points, text.point_cloud.points)


# ----------------------------------------------------------------- poses and intrinsics


@pytest.mark.parametrize("resolution", [-1, 2])
@pytest.mark.parametrize("name", COLMAP_SCENES)
def test_points_reproject_onto_keypoints(shared_data: Path, name: str, resolution: int) -> None:
    """points3D projected with Camera.world_to_cam and K land on the images' 2D keypoints."""
    source = shared_data / name
    cameras, images, points = read_colmap_model(source / "sparse" / "0")
    by_name = {Path(im.name).stem: im for im in images.values()}
    scene = Scene(ModelParams(source_path=str(source), resolution=resolution), shuffle=False)
    errors = []
    for cam in scene.getTrainCameras():
        image = by_name[cam.image_name]
        colmap_cam = cameras[image.camera_id]
        assert cam.original_image.shape == (3, cam.height, cam.width)
        seen = image.point3D_ids >= 0
        xyz = torch.tensor(points.xyz[np.searchsorted(points.ids, image.point3D_ids[seen])],
                           dtype=torch.float32)
        in_cam = xyz @ cam.world_to_cam[:3, :3].T + cam.world_to_cam[:3, 3]
        assert bool((in_cam[:, 2] > 0).all()), "OpenCV cameras look down +z"
        pixels = in_cam @ cam.K.T
        pixels = pixels[:, :2] / pixels[:, 2:]
        scale = torch.tensor([cam.width / colmap_cam.width, cam.height / colmap_cam.height])
        keypoints = torch.tensor(image.xys[seen], dtype=torch.float32) * scale
        errors.append((pixels - keypoints).norm(dim=1))
    errors = torch.cat(errors) * (1 if resolution == -1 else resolution)  # in full-res pixels
    assert errors.median() < 0.5
    assert errors.quantile(0.99) < 4.0


def test_camera_attributes_are_consistent(shared_data: Path) -> None:
    scene = Scene(ModelParams(source_path=str(shared_data / "sacre_coeur"), resolution=4),
                  shuffle=False)
    cam = scene.getTrainCameras()[0]
    assert cam.world_to_cam.dtype == torch.float32 and cam.viewmat is cam.world_to_cam
    assert torch.allclose(cam.world_to_cam[:3, :3] @ cam.camera_center + cam.world_to_cam[:3, 3],
                          torch.zeros(3), atol=1e-4)
    assert cam.FoVx == pytest.approx(2 * np.arctan(cam.width / (2 * cam.fx)))
    assert cam.K[0, 2] == pytest.approx(cam.cx) and cam.K[1, 1] == pytest.approx(cam.fy)
    assert cam.to("cpu") is cam


# ----------------------------------------------------------------- resolution


def test_target_size_follows_3dgs() -> None:
    assert target_size(1000, 658, 1) == (1000, 658)
    assert target_size(1000, 658, 2) == (500, 329)
    assert target_size(1000, 658, 8) == (125, 82)
    assert target_size(1000, 658, -1) == (1000, 658)
    assert target_size(3200, 2000, -1) == (1600, 1000)
    assert target_size(1000, 658, 400) == (400, 263)
    for bad in (0, -2):
        with pytest.raises(ValueError, match="resolution"):
            target_size(1000, 658, bad)


def test_target_width_scales_image_and_intrinsics(shared_data: Path) -> None:
    infos = readColmapSceneInfo(shared_data / "statuette").train_cameras[:4]
    for info in infos:
        a = load_camera(info, 1, False, "cpu")
        b = load_camera(info, 500, False, "cpu")
        assert b.width == 500 and b.height == int(a.height / 2)
        assert b.fx == pytest.approx(a.fx / 2) and b.cx == pytest.approx(a.cx / 2)
        assert b.fy == pytest.approx(a.fy * b.height / a.height)
        # the downscaled image is the full one resized, not a crop: compare with 2×2 means
        pooled = torch.nn.functional.avg_pool2d(a.original_image[None], 2)[0]
        rows = min(pooled.shape[1], b.height)
        assert (pooled[:, :rows] - b.original_image[:, :rows]).abs().mean() < 0.02


# ----------------------------------------------------------------- splits


def test_colmap_eval_holds_out_every_8th_sorted_image(shared_data: Path) -> None:
    source = shared_data / "statuette"
    names = sorted(p.stem for p in (source / "images").iterdir())
    info = readColmapSceneInfo(source, eval=True)
    assert [c.image_name for c in info.test_cameras] == names[::8]
    assert sorted(c.image_name for c in info.train_cameras) == [
        n for i, n in enumerate(names) if i % 8]
    everything = readColmapSceneInfo(source, eval=False)
    assert len(everything.train_cameras) == len(names) and not everything.test_cameras


def test_blender_eval_uses_the_test_json(sample_scene: Path) -> None:
    info = readNerfSyntheticInfo(sample_scene, eval=True, num_random_points=10)
    listed = json.loads((sample_scene / "transforms_test.json").read_text())["frames"]
    assert [c.image_name for c in info.test_cameras] == [Path(f["file_path"]).name for f in listed]
    assert (len(info.train_cameras), len(info.test_cameras)) == (24, 8)
    merged = readNerfSyntheticInfo(sample_scene, eval=False, num_random_points=10)
    assert (len(merged.train_cameras), len(merged.test_cameras)) == (32, 0)


# ----------------------------------------------------------------- Blender


@pytest.mark.parametrize("white", [False, True])
def test_blender_rgba_is_composited(sample_scene: Path, white: bool) -> None:
    scene = Scene(ModelParams(source_path=str(sample_scene), white_background=white,
                              num_random_points=10), shuffle=False)
    cam = scene.getTrainCameras()[0]
    rgba = torch.from_numpy(np.array(Image.open(sample_scene / "train" / f"{cam.image_name}.png"),
                                     dtype=np.float32) / 255.0).permute(2, 0, 1)
    alpha = rgba[3:]
    expected = rgba[:3] * alpha + float(white) * (1 - alpha)
    torch.testing.assert_close(cam.original_image, expected, atol=1e-6, rtol=0)
    empty = (alpha[0] == 0)
    assert empty.sum() > 1000 and ((alpha[0] > 0) & (alpha[0] < 1)).sum() > 100
    assert bool((cam.original_image[:, empty] == float(white)).all())


def test_blender_poses_agree_with_silhouettes(sample_scene: Path) -> None:
    """Voxels inside every training silhouette (visual hull) fall inside the test silhouettes:
    checks the OpenGL → OpenCV conversion and the intrinsics on the real images."""
    scene = Scene(ModelParams(source_path=str(sample_scene), eval=True, num_random_points=10),
                  shuffle=False)

    def inside(cam, points: torch.Tensor, split: str) -> torch.Tensor:
        alpha = np.array(Image.open(sample_scene / split / f"{cam.image_name}.png"))[..., 3]
        in_cam = points @ cam.world_to_cam[:3, :3].T + cam.world_to_cam[:3, 3]
        uv = (in_cam @ cam.K.T)[:, :2] / in_cam[:, 2:]
        ij = uv.floor().long()
        ok = (in_cam[:, 2] > 0) & (ij >= 0).all(1) & (ij[:, 0] < cam.width) & (ij[:, 1] < cam.height)
        result = torch.zeros(len(points), dtype=torch.bool)
        result[ok] = torch.from_numpy(alpha)[ij[ok, 1], ij[ok, 0]] > 127
        return result

    axis = torch.linspace(-1.3, 1.3, 40)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    hull = torch.ones(len(grid), dtype=torch.bool)
    for cam in scene.getTrainCameras():
        hull &= inside(cam, grid, "train")
    assert hull.sum() > 1000
    for cam in scene.getTestCameras():
        assert inside(cam, grid[hull], "test").float().mean() > 0.9


def test_blender_random_points_and_ply_round_trip(sample_scene: Path, tmp_path: Path) -> None:
    args = ModelParams(source_path=str(sample_scene), model_path=str(tmp_path / "m"),
                       num_random_points=500, resolution=4)
    gaussians = GaussianModel(0)
    scene = Scene(args, gaussians, seed=3)
    points = scene.scene_info.point_cloud.points
    assert points.shape == (500, 3) and np.abs(points).max() <= 1.3
    np.testing.assert_array_equal(points, readNerfSyntheticInfo(
        sample_scene, num_random_points=500, seed=3).point_cloud.points)
    assert gaussians.num_gaussians == 500 and scene.cameras_extent > 0
    scene.save(5)
    loaded = GaussianModel(0)
    again = Scene(args, loaded, load_iteration=-1)
    assert again.loaded_iter == 5
    torch.testing.assert_close(loaded.get_xyz, gaussians.get_xyz)
    assert sorted(p.name for p in sample_scene.iterdir()) == sorted(
        ["LICENSE", "README.md", "test", "train", "transforms_test.json", "transforms_train.json"])


# ----------------------------------------------------------------- model files


def test_write_model_files(sample_scene: Path, tmp_path: Path) -> None:
    args = ModelParams(source_path=str(sample_scene), model_path=str(tmp_path / "m"), eval=True,
                       num_random_points=300, resolution=4)
    scene = Scene(args)
    scene.write_model_files()
    model = tmp_path / "m"
    assert read_cfg_args(model / "cfg_args") == dataclasses.asdict(args)
    entries = json.loads((model / "cameras.json").read_text())
    infos = scene.scene_info.test_cameras + scene.scene_info.train_cameras
    assert [e["img_name"] for e in entries] == [c.image_name for c in infos]
    assert [e["id"] for e in entries] == list(range(32))
    for entry, info in zip(entries, infos):
        cam_to_world = np.linalg.inv(info.world_to_cam)
        # -Rᵀt vs inv(): equal up to the float32 non-orthonormality of the JSON rotations
        np.testing.assert_allclose(entry["position"], cam_to_world[:3, 3], atol=1e-5)
        np.testing.assert_allclose(entry["rotation"], cam_to_world[:3, :3], atol=1e-5)
        assert (entry["width"], entry["height"], entry["cx"], entry["cy"]) == (200, 200, 100, 100)
        assert entry["fx"] == entry["fy"] == pytest.approx(info.fx)
    vertices = PlyData.read(str(model / "input.ply"))["vertex"]
    xyz = np.stack([vertices["x"], vertices["y"], vertices["z"]], axis=1)
    np.testing.assert_allclose(xyz, scene.scene_info.point_cloud.points, atol=1e-6)
    assert not [p for p in model.iterdir() if p.name.startswith(".")], "no temporary left"


# ----------------------------------------------------------------- errors


def test_distorted_camera_model_is_refused(tmp_path: Path) -> None:
    root = _fake_colmap(tmp_path, "1 OPENCV 64 48 50 50 32 24 0.1 0.01 0 0")
    with pytest.raises(ValueError, match="OPENCV.*undistort") as err:
        readColmapSceneInfo(root)
    assert "\n" not in str(err.value) and "cameras" in str(err.value)


def test_simple_pinhole_keeps_principal_point(tmp_path: Path) -> None:
    root = _fake_colmap(tmp_path, "1 SIMPLE_PINHOLE 64 48 50 30.5 20")
    (cam,) = readColmapSceneInfo(root).train_cameras
    assert (cam.fx, cam.fy, cam.cx, cam.cy) == (50, 50, 30.5, 20)


def test_missing_and_corrupt_files_name_the_file(shared_data: Path, tmp_path: Path) -> None:
    root = _fake_colmap(tmp_path / "a", "1 PINHOLE 64 48 50 50 32 24")
    (root / "sparse" / "0" / "images.txt").unlink()
    with pytest.raises(FileNotFoundError, match="images.bin"):
        readColmapSceneInfo(root)

    root = _fake_colmap(tmp_path / "b", "1 PINHOLE 64 48 50 50 32 24")
    (root / "images" / "a.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"images/a\.png"):
        readColmapSceneInfo(root)

    root = tmp_path / "c"
    shutil.copytree(shared_data / "statuette" / "sparse", root / "sparse")
    (root / "images").symlink_to(shared_data / "statuette" / "images")
    cameras = root / "sparse" / "0" / "cameras.bin"
    cameras.write_bytes(cameras.read_bytes()[:100])
    with pytest.raises(ValueError, match="cameras.bin.*truncated"):
        readColmapSceneInfo(root)

    root = _fake_colmap(tmp_path / "d", "1 PINHOLE 64")
    with pytest.raises(ValueError, match=r"cameras\.txt: camera 1 \(PINHOLE\) has 0 parameters"):
        readColmapSceneInfo(root)

    with pytest.raises(ValueError, match="not a scene folder"):
        Scene(ModelParams(source_path=str(tmp_path)))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        Scene(ModelParams(source_path=str(tmp_path / "nowhere")))


def test_blender_missing_test_json(sample_scene: Path, tmp_path: Path) -> None:
    root = tmp_path / "lego"
    shutil.copytree(sample_scene, root)
    (root / "transforms_test.json").unlink()
    with pytest.raises(FileNotFoundError, match="transforms_test.json"):
        readNerfSyntheticInfo(root)


# ----------------------------------------------------------------- deferred images


def test_images_are_decoded_on_first_use_only(sample_scene: Path, monkeypatch) -> None:
    """Building a Scene reads image headers only; a view's pixels are decoded once, on its
    first use (through a moved copy too); load_images decodes the splits asked for."""
    decoded: list[str] = []
    real_load = camera_utils.load_image
    monkeypatch.setattr(camera_utils, "load_image",
                        lambda path: decoded.append(Path(path).stem) or real_load(path))
    scene = Scene(ModelParams(source_path=str(sample_scene), eval=True, resolution=4,
                              white_background=True, num_random_points=10), shuffle=False)
    train, test = scene.getTrainCameras(), scene.getTestCameras()
    assert decoded == [] and (train[0].width, train[0].height) == (50, 50)

    moved = test[1].to("meta")
    assert moved.original_image.device.type == "meta" and moved.original_image.shape == (3, 50, 50)
    assert test[1].original_image.device.type == "cpu" and test[1].to("cpu") is test[1]
    assert decoded == [test[1].image_name]  # decoded once, kept by the original camera
    eager = load_camera(scene.scene_info.test_cameras[1], 4, True, "cpu")  # decoded again
    torch.testing.assert_close(test[1].original_image, eager.original_image, rtol=0, atol=0)

    scene.load_images(train=False)
    assert sorted(decoded) == sorted([c.image_name for c in test] + [test[1].image_name])
    scene.load_images()
    assert len(decoded) == len(train) + len(test) + 1
