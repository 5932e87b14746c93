"""Readers for COLMAP sparse models (cameras, images, points3D) in binary and text form.

Formats as documented by COLMAP (``src/colmap/scene/reconstruction_io.cc``). Every error names
the file: a missing file raises FileNotFoundError, a truncated or malformed one ValueError.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

# model id -> (name, number of parameters)
CAMERA_MODELS: dict[int, tuple[str, int]] = {
    0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5),
    4: ("OPENCV", 8), 5: ("OPENCV_FISHEYE", 8), 6: ("FULL_OPENCV", 12), 7: ("FOV", 5),
    8: ("SIMPLE_RADIAL_FISHEYE", 4), 9: ("RADIAL_FISHEYE", 5), 10: ("THIN_PRISM_FISHEYE", 12),
    11: ("RAD_TAN_THIN_PRISM_FISHEYE", 16),
}
_PARAMS_BY_NAME = {name: n for name, n in CAMERA_MODELS.values()}


@dataclass(frozen=True)
class ColmapCamera:
    """One COLMAP camera: model name, image size in pixels and the model's parameters [n]."""

    id: int
    model: str
    width: int
    height: int
    params: np.ndarray


@dataclass(frozen=True)
class ColmapImage:
    """One registered image: world-to-camera pose and its 2D keypoints.

    Attributes:
        qvec: [4] world-to-camera rotation, quaternion (w, x, y, z).
        tvec: [3] world-to-camera translation.
        xys: [M, 2] keypoints in pixels (pixel centres at +0.5).
        point3D_ids: [M] int64 id of the observed 3D point, -1 for none.
    """

    id: int
    qvec: np.ndarray
    tvec: np.ndarray
    camera_id: int
    name: str
    xys: np.ndarray
    point3D_ids: np.ndarray


class ColmapPoints(NamedTuple):
    """Sparse points sorted by id: ids [P] int64, xyz [P, 3] float64, rgb [P, 3] uint8,
    error [P] float64 (mean reprojection error in pixels)."""

    ids: np.ndarray
    xyz: np.ndarray
    rgb: np.ndarray
    error: np.ndarray

    def sorted(self) -> "ColmapPoints":
        """The same points ordered by id, so binary and text files give identical arrays."""
        order = np.argsort(self.ids, kind="stable")
        return ColmapPoints(*(a[order] for a in self))


