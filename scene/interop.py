"""Other tools' splat formats in and out, through ``splat-transform`` (utils/splat_transform.py).

In: a ``.spz``, ``.sog``, ``.splat``, ``.ksplat`` or PlayCanvas compressed ``.ply`` becomes a
standard 3DGS PLY in a temporary folder (:func:`standard_ply`), which ``GaussianModel.load_ply``
reads like any other. Out: :func:`export_model` writes a model as ``.ply`` (our own writer) or
``.compressed.ply``, ``.spz``, ``.sog`` or a self-contained ``.html`` viewer page (the tool,
from a temporary standard PLY).
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from scene.formats import TOOL_EXTENSIONS, detect_format, export_format
from scene.ply import logger as ply_logger
from utils.splat_transform import convert

if TYPE_CHECKING:
    from scene.gaussian_model import GaussianModel


class _UserFileNames(logging.Filter):
    """Rewrites a message about the converted PLY (``<converted>: ...``) to name the user's
    file instead, as :func:`standard_ply` does for its errors."""

    def __init__(self, converted: Path, path: Path) -> None:
        super().__init__()
        self.converted, self.path = converted, path

    def rename(self, message: str) -> str:
        """``message`` naming the user's file when it begins with the converted PLY."""
        prefix = f"{self.converted}: "
        if not message.startswith(prefix):
            return message
        return (f"{self.path} (as the PLY splat-transform converts it to): "
                f"{message.removeprefix(prefix)}")

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.rename(record.getMessage()), None
        return True


@contextlib.contextmanager
def standard_ply(path: str | os.PathLike) -> Iterator[Path]:
    """A standard 3DGS PLY of the model file ``path``, valid inside the ``with`` block.

    A graphdeco PLY is yielded as it is; another tool's format (told apart by content, see
    :mod:`scene.formats`) is converted by splat-transform into a temporary folder that is
    removed on exit. A ValueError raised, or a warning of :mod:`scene.ply` logged, while the
    converted PLY is read names ``path``, not the temporary file.

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
        names = _UserFileNames(converted, path)
        ply_logger.addFilter(names)
        try:
            yield converted
        except ValueError as exc:
            raise ValueError(names.rename(str(exc))) from None
        finally:
            ply_logger.removeFilter(names)


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
