"""The 3DGS optimizer and its position learning-rate schedule.

One Adam with one named group per Gaussian parameter: the densification strategies
(``scene/strategy.py``, ``scene/mcmc.py``) find a parameter's moments through its group name,
as gsplat's strategies find them through their dict of per-parameter optimizers.
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch

from arguments import OptimizationParams
from utils.general_utils import get_expon_lr_func


def create_optimizer(params: Mapping[str, torch.nn.Parameter], opt: OptimizationParams,
                     spatial_lr_scale: float) -> torch.optim.Adam:
    """Adam (eps 1e-15) with one group per parameter, each group named like the parameter.

    Args:
        params: xyz, f_dc, f_rest, opacity, scaling, rotation (e.g. ``GaussianModel.params``).
        opt: learning rates (``position_lr_init`` is multiplied by ``spatial_lr_scale``;
            f_rest uses ``feature_lr / 20``).
        spatial_lr_scale: scene extent (``Scene.cameras_extent``).

    Returns:
        The optimizer; the ``xyz`` rate follows :func:`position_lr_schedule` once the training
        loop applies it.
    """
    lrs = {
        "xyz": opt.position_lr_init * spatial_lr_scale,
        "f_dc": opt.feature_lr,
        "f_rest": opt.feature_lr / 20.0,
        "opacity": opt.opacity_lr,
        "scaling": opt.scaling_lr,
        "rotation": opt.rotation_lr,
    }
    missing = sorted(set(lrs) - set(params.keys()))
    if missing:
        raise ValueError(f"params lacks {missing}; expected keys {sorted(lrs)}")
    groups = [{"params": [params[name]], "lr": lr, "name": name} for name, lr in lrs.items()]
    return torch.optim.Adam(groups, lr=0.0, eps=1e-15)


def position_lr_schedule(opt: OptimizationParams, spatial_lr_scale: float
                         ) -> Callable[[int], float]:
    """The xyz learning rate per iteration: exponential decay over ``position_lr_max_steps``."""
    return get_expon_lr_func(lr_init=opt.position_lr_init * spatial_lr_scale,
                             lr_final=opt.position_lr_final * spatial_lr_scale,
                             lr_delay_mult=opt.position_lr_delay_mult,
                             max_steps=opt.position_lr_max_steps)


def set_group_lr(optimizer: torch.optim.Optimizer, name: str, lr: float) -> None:
    """Set the learning rate of the parameter group called ``name``."""
    for group in optimizer.param_groups:
        if group["name"] == name:
            group["lr"] = lr
            return
    raise ValueError(f"optimizer has no parameter group named {name!r}")