class _Reader:
    """Sequential little-endian reader over a byte buffer; a short read names the file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = path.read_bytes()
        self.pos = 0

    def unpack(self, fmt: str) -> tuple:
        size = struct.calcsize("<" + fmt)
        self._need(size)
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return values

    def array(self, dtype: np.dtype, count: int) -> np.ndarray:
        dtype = np.dtype(dtype)
        self._need(dtype.itemsize * count)
        out = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos)
        self.pos += dtype.itemsize * count
        return out

    def cstring(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise ValueError(f"{self.path}: truncated COLMAP binary file (unterminated name)")
        text = self.data[self.pos:end].decode("utf-8")
        self.pos = end + 1
        return text

    def finish(self) -> None:
        if self.pos != len(self.data):
            raise ValueError(f"{self.path}: {len(self.data) - self.pos} unexpected trailing bytes")

    def _need(self, size: int) -> None:
        if self.pos + size > len(self.data):
            raise ValueError(f"{self.path}: truncated COLMAP binary file (needs {size} bytes at "
                             f"offset {self.pos}, file has {len(self.data)})")


def read_cameras_binary(path: Path) -> dict[int, ColmapCamera]:
    """Read ``cameras.bin`` into {camera_id: ColmapCamera}."""
    r = _Reader(path)
    cameras = {}
    for _ in range(r.unpack("Q")[0]):
        camera_id, model_id, width, height = r.unpack("iiQQ")
        if model_id not in CAMERA_MODELS:
            raise ValueError(f"{path}: unknown camera model id {model_id}")
        name, n_params = CAMERA_MODELS[model_id]
        params = r.array(np.float64, n_params).copy()
        cameras[camera_id] = ColmapCamera(camera_id, name, width, height, params)
    r.finish()
    return cameras


def read_images_binary(path: Path) -> dict[int, ColmapImage]:
    """Read ``images.bin`` into {image_id: ColmapImage}."""
    r = _Reader(path)
    keypoint = np.dtype([("xy", "<f8", 2), ("id", "<i8")])
    images = {}
    for _ in range(r.unpack("Q")[0]):
        image_id, *pose, camera_id = r.unpack("i7di")
        name = r.cstring()
        points = r.array(keypoint, r.unpack("Q")[0])
        images[image_id] = ColmapImage(image_id, np.array(pose[:4]), np.array(pose[4:]),
                                       camera_id, name, points["xy"].copy(),
                                       points["id"].astype(np.int64))
    r.finish()
    return images


def read_points3D_binary(path: Path) -> ColmapPoints:
    """Read ``points3D.bin`` (tracks are skipped: images hold the 2D-3D links)."""
    r = _Reader(path)
    count = r.unpack("Q")[0]
    ids, xyz, rgb, error = (np.empty(count, np.int64), np.empty((count, 3)),
                            np.empty((count, 3), np.uint8), np.empty(count))
    for i in range(count):
        ids[i], *xyz[i], red, green, blue, error[i], track_length = r.unpack("Q3d3BdQ")
        rgb[i] = red, green, blue
        r.array(np.int32, 2 * track_length)
    r.finish()
    return ColmapPoints(ids, xyz, rgb, error).sorted()


def _data_lines(path: Path) -> list[str]:
    """Lines of a COLMAP text file without comments (blank lines kept: they carry meaning)."""
    return [line.strip() for line in path.read_text().splitlines() if not line.startswith("#")]


def read_cameras_text(path: Path) -> dict[int, ColmapCamera]:
    """Read ``cameras.txt``: ``CAMERA_ID MODEL WIDTH HEIGHT PARAMS...`` per line."""
    cameras = {}
    for line in filter(None, _data_lines(path)):
        fields = line.split()
        model = fields[1]
        if model not in _PARAMS_BY_NAME:
            raise ValueError(f"{path}: unknown camera model {model!r}")
        params = np.array(fields[4:], dtype=np.float64)
        if len(params) != _PARAMS_BY_NAME[model]:
            raise ValueError(f"{path}: camera {fields[0]} ({model}) has {len(params)} parameters, "
                             f"expected {_PARAMS_BY_NAME[model]}")
        cameras[int(fields[0])] = ColmapCamera(int(fields[0]), model, int(fields[2]),
                                               int(fields[3]), params)
    return cameras


def read_images_text(path: Path) -> dict[int, ColmapImage]:
    """Read ``images.txt``: a pose line, then a (possibly empty) line of ``X Y POINT3D_ID``."""
    lines = _data_lines(path)
    images = {}
    i = 0
    while i < len(lines):
        if not lines[i]:
            i += 1
            continue
        fields = lines[i].split()
        points = np.array(lines[i + 1].split() if i + 1 < len(lines) else [],
                          dtype=np.float64).reshape(-1, 3)
        image_id = int(fields[0])
        images[image_id] = ColmapImage(image_id, np.array(fields[1:5], dtype=np.float64),
                                       np.array(fields[5:8], dtype=np.float64), int(fields[8]),
                                       " ".join(fields[9:]), points[:, :2].copy(),
                                       points[:, 2].astype(np.int64))
        i += 2
    return images


def read_points3D_text(path: Path) -> ColmapPoints:
    """Read ``points3D.txt``: ``POINT3D_ID X Y Z R G B ERROR TRACK...`` per line."""
    rows = [line.split()[:8] for line in filter(None, _data_lines(path))]
    table = np.array(rows, dtype=np.float64).reshape(-1, 8)
    return ColmapPoints(table[:, 0].astype(np.int64), table[:, 1:4].copy(),
                        table[:, 4:7].astype(np.uint8), table[:, 7].copy()).sorted()


_READERS: dict[str, tuple[Callable, Callable]] = {
    "cameras": (read_cameras_binary, read_cameras_text),
    "images": (read_images_binary, read_images_text),
    "points3D": (read_points3D_binary, read_points3D_text),
}


def read_model_file(sparse_dir: str | Path, kind: str):
    """Read ``<sparse_dir>/<kind>.bin``, else ``<kind>.txt``; kind is cameras|images|points3D.

    Raises:
        FileNotFoundError: neither file exists.
        ValueError: the file is truncated or malformed (the message names it).
    """
    read_binary, read_text = _READERS[kind]
    sparse_dir = Path(sparse_dir)
    binary, text = sparse_dir / f"{kind}.bin", sparse_dir / f"{kind}.txt"
    if binary.is_file():
        return read_binary(binary)
    if text.is_file():
        try:
            return read_text(text)
        except (IndexError, ValueError) as exc:
            if str(exc).startswith(str(text)):
                raise
            raise ValueError(f"{text}: malformed COLMAP text file ({exc})") from None
    raise FileNotFoundError(f"{binary}: COLMAP {kind} file not found (nor {text.name})")


def read_colmap_model(sparse_dir: str | Path
                      ) -> tuple[dict[int, ColmapCamera], dict[int, ColmapImage], ColmapPoints]:
    """Read a whole sparse model folder: (cameras, images, points)."""
    return tuple(read_model_file(sparse_dir, kind) for kind in ("cameras", "images", "points3D"))
