"""Read and write the standard 3DGS PLY (binary little-endian ``vertex`` element, float32).

Properties, in this order: ``x y z nx ny nz f_dc_0..2 f_rest_0..(3(K-1)-1) opacity
scale_0..2 rot_0..3``. Values are raw (pre-activation): opacity logits, log scales, unnormalized
wxyz quaternions. ``f_rest`` is channel-major: field ``f_rest_{c*(K-1)+k}`` holds SH coefficient
``k+1`` of colour channel ``c``. Arrays cross this module as numpy float32, keyed like the
parameters of :class:`scene.gaussian_model.GaussianModel` plus ``normals``.

Tools that store opacity on 8 bits decode 0 and 1 to logits of -inf and +inf (a PlayCanvas
compressed.ply read back by splat-transform has them); such logits are clamped to
±``MAX_OPACITY_LOGIT`` with one warning. Every other non-finite value is refused.
"""
from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path
from typing import Mapping

import numpy as np
from plyfile import PlyData, PlyElement

from utils.sh_utils import sh_degree_of
from utils.system_utils import atomic_path

# Per-row width of every array except f_rest, whose width depends on the SH degree.
_FIXED_FIELDS: dict[str, list[str]] = {
    "xyz": ["x", "y", "z"],
    "normals": ["nx", "ny", "nz"],
    "f_dc": ["f_dc_0", "f_dc_1", "f_dc_2"],
    "opacity": ["opacity"],
    "scaling": ["scale_0", "scale_1", "scale_2"],
    "rotation": ["rot_0", "rot_1", "rot_2", "rot_3"],
}
_REST_FIELD = re.compile(r"f_rest_(\d+)$")

#: ln(2^23 - 1) in float32 (15.942385): the largest float32 logit whose float32 sigmoid,
#: 1 - 2^-23, is below 1 and maps back to the same logit through log(p / (1 - p)); beyond it
#: torch's float32 sigmoid reaches 1 and the logit of that is inf. Its negative is the mirror.
MAX_OPACITY_LOGIT = float(np.float32(math.log(2**23 - 1)))
#: rows of the vertex table :func:`read_ply` gathers and :func:`write_ply` writes at a time
#: (1 MB of a 62-column table)
_GATHER_ROWS = 4096

logger = logging.getLogger(__name__)


def field_names(sh_degree: int) -> dict[str, list[str]]:
    """PLY property names per array, in file order, for SH degree ``sh_degree``."""
    n_rest = 3 * ((sh_degree + 1) ** 2 - 1)
    names = dict(_FIXED_FIELDS)
    names["f_rest"] = [f"f_rest_{i}" for i in range(n_rest)]
    order = ("xyz", "normals", "f_dc", "f_rest", "opacity", "scaling", "rotation")
    return {key: names[key] for key in order}


def sh_degree_of_rest_count(n_rest: int) -> int | None:
    """SH degree d with ``n_rest == 3 * ((d + 1)**2 - 1)``, or None if there is none."""
    return None if n_rest % 3 else sh_degree_of(n_rest // 3 + 1)


def standard_ply_size_bytes(num_gaussians: int, sh_degree: int) -> int:
    """Byte size of the standard binary 3DGS PLY of ``num_gaussians`` at ``sh_degree`` (what
    :func:`write_ply` writes; the uncompressed reference of compression ratios)."""
    names = [name for cols in field_names(sh_degree).values() for name in cols]
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {num_gaussians}",
              *[f"property float {name}" for name in names], "end_header"]
    return len("\n".join(header).encode()) + 1 + 4 * len(names) * num_gaussians


