"""The codec's result files: one ``report.json`` per saved bitstream, the model's
``compression/results.csv`` (one row per saved bitstream or RD-sweep point), and one
``peer.json`` per other tool's codec run on the model (``compression/peers/<codec>/``).

The codec runner (``training/compress.py``), the peers runner (``training/peers.py``) and the
RD sweep (``scripts/rd_sweep.py``) write them; the HTML report reads results.csv
(``read_results_csv``). report.json and peer.json are read through ``utils.result_files``
(metrics.py's evaluation reads them too, below this package); the codec core writes none.
Names and the CSV header come from ``utils/output_paths.py``.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from utils.output_paths import (PEER_JSON, REPORT_JSON, RESULTS_HEADER, results_csv_path,
                                submethod_layout)
from utils.result_files import PEER_REPORT_KEYS
from utils.system_utils import atomic_path

#: report.json keys taken from the codec's save info (bits per coded Gaussian and per Gaussian
#: of the model before pruning and merging; the depth and codebook size that ran)
SAVE_INFO_KEYS = ("size_bytes", "num_gaussians", "bits_per_gaussian", "bits_per_input_gaussian",
                  "encode_seconds", "decode_seconds", "depth", "codebook_size")


@dataclass(frozen=True)
class ResultsRow:
    """One row of ``compression/results.csv``; quality None when it was not measured."""

    submethod: str
    psnr: Optional[float]
    ssim: Optional[float]
    lpips: Optional[float]
    size_bytes: int
    num_gaussians: int

    @property
    def layout(self) -> str:
        """The layout of the row (``<layout>_<k>`` or ``<layout>_<k>_b<bits>``)."""
        return submethod_layout(self.submethod)


def _finite_or_none(value: Optional[float]) -> Optional[float]:
    return None if value is None or not math.isfinite(float(value)) else float(value)


def write_report(out_dir: str | os.PathLike, *, layout: str, iteration: int,
                 save_info: Mapping[str, Any], psnr: Optional[float], ssim: Optional[float],
                 lpips: Optional[float], ply_size_bytes: Optional[int],
                 settings: Any, finetune_seconds: Optional[float] = None,
                 extra: Optional[Mapping[str, Any]] = None) -> Path:
    """Write ``<out_dir>/report.json`` (atomic) beside the saved bitstream.

    Args:
        out_dir: the iteration (or sweep) folder.
        layout, iteration: which save this is.
        save_info: what ``compression.bitstream.save`` returned.
        psnr, ssim, lpips: float-render metrics on the evaluation views (None when unavailable).
        ply_size_bytes: size of the uncompressed standard PLY of the pre-compression model.
        settings: the resolved CompressionParams (or a dict of settings).
        finetune_seconds: the finetune time up to this save, evaluations and saves excluded
            (None: no finetune ran, e.g. without cameras or for an RD-sweep point).
        extra: further JSON-serialisable keys (e.g. ``eval_split``).

    Returns:
        Path of report.json.
    """
    settings = dataclasses.asdict(settings) if dataclasses.is_dataclass(settings) \
        else dict(settings)
    report = {"layout": layout, "iteration": int(iteration), "psnr": _finite_or_none(psnr),
              "ssim": _finite_or_none(ssim), "lpips": _finite_or_none(lpips),
              **{key: save_info[key] for key in SAVE_INFO_KEYS},
              "ply_size_bytes": ply_size_bytes, "finetune_seconds": finetune_seconds,
              **(extra or {}), "settings": settings}
    path = Path(out_dir) / REPORT_JSON
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    return path


def write_peer_report(folder: str | os.PathLike, report: Mapping[str, Any]) -> Path:
    """Write ``<folder>/peer.json`` (atomic): :data:`PEER_REPORT_KEYS` plus optional quality
    (``psnr``, ``ssim``, ``lpips``: None when not measured) and further JSON-serialisable keys.

    Raises:
        ValueError: a key of :data:`PEER_REPORT_KEYS` is missing.
    """
    missing = [key for key in PEER_REPORT_KEYS if key not in report]
    if missing:
        raise ValueError(f"peer report lacks {missing}")
    content = {**report, **{key: _finite_or_none(report.get(key))
                            for key in ("psnr", "ssim", "lpips")}}
    path = Path(folder) / PEER_JSON
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(content, indent=2) + "\n")
    return path


def append_results(model_path: str | os.PathLike, rows: Sequence[ResultsRow]) -> Path:
    """Append rows to ``<model>/compression/results.csv`` (header written when new).

    Quality is written with 6 decimals, empty when None. The file is rewritten atomically,
    so a crash never leaves a half row.
    """
    path = results_csv_path(model_path)
    existing = path.read_text() if path.is_file() else ""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if not existing:
        writer.writerow(RESULTS_HEADER)
    for row in rows:
        writer.writerow([row.submethod, *("" if v is None else f"{float(v):.6f}"
                                          for v in (row.psnr, row.ssim, row.lpips)),
                         int(row.size_bytes), int(row.num_gaussians)])
    with atomic_path(path) as tmp:
        tmp.write_text(existing + buffer.getvalue())
    return path


def read_results_csv(path: str | os.PathLike) -> list[ResultsRow]:
    """Rows of a ``results.csv`` ([] when absent); a repeated Submethod keeps its last row.

    Raises:
        ValueError: the header is not the codec's results header, or a malformed row.
    """
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows or tuple(rows[0]) != RESULTS_HEADER:
        raise ValueError(f"{path}: expected header {','.join(RESULTS_HEADER)}, "
                         f"found {','.join(rows[0]) if rows else 'an empty file'}")

    def quality(cell: str) -> Optional[float]:
        return None if cell in ("", "nan") else float(cell)

    latest: dict[str, ResultsRow] = {}
    for line_no, row in enumerate(rows[1:], start=2):
        try:
            latest[row[0]] = ResultsRow(row[0], quality(row[1]), quality(row[2]),
                                        quality(row[3]), int(row[4]), int(row[5]))
        except (IndexError, ValueError):
            raise ValueError(f"{path}: line {line_no} is not a results row: {row}") from None
    return list(latest.values())
