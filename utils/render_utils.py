"""Rendering every view of a scene to PNG files (the work behind render.py).

The renderer is passed in as a callable so that this module stays below gaussian_renderer in
the import order and callers choose what to render from (a trained PLY, a decoded codec
model, ``ft_render``...).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
from tqdm import tqdm

from utils.image_utils import save_png

if TYPE_CHECKING:
    from scene import Scene
    from scene.cameras import Camera

logger = logging.getLogger(__name__)

RenderFn = Callable[["Camera"], torch.Tensor]  # camera -> [3, H, W] image in [0, 1]


def default_device() -> torch.device:
    """The current accelerator (e.g. CUDA) when one is available, else the CPU."""
    accelerator = torch.accelerator.current_accelerator(check_available=True)
    return accelerator if accelerator is not None else torch.device("cpu")


@torch.no_grad()
def render_views(views: list["Camera"], render_fn: RenderFn, out_dir: str | Path,
                 quiet: bool = False) -> Path:
    """Write ``<out_dir>/renders/<i:05d>.png`` (``render_fn(view)``) and ``<out_dir>/gt/...``
    (the view's ground truth) for every view, in order; returns ``out_dir``."""
    out_dir = Path(out_dir)
    for index, view in enumerate(tqdm(views, desc=f"Rendering {out_dir}", disable=quiet)):
        save_png(render_fn(view), out_dir / "renders" / f"{index:05d}.png")
        save_png(view.original_image, out_dir / "gt" / f"{index:05d}.png")
    return out_dir


def render_sets(scene: "Scene", render_fn: RenderFn, iteration: int | str,
                skip_train: bool = False,
                skip_test: bool = False, method: str = "ours", quiet: bool = False
                ) -> list[Path]:
    """Render the train and/or test views into ``<model>/<set>/<method>_<iteration>/``.

    ``iteration`` may be a label (``compressed_given``). Empty sets (no test views without
    --eval) are skipped. Only the ground truth of the sets rendered is read, all of it before
    the first file is written. Returns the folders written.
    """
    scene.load_images(train=not skip_train, test=not skip_test)
    sets = {"train": [] if skip_train else scene.getTrainCameras(),
            "test": [] if skip_test else scene.getTestCameras()}
    written = []
    for name, views in sets.items():
        if views:
            folder = scene.model_path / name / f"{method}_{iteration}"
            written.append(render_views(views, render_fn, folder, quiet))
            logger.info("%d %s views rendered to %s", len(views), name, folder)
    return written
