"""An Adam over real parameters whose moments differ per row: what the strategy tests edit."""
from __future__ import annotations

from typing import Mapping

import torch

from arguments import OptimizationParams
from training.optim import create_optimizer


def adam_after_random_steps(params: Mapping[str, torch.nn.Parameter],
                            generator: torch.Generator, steps: int = 2) -> torch.optim.Adam:
    """``training.optim.create_optimizer`` over ``params`` (spatial scale 2) after ``steps``
    steps on random gradients drawn from ``generator``, so that every row's moments are
    distinct and non-zero."""
    optimizer = create_optimizer(params, OptimizationParams(), spatial_lr_scale=2.0)
    for _ in range(steps):
        optimizer.zero_grad()
        for p in params.values():
            p.grad = torch.randn(p.shape, generator=generator)
        optimizer.step()
    return optimizer
