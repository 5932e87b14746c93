"""A real-looking model without a scene: a large textured ground plane with an object on it,
stored Y-down as PlayCanvas stores scenes, SH degree 2 from a 65,536-entry palette.

    python benchmarks/noscene_model.py -o noscene_500k.ply [--gaussians 500000] [--seed 0]
        [--object ../shared/data/pretrained_ply/small_3dgs_sh3.ply]

What users bring without photographs (issue 20): a model someone else trained, often passed
through PlayCanvas's tools, whose SH rows come from a palette (SOG stores 64k of them), Y-down.
Deterministic for a seed. The model is built in a Z-up frame, then turned by a proper rotation
(x, y, z) → (x, −z, y), so that up is −Y in the file:

* object (a fifth of the Gaussians): the shared pretrained PLY's bulk (the 90 % of its Gaussians
  nearest its median, so its far floaters stay out), scaled to a radius of 1, its principal
  axis of largest spread vertical, standing on the plane; replicated in place with jittered
  positions, smaller scales and slightly turned rotations until it holds its share;
* ground: a 10 × 10 plane of flat Gaussians (normal scale a tenth of the tangential ones,
  mostly opaque) on a jittered grid, coloured by a texture: cobblestone cells (each its own
  colour) with dark joints, under a low-frequency tint;
* f_rest: every Gaussian points into a palette of 65,536 SH-2 rows made from the object's
  trained degree-1 and degree-2 coefficients (each row one of them with a random gain and
  noise): the object's Gaussians point at variants of their own rows, the ground's at any.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scene.ply import read_ply, write_ply  # noqa: E402
from utils.cli import run_main  # noqa: E402

DEFAULT_OBJECT = REPO.parent / "shared" / "data" / "pretrained_ply" / "small_3dgs_sh3.ply"
PALETTE_SIZE = 65536
OBJECT_SHARE = 0.2
GROUND_HALF_SIZE = 5.0
SH_C0 = 0.28209479177387814
#: the stored frame's up direction (PlayCanvas: Y down)
STORED_UP = np.array([0.0, -1.0, 0.0])
#: Z-up frame → stored frame: (x, y, z) → (x, −z, y), a rotation of −90° about X
TO_STORED = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of wxyz quaternions a ⊗ b (broadcast over rows)."""
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw],
                    axis=-1)


def matrix_quat(matrix: np.ndarray) -> np.ndarray:
    """wxyz quaternion of a proper rotation matrix."""
    from scipy.spatial.transform import Rotation

    x, y, z, w = Rotation.from_matrix(matrix).as_quat()
    return np.array([w, x, y, z])


def rotate_model(arrays: dict[str, np.ndarray], matrix: np.ndarray) -> dict[str, np.ndarray]:
    """The model turned by a proper rotation (positions and Gaussian rotations; the SH rows are
    kept as they are: a palette has no frame)."""
    turned = dict(arrays)
    turned["xyz"] = (arrays["xyz"].astype(np.float64) @ matrix.T).astype(np.float32)
    turned["rotation"] = quat_multiply(matrix_quat(matrix)[None, :],
                                       arrays["rotation"].astype(np.float64)).astype(np.float32)
    return turned


