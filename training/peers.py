"""Other tools' codecs on a trained model, measured like ours (the counterpart of ``compress.py``).

Users compare our bitstreams with Niantic's SPZ and PlayCanvas's SOG, both written and read by
PlayCanvas's ``splat-transform`` (``utils/splat_transform.py``). :func:`run_peer` encodes the
model's standard PLY into ``<model>/compression/peers/<codec>/model.<ext>``, decodes that file
back to a standard PLY with the same tool, renders the decoded model from the given views into
``<model>/test/peer_<codec>/{renders,gt}`` (PNG, as render.py writes its folders, so metrics.py
and the HTML report pick it up) and writes ``peer.json`` beside the file: its size, bits per
input Gaussian, the tool's wall time to encode and to decode (Node.js start included), and
PSNR / SSIM of the PNGs as metrics.py computes them. Paths: ``utils/output_paths.py``; the file:
``reporting.codec_results.write_peer_report``.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from gaussian_renderer import render
from reporting.codec_results import write_peer_report
from scene.cameras import Camera
from scene.formats import TOOL_EXTENSIONS, ply_vertex_count
from scene.gaussian_model import GaussianModel
from scene.interop import standard_ply
from utils.metrics_utils import evaluate_method
from utils.output_paths import TEST_SPLIT, peer_dir, peer_method, render_dir
from utils.render_utils import render_views
from utils.splat_transform import convert, splat_transform_version

logger = logging.getLogger(__name__)

#: the other tools' codecs we measure ourselves against: codec (a ``scene.formats`` kind) → label
PEER_CODECS: Mapping[str, str] = {"spz": "SPZ (Niantic)", "sog": "SOG (PlayCanvas)"}
ENCODED_STEM = "model"


def run_peer(model_path: str | os.PathLike, codec: str, ply: str | os.PathLike,
             views: Sequence[Camera], *, sh_degree: int, pipe: Any,
             background: torch.Tensor, quiet: bool = False) -> dict[str, Any]:
    """Encode ``ply`` with ``codec``, decode it, render and score ``views``, write peer.json.

    Args:
        model_path: the model folder the results go to (module docstring).
        codec: a key of :data:`PEER_CODECS`.
        ply: the uncompressed standard 3DGS PLY.
        views: cameras whose ``original_image`` is the reference (a scene's test views, or a
            camera ring holding the uncompressed model's renders); empty: nothing is rendered
            and the quality is left None.
        sh_degree: the SH degree of the model (the decoded file's may not exceed it).
        pipe: PipelineParams-like (``backend``).
        background: [3] background colour of the renders.
        quiet: no progress bar.

    Returns:
        The content of peer.json.

    Raises:
        ValueError: an unknown codec, or the tool failed (nothing of this codec is left half
            written: the tool's output is renamed into place only when complete).
        SplatTransformUnavailable: no Node.js.
    """
    if codec not in PEER_CODECS:
        raise ValueError(f"unknown peer codec {codec!r}; expected one of {tuple(PEER_CODECS)}")
    ply = Path(ply)
    folder = peer_dir(model_path, codec)
    encoded = folder / f"{ENCODED_STEM}{TOOL_EXTENSIONS[codec]}"
    input_gaussians = ply_vertex_count(ply)
    start = time.perf_counter()
    convert(ply, encoded)
    encode_seconds = time.perf_counter() - start
    gaussians = GaussianModel(sh_degree)
    start = time.perf_counter()
    with standard_ply(encoded) as decoded:
        decode_seconds = time.perf_counter() - start
        gaussians.load_ply(decoded)
    quality: dict[str, Any] = {"psnr": None, "ssim": None}
    if views:
        device = views[0].device
        gaussians.to(device)
        out_dir = render_dir(model_path, TEST_SPLIT, peer_method(codec))
        shutil.rmtree(out_dir, ignore_errors=True)  # no stale view of an earlier run stays
        render_views(views, lambda view: render(view, gaussians, pipe, background.to(device))
                     ["render"], out_dir, quiet=quiet)
        per_view = evaluate_method(out_dir, device=device, progress=not quiet)
        quality = {metric.lower(): sum(values.values()) / len(values)
                   for metric, values in per_view.items()}
    size = encoded.stat().st_size
    report = {"codec": codec, "label": PEER_CODECS[codec],
              "tool": f"splat-transform {splat_transform_version() or 'unknown version'}",
              "file": encoded.name, "size_bytes": size,
              "num_gaussians": gaussians.num_gaussians, "input_gaussians": input_gaussians,
              "bits_per_gaussian": 8.0 * size / max(gaussians.num_gaussians, 1),
              "bits_per_input_gaussian": 8.0 * size / max(input_gaussians, 1),
              "encode_seconds": encode_seconds, "decode_seconds": decode_seconds,
              "ply_size_bytes": ply.stat().st_size, "source": str(ply.resolve()),
              "views": len(views), **quality}
    write_peer_report(folder, report)
    logger.info("%s: %d bytes, %.1f bits per input Gaussian%s", codec, size,
                report["bits_per_input_gaussian"],
                "" if quality["psnr"] is None else f", PSNR {quality['psnr']:.2f} dB")
    return report
