"""What the sweep reads from the outputs of train.py, render.py and metrics.py.

The ONE module of ``sweeps/`` that knows the codec's layout names and the output paths and
names of the entry points; re-point these imports when they move (a layout registry, one
module of output paths).
"""
from __future__ import annotations

from pathlib import Path

from compression.pipeline import LAYOUTS, iteration_dir
from utils.system_utils import searchForMaxIteration

__all__ = ["LAYOUTS", "compressed_method", "latest_report", "metrics_file", "trained_ply"]

_REPORT_FILE = "report.json"    # the codec's report beside bins.zip
_METRICS_FILE = "results.json"  # metrics.py, per model folder


def latest_report(model_path: Path, layout: str) -> Path:
    """``report.json`` of the latest saved finetune iteration of ``layout`` in a model folder.

    Raises:
        FileNotFoundError: the layout has no saved iteration.
    """
    layout_folder = iteration_dir(model_path, layout, 0).parent
    return iteration_dir(model_path, layout, searchForMaxIteration(layout_folder)) / _REPORT_FILE


def compressed_method(layout: str, iteration: int) -> str:
    """metrics.py's name for the test views rendered from a bitstream (``render.py --dec_npz``)."""
    return f"compressed_{layout}_{iteration}"


def metrics_file(model_path: Path) -> Path:
    """metrics.py's per-method averages of a model folder."""
    return model_path / _METRICS_FILE


def trained_ply(model_path: Path) -> Path:
    """The PLY of the latest saved training iteration of a model folder.

    Raises:
        FileNotFoundError: nothing was saved.
    """
    point_clouds = model_path / "point_cloud"
    return point_clouds / f"iteration_{searchForMaxIteration(point_clouds)}" / "point_cloud.ply"