def _object(source: dict[str, np.ndarray], count: int, rng: np.random.Generator
            ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The object's ``count`` Gaussians in the Z-up frame and each one's row in the bulk."""
    xyz = source["xyz"].astype(np.float64)
    centre = np.median(xyz, axis=0)
    distance = np.linalg.norm(xyz - centre, axis=1)
    bulk = np.flatnonzero(distance <= np.quantile(distance, 0.9))
    radius = float(distance[bulk].max())
    points = (xyz[bulk] - centre) / radius
    _, frame = np.linalg.eigh(points.T @ points)  # ascending spread: the largest becomes z
    if np.linalg.det(frame) < 0:
        frame[:, 0] = -frame[:, 0]
    points = points @ frame
    member = np.arange(count) % len(bulk)
    copy = (np.arange(count) >= len(bulk))[:, None]  # the first copy is the object as trained
    rows = bulk[member]
    log_scale = source["scaling"][rows].astype(np.float64) - math.log(radius) - 0.5 * copy
    jitter = rng.normal(size=(count, 3)) * np.exp(log_scale).mean(axis=1, keepdims=True)
    placed = points[member] + 0.3 * jitter * copy
    placed[:, 2] -= np.quantile(points[:, 2], 0.02)  # standing on the plane z = 0
    turn = np.concatenate([np.ones((count, 1)), 0.05 * rng.normal(size=(count, 3)) * copy],
                          axis=1)
    rotation = quat_multiply(turn, quat_multiply(matrix_quat(frame.T)[None, :],
                                                 source["rotation"][rows].astype(np.float64)))
    return {"xyz": placed, "f_dc": source["f_dc"][rows].astype(np.float64),
            "opacity": source["opacity"][rows].astype(np.float64), "scaling": log_scale,
            "rotation": rotation}, member


def _ground(count: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The textured plane z = 0 in the Z-up frame (module docstring)."""
    from scipy.spatial import cKDTree

    half = GROUND_HALF_SIZE
    xy = rng.uniform(-half, half, size=(count, 2))
    xyz = np.concatenate([xy, rng.normal(scale=0.003, size=(count, 1))], axis=1)
    cells = rng.uniform(-half, half, size=(int((2 * half / 0.25) ** 2), 2))
    near, cell = cKDTree(cells).query(xy, k=2)
    stone = rng.uniform(0.35, 0.65, size=(len(cells), 1)) * np.array([1.0, 0.93, 0.8]) \
        + rng.normal(scale=0.04, size=(len(cells), 3))
    joint = np.clip((near[:, 1] - near[:, 0]) / 0.03, 0.0, 1.0)[:, None]
    tint = 1.0 + 0.15 * np.sin(xy[:, :1] * 0.9 + 1.3) * np.cos(xy[:, 1:] * 0.7 - 0.4)
    colour = np.clip((stone[cell[:, 0]] * (0.35 + 0.65 * joint)) * tint
                     + rng.normal(scale=0.02, size=(count, 3)), 0.02, 0.98)
    spacing = 2 * half / math.sqrt(count)
    tangent = math.log(0.7 * spacing) + rng.normal(scale=0.25, size=(count, 2))
    normal = math.log(0.07 * spacing) + rng.normal(scale=0.25, size=(count, 1))
    yaw = rng.uniform(0, 2 * math.pi, size=count)
    flat = np.stack([np.cos(yaw / 2), np.zeros(count), np.zeros(count), np.sin(yaw / 2)], axis=1)
    tilt = np.concatenate([np.ones((count, 1)), 0.05 * rng.normal(size=(count, 3))], axis=1)
    return {"xyz": xyz, "f_dc": ((colour - 0.5) / SH_C0)[:, None, :],
            "opacity": rng.normal(3.0, 1.5, size=(count, 1)),
            "scaling": np.concatenate([tangent, normal], axis=1),
            "rotation": quat_multiply(tilt, flat)}


def _palette(source_rest: np.ndarray, size: int, rng: np.random.Generator
             ) -> tuple[np.ndarray, int]:
    """``size`` SH-2 rows [P, 8, 3] from the trained rows ``source_rest`` [B, 8, 3]: row
    b·V + v (v < V) is a variant of row b (V = max(1, size // B)); the rest mix two rows.
    Returns (palette, V)."""
    count = min(len(source_rest), size)
    source_rest = source_rest[:count]
    variants = size // count
    spread = source_rest.std(axis=0)
    base = np.repeat(source_rest, variants, axis=0)
    pairs = rng.integers(count, size=(size - len(base), 2))
    mixed = 0.5 * (source_rest[pairs[:, 0]] + source_rest[pairs[:, 1]])
    rows = np.concatenate([base, mixed])
    gain = np.exp(rng.normal(scale=0.25, size=(size, 1, 1)))
    return rows * gain + 0.3 * spread * rng.normal(size=rows.shape), variants


def build_model(gaussians: int = 500_000, seed: int = 0, object_ply: Path = DEFAULT_OBJECT,
                palette_size: int = PALETTE_SIZE) -> dict[str, np.ndarray]:
    """The model as :func:`scene.ply.read_ply` arrays (float32), in the stored (Y-down) frame.

    Raises:
        ValueError: fewer than 1,000 Gaussians; FileNotFoundError: no object PLY.
    """
    if gaussians < 1000 or not 1 <= palette_size <= gaussians:
        raise ValueError(f"noscene_model: at least 1000 Gaussians and a palette of 1 to that "
                         f"many rows, got {gaussians} and {palette_size}")
    rng = np.random.default_rng(seed)
    source = read_ply(object_ply)
    if source["f_rest"].shape[1] < 8:
        raise ValueError(f"{object_ply}: the object needs SH degree >= 2")
    n_object = int(round(OBJECT_SHARE * gaussians))
    thing, member = _object(source, n_object, rng)
    ground = _ground(gaussians - n_object, rng)
    bulk_rest = source["f_rest"][:, :8, :].astype(np.float64)
    centre = np.median(source["xyz"], axis=0)
    distance = np.linalg.norm(source["xyz"] - centre, axis=1)
    palette, variants = _palette(bulk_rest[distance <= np.quantile(distance, 0.9)],
                                 palette_size, rng)
    own = member % (palette_size // variants)  # a palette smaller than the bulk wraps
    index = np.concatenate([own * variants + rng.integers(variants, size=n_object),
                            rng.integers(palette_size, size=gaussians - n_object)])
    model = {key: np.concatenate([thing[key], ground[key]]).astype(np.float32) for key in thing}
    model["f_rest"] = palette[index].astype(np.float32)
    return rotate_model(model, TO_STORED)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", required=True, help="PLY to write")
    parser.add_argument("--gaussians", type=int, default=500_000, help="model size (500,000)")
    parser.add_argument("--palette", type=int, default=PALETTE_SIZE,
                        help=f"SH palette rows ({PALETTE_SIZE:,})")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument("--object", default=str(DEFAULT_OBJECT), help="the object's PLY (SH >= 2)")
    args = parser.parse_args(argv)
    write_ply(args.output, build_model(args.gaussians, args.seed, Path(args.object),
                                          args.palette))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "noscene_model.py", sys.argv[1:]))