def read_ply(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a 3DGS PLY of any SH degree; normals are optional (zeros when absent).

    Returns:
        float32 arrays: ``xyz`` [N, 3], ``normals`` [N, 3], ``f_dc`` [N, 1, 3],
        ``f_rest`` [N, K-1, 3] (K = (d+1)², d inferred from the f_rest count), ``opacity``
        [N, 1] logits, ``scaling`` [N, 3] log scales, ``rotation`` [N, 4] raw wxyz.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is truncated or not a PLY, has no ``vertex`` element, lacks a
            field, has an f_rest count that is not 3·((d+1)²-1), or holds NaN, or ±inf in a
            field other than ``opacity`` (infinite opacity logits are clamped, see the module).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: PLY file not found")
    try:
        # Memory-mapped (fast); plyfile checks the body length, so truncation fails here.
        ply = PlyData.read(str(path))
        vertex = ply["vertex"].data
    except KeyError:
        raise ValueError(f"{path}: PLY has no 'vertex' element") from None
    except Exception as exc:  # plyfile raises several types for malformed input
        raise ValueError(f"{path}: not a readable PLY file ({type(exc).__name__}: {exc})") from None

    present = set(vertex.dtype.names or ())
    rest_ids = sorted(int(m.group(1)) for name in present if (m := _REST_FIELD.match(name)))
    degree = sh_degree_of_rest_count(len(rest_ids))
    if degree is None:
        raise ValueError(f"{path}: {len(rest_ids)} f_rest fields; expected 3*((d+1)^2-1) "
                         "for an SH degree d (0, 9, 24, 45, ...)")
    names = field_names(degree)
    if not present & set(names["normals"]):
        names.pop("normals")
    missing = [name for cols in names.values() for name in cols if name not in present]
    if missing:
        raise ValueError(f"{path}: missing PLY field(s) {', '.join(missing)}")

    n = len(vertex)
    arrays = _columns(vertex, names)
    infinite_opacities = int(np.isinf(arrays["opacity"]).sum())
    np.clip(arrays["opacity"], -MAX_OPACITY_LOGIT, MAX_OPACITY_LOGIT, out=arrays["opacity"])
    # one pass per array; the fields are named only for an array that holds a bad value
    bad = [name for key, cols in names.items() if not np.isfinite(arrays[key]).all()
           for j, name in enumerate(cols) if not np.isfinite(arrays[key][:, j]).all()]
    if bad:
        raise ValueError(f"{path}: non-finite values (NaN/inf) in field(s) {', '.join(bad)}")
    if infinite_opacities:
        logger.warning("%s: %d infinite opacity logit(s) (opacity 0 or 1) clamped to ±%.6f",
                       path, infinite_opacities, MAX_OPACITY_LOGIT)

    arrays.setdefault("normals", np.zeros((n, 3), np.float32))
    arrays["f_dc"] = arrays["f_dc"].reshape(n, 1, 3)
    k_rest = len(names["f_rest"]) // 3
    arrays["f_rest"] = arrays["f_rest"].reshape(n, 3, k_rest).transpose(0, 2, 1).copy()
    return arrays


def _columns(vertex: np.ndarray, names: Mapping[str, list[str]]) -> dict[str, np.ndarray]:
    """[N, len(cols)] float32 copies of the named fields of the structured ``vertex`` array,
    by key of ``names``.

    When every field is a little-endian float32 (the standard PLY), the rows are viewed as one
    float32 table read once, :data:`_GATHER_ROWS` rows at a time into every key's columns (a
    block stays in the caches; a pass over the whole table per key reads a 1.5 GB file seven
    times at 6 M rows); else field by field."""
    n = len(vertex)
    fields = vertex.dtype.fields
    if not (all(fields[name][0] == np.dtype("<f4") for name in vertex.dtype.names)
            and vertex.dtype.itemsize == 4 * len(fields) and vertex.flags.c_contiguous):
        return {key: np.stack([vertex[name] for name in cols], axis=1).astype(np.float32,
                                                                              copy=False)
                if cols else np.zeros((n, 0), np.float32)  # degree 0: no f_rest field
                for key, cols in names.items()}
    table = vertex.view("<f4").reshape(n, len(fields))
    indices = {key: np.array([fields[name][1] // 4 for name in cols], dtype=np.intp)
               for key, cols in names.items()}
    arrays = {key: np.empty((n, len(cols)), np.float32) for key, cols in names.items()}
    for start in range(0, n, _GATHER_ROWS):
        block = table[start:start + _GATHER_ROWS]
        for key, columns in indices.items():
            np.take(block, columns, axis=1, out=arrays[key][start:start + _GATHER_ROWS])
    return arrays


def write_ply(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write arrays shaped as :func:`read_ply` returns them (``normals`` optional: zeros).

    The file is written atomically: ``path`` is replaced only once the write succeeded.

    Raises:
        ValueError: a key is missing or an array has the wrong shape.
    """
    path = Path(path)
    missing = [k for k in ("xyz", "f_dc", "f_rest", "opacity", "scaling", "rotation")
               if k not in arrays]
    if missing:
        raise ValueError(f"write_ply({path}): missing array(s) {', '.join(missing)}")
    n = np.shape(arrays["xyz"])[0]
    rest = np.asarray(arrays["f_rest"], dtype=np.float32)
    degree = sh_degree_of_rest_count(3 * rest.shape[1]) if rest.ndim == 3 else None
    if degree is None or rest.shape[::2] != (n, 3):
        raise ValueError(f"write_ply({path}): f_rest must be [N, (d+1)^2-1, 3], got {rest.shape}")

    columns = {"normals": np.zeros((n, 3), np.float32), **arrays,
               "f_rest": rest.transpose(0, 2, 1)}
    names = field_names(degree)
    slabs = []  # (first column, [N, S, W] values: S slabs of W columns each)
    start = 0
    for key, cols in names.items():
        block = np.asarray(columns[key], dtype=np.float32)
        if block.ndim < 1 or (len(block), math.prod(block.shape[1:])) != (n, len(cols)):
            raise ValueError(f"write_ply({path}): '{key}' must hold {len(cols)} values for each "
                             f"of the {n} Gaussians, got shape {block.shape}")
        # a 3-D block ([N, 3, K-1] f_rest transposed channel-major, [N, 1, 3] f_dc) goes in
        # [N, last] slabs
        slabs.append((start, block if block.ndim == 3 else block.reshape(n, 1, -1)))
        start += len(cols)
    dtype = np.dtype([(name, "<f4") for cols in names.values() for name in cols])
    # the header of n rows from a zero-stride view: no table of the whole file in memory
    header = PlyData([PlyElement.describe(np.broadcast_to(np.zeros(1, dtype), (n,)), "vertex")],
                     byte_order="<").header
    rows = np.empty((min(n, _GATHER_ROWS), start), dtype="<f4")
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(header.encode("ascii") + b"\n")
        # a block of rows at a time, each value copied once into a block in the caches
        for first in range(0, n, _GATHER_ROWS):
            part = rows[:min(_GATHER_ROWS, n - first)]
            for column, values in slabs:
                width = values.shape[-1]
                for j in range(values.shape[1]):
                    part[:, column + j * width:column + (j + 1) * width] = \
                        values[first:first + len(part), j]
            handle.write(memoryview(part).cast("B"))
    return path
