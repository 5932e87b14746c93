"""Training checkpoints (``chkpnt<N>.pth``): a dict keyed by name, written atomically.

A checkpoint holds everything a resumed run needs to continue exactly like an uninterrupted
one: the iteration, the model state, the optimizer and strategy states, every RNG state
(torch's global CPU generator, numpy, python ``random`` and the trainer's own generator) and
the remaining view order. It is read back with ``torch.load(weights_only=True)``: tensors and
plain containers only, no pickled code.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from utils.system_utils import atomic_path

CHECKPOINT_KEYS = ("iteration", "model", "optimizer", "strategy", "rng", "view_order")


def capture_rng_states(generator: torch.Generator) -> dict[str, Any]:
    """States of torch's global CPU RNG, numpy's global RNG, python ``random`` and ``generator``."""
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"]["key"] = torch.from_numpy(numpy_state["state"]["key"].astype(np.int64))
    return {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate(),
            "generator": generator.get_state()}


def restore_rng_states(states: dict[str, Any], generator: torch.Generator) -> None:
    """Inverse of :func:`capture_rng_states` (``generator`` is set in place)."""
    torch.set_rng_state(states["torch"])
    numpy_state = dict(states["numpy"])
    numpy_state["state"] = dict(numpy_state["state"])
    numpy_state["state"]["key"] = numpy_state["state"]["key"].numpy().astype(np.uint32)
    np.random.set_state(numpy_state)
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    generator.set_state(states["generator"])


def save_checkpoint(path: str | os.PathLike, checkpoint: dict[str, Any]) -> Path:
    """Write ``checkpoint`` (keys :data:`CHECKPOINT_KEYS`) to ``path`` atomically.

    Raises:
        ValueError: a key is missing.
    """
    _check_keys(checkpoint, path)
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors on the CPU).

    Raises:
        FileNotFoundError: ``path`` is missing.
        ValueError: the file is not such a checkpoint (e.g. an original 3DGS tuple).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a foreign or corrupt file
        raise ValueError(f"{path}: not a readable training checkpoint ({exc})") from None
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path}: expected a dict checkpoint, found {type(checkpoint).__name__} "
                         "(checkpoints of the original 3DGS are not supported)")
    _check_keys(checkpoint, path)
    return checkpoint


def _check_keys(checkpoint: dict[str, Any], path: str | os.PathLike) -> None:
    missing = [key for key in CHECKPOINT_KEYS if key not in checkpoint]
    if missing:
        raise ValueError(f"{path}: checkpoint lacks {', '.join(missing)}")
