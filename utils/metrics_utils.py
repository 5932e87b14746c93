"""Evaluation of rendered test views (the logic behind ``metrics.py``).

A model folder holds ``test/<method>/{renders,gt}/*.png`` (``ours_<N>`` from render.py,
``compressed_<layout>_<k>`` from the codec, ``peer_<codec>`` from another tool's file). Each
method gets PSNR, SSIM and, when an :class:`utils.lpips.LPIPS` network is given, LPIPS, per
view and averaged. Compressed methods also report size fields from
``compression/<layout>/iteration_<k>/report.json`` (or ``compression/peers/<codec>/peer.json``).
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from utils.image_utils import load_image, psnr
from utils.loss_utils import ssim
from utils.lpips import LPIPS
from utils.output_paths import (PEER_JSON, PER_VIEW_JSON, REPORT_JSON, RESULTS_JSON,
                                TEST_SPLIT, iteration_dir, parse_compressed_method,
                                parse_peer_method, peer_dir)
from utils.result_files import read_peer_report, read_report
from utils.system_utils import atomic_path

log = logging.getLogger(__name__)

# report.json key -> results.json key
_REPORT_FIELDS = {"size_bytes": "Size [Bytes]", "num_gaussians": "#Gaussians",
                  "bits_per_gaussian": "Bits/Gaussian"}


def evaluate_method(method_dir: Path, lpips_net: LPIPS | None = None,
                    device: torch.device | None = None, progress: bool = True
                    ) -> dict[str, dict[str, float]]:
    """Per-view metrics of one ``<method>/{renders,gt}`` folder.

    Returns:
        ``{"SSIM": {name: v}, "PSNR": {...}[, "LPIPS": {...}]}`` over the PNG names.

    Raises:
        FileNotFoundError: ``renders/`` or ``gt/`` is missing or empty.
        ValueError: the two folders hold different file names.
    """
    renders_dir, gt_dir = method_dir / "renders", method_dir / "gt"
    names = sorted(p.name for p in renders_dir.glob("*.png"))
    gt_names = sorted(p.name for p in gt_dir.glob("*.png"))
    if not names:
        raise FileNotFoundError(f"{renders_dir}: no PNG renders found")
    if names != gt_names:
        raise ValueError(f"{method_dir}: renders/ and gt/ hold different files "
                         f"({len(names)} vs {len(gt_names)} PNGs)")
    per_view: dict[str, dict[str, float]] = {"SSIM": {}, "PSNR": {}}
    if lpips_net is not None:
        per_view["LPIPS"] = {}
    with torch.no_grad():
        for name in tqdm(names, desc=f"Metric evaluation progress ({method_dir.name})",
                         disable=not progress):
            render = load_image(renders_dir / name)[:3].to(device)[None]
            gt = load_image(gt_dir / name)[:3].to(device)[None]
            per_view["SSIM"][name] = ssim(render, gt).item()
            per_view["PSNR"][name] = psnr(render, gt).item()
            if lpips_net is not None:
                per_view["LPIPS"][name] = lpips_net(render, gt).item()
    return per_view


def compression_report(model_dir: Path, method: str) -> dict[str, Any]:
    """Size fields for a ``compressed_<layout>_<k>`` (report.json) or ``peer_<codec>``
    (peer.json) method.

    Returns {} for other methods, and (with a warning) when the report file is missing.

    Raises:
        ValueError: the report is not JSON or lacks a key its readers rely on
            (``utils.result_files``).
    """
    saved, codec = parse_compressed_method(method), parse_peer_method(method)
    if saved is not None:
        path, read = iteration_dir(model_dir, *saved) / REPORT_JSON, read_report
    elif codec is not None:
        path, read = peer_dir(model_dir, codec) / PEER_JSON, read_peer_report
    else:
        return {}
    if not path.is_file():
        log.warning("%s: compression report for method '%s' not found; size omitted", path, method)
        return {}
    report = read(path)
    return {label: report[key] for key, label in _REPORT_FIELDS.items()}


def rendered_methods(model_dir: str | os.PathLike) -> list[str]:
    """The method folders under ``<model_dir>/test`` (render.py's outputs), sorted.

    Raises:
        FileNotFoundError: ``<model_dir>/test`` is missing or has no method folder.
    """
    test_dir = Path(model_dir) / TEST_SPLIT
    methods = sorted(p.name for p in test_dir.iterdir() if p.is_dir()) if test_dir.is_dir() else []
    if not methods:
        raise FileNotFoundError(f"{test_dir}: no rendered test methods found (run render.py)")
    return methods


def evaluate_model(model_dir: str | os.PathLike, lpips_net: LPIPS | None = None,
                   device: torch.device | None = None, progress: bool = True
                   ) -> dict[str, dict[str, Any]]:
    """Evaluate every method under ``<model_dir>/test`` and write results.json / per_view.json.

    Returns:
        ``{method: {"SSIM": mean, "PSNR": mean[, "LPIPS": mean][, size fields]}}``.

    Raises:
        FileNotFoundError: ``<model_dir>/test`` is missing or has no method folder.
    """
    model_dir = Path(model_dir)
    test_dir = model_dir / TEST_SPLIT
    methods = rendered_methods(model_dir)
    results: dict[str, dict[str, Any]] = {}
    per_view: dict[str, dict[str, dict[str, float]]] = {}
    for method in methods:
        per_view[method] = evaluate_method(test_dir / method, lpips_net, device, progress)
        results[method] = {metric: sum(values.values()) / len(values)
                           for metric, values in per_view[method].items()}
        results[method].update(compression_report(model_dir, method))
    for name, content in ((RESULTS_JSON, results), (PER_VIEW_JSON, per_view)):
        with atomic_path(model_dir / name) as tmp:
            tmp.write_text(json.dumps(content, indent=True))
    return results


def format_table(model_dir: str | os.PathLike, results: dict[str, dict[str, Any]]) -> str:
    """Plain-text table: one row per method, one column per reported quantity."""
    columns = ["PSNR", "SSIM", "LPIPS", *_REPORT_FIELDS.values()]
    columns = [c for c in columns if any(c in r for r in results.values())]
    width = max(len("method"), *(len(m) for m in results))
    lines = [f"Scene: {model_dir}", "  ".join([f"{'method':<{width}}", *(f"{c:>14}" for c in columns)])]
    for method, row in results.items():
        cells = [f"{row[c]:>14.7g}" if c in row else f"{'-':>14}" for c in columns]
        lines.append("  ".join([f"{method:<{width}}", *cells]))
    return "\n".join(lines)
