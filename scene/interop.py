"""Other tools' splat formats in and out, through ``splat-transform`` (utils/splat_transform.py).

In: a ``.spz``, ``.sog``, ``.splat``, ``.ksplat`` or PlayCanvas compressed ``.ply`` becomes a
standard 3DGS PLY in a temporary folder (:func:`standard_ply`), which ``GaussianModel.load_ply``
reads like any other. Out: :func:`export_model` writes a model as ``.ply`` (our own writer) or
``.compressed.ply``, ``.spz``, ``.sog`` or a self-contained ``.html`` viewer page (the tool,
from a temporary standard PLY).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from scene.formats import TOOL_EXTENSIONS, detect_format, export_format
from utils.splat_transform import convert

if TYPE_CHECKING:
    from scene.gaussian_model import GaussianModel


@contextlib.contextmanager
def standard_ply(path: str | os.PathLike) -> Iterator[Path]:
    """A standard 3DGS PLY of the model file ``path``, valid inside the ``with`` block.

    A graphdeco PLY is yielded as it is; another tool's format (told apart by content, see
    :mod:`scene.formats`) is converted by splat-transform into a temporary folder that is
    removed on exit. A ValueError raised while the converted PLY is read names ``path``.

    Raises:
        FileNotFoundError: ``path`` is missing; also :class:`SplatTransformUnavailable` (no
            Node.js) when a conversion is needed.
        ValueError: ``path`` is no splat model file (a bitstream, an unknown format), or the
            conversion failed; the message names ``path``.
    """
    path = Path(path)
    kind = detect_format(path)
    if kind == "ply":
        yield path
        return
    if kind not in TOOL_EXTENSIONS:
        raise ValueError(f"{path}: a {kind} bitstream, not a splat model file (PLY, "
                         f"{', '.join(TOOL_EXTENSIONS.values())})")
    with tempfile.TemporaryDirectory(prefix="gs-interop-") as tmp:
        # the tool picks the reader by file name, so the input gets its kind's extension
        named = Path(tmp) / f"input{TOOL_EXTENSIONS[kind]}"
        named.symlink_to(path.resolve())
        converted = convert(named, Path(tmp) / "model.ply", subject=path)
        try:
            yield converted
        except ValueError as exc:  # name the user's file, not the temporary PLY
            message = str(exc).removeprefix(f"{converted}: ")
            raise ValueError(f"{path} (as the PLY splat-transform converts it to): "
                             f"{message}") from None


def export_model(gaussians: "GaussianModel", path: str | os.PathLike) -> Path:
    """Write ``gaussians`` to ``path`` in the format its extension names (atomic).

    Args:
        gaussians: the model (its raw parameters are written, whatever its device).
        path: ``.ply``, ``.compressed.ply``, ``.spz``, ``.sog`` or ``.html``.

    Raises:
        ValueError: an unknown extension, or splat-transform failed (nothing is written).
        SplatTransformUnavailable: a format other than ``.ply`` without Node.js.
    """
    path = Path(path)
    if export_format(path) == "ply":
        gaussians.save_ply(path)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gs-export-") as tmp:
        source = Path(tmp) / "model.ply"
        gaussians.save_ply(source)
        return convert(source, path, subject=path)
