"""Rendering every view of a scene to PNG files (the work behind render.py).

The renderer is passed in as a callable so that this module stays below gaussian_renderer in
the import order and callers choose what to render from (a trained PLY, a decoded codec
model, ``ft_render``...).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Protocol, Sequence

import torch
from tqdm import tqdm

from utils.image_utils import save_png
from utils.output_paths import (TEST_SPLIT, TRAIN_SPLIT, UNCOMPRESSED_METHOD, render_dir,
                                render_name)

logger = logging.getLogger(__name__)


class View(Protocol):
    """A camera with its ground truth (``scene.cameras.Camera``)."""

    original_image: torch.Tensor  # [3, H, W] in [0, 1]


class Views(Protocol):
    """The train/test views of a model folder (``scene.Scene``)."""

    model_path: Path

    def getTrainCameras(self) -> Sequence[View]: ...

    def getTestCameras(self) -> Sequence[View]: ...


RenderFn = Callable[[View], torch.Tensor]  # camera -> [3, H, W] image in [0, 1]


def default_device() -> torch.device:
    """The current accelerator (e.g. CUDA) when one is available, else the CPU."""
    accelerator = torch.accelerator.current_accelerator(check_available=True)
    return accelerator if accelerator is not None else torch.device("cpu")


@torch.no_grad()
def render_views(views: Sequence[View], render_fn: RenderFn, out_dir: str | Path,
                 quiet: bool = False) -> Path:
    """Write ``<out_dir>/renders/<i:05d>.png`` (``render_fn(view)``) and ``<out_dir>/gt/...``
    (the view's ground truth) for every view, in order; returns ``out_dir``."""
    out_dir = Path(out_dir)
    for index, view in enumerate(tqdm(views, desc=f"Rendering {out_dir}", disable=quiet)):
        save_png(render_fn(view), out_dir / "renders" / f"{index:05d}.png")
        save_png(view.original_image, out_dir / "gt" / f"{index:05d}.png")
    return out_dir


def render_sets(scene: Views, render_fn: RenderFn, iteration: int | str,
                skip_train: bool = False,
                skip_test: bool = False, method: str = UNCOMPRESSED_METHOD, quiet: bool = False
                ) -> list[Path]:
    """Render the train and/or test views into ``<model>/<set>/<method>_<iteration>/``.

    ``iteration`` may be a label (``compressed_given``). Empty sets (no test views without
    --eval) are skipped. Only the ground truth of the sets rendered is read, all of it before
    the first file is written. Returns the folders written.
    """
    scene.load_images(train=not skip_train, test=not skip_test)
    sets = {TRAIN_SPLIT: [] if skip_train else scene.getTrainCameras(),
            TEST_SPLIT: [] if skip_test else scene.getTestCameras()}
    written = []
    for name, views in sets.items():
        if views:
            folder = render_dir(scene.model_path, name, render_name(method, iteration))
            written.append(render_views(views, render_fn, folder, quiet))
            logger.info("%d %s views rendered to %s", len(views), name, folder)
    return written
