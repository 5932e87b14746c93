"""Densification as a strategy object kept out of the model (the gsplat DefaultStrategy pattern).

The model owns only its parameters. This module owns the optimizer construction, the
densification statistics (a state dict), the clone / split / prune / opacity-reset operations,
and :func:`update_params_with_optimizer`, the one helper that edits the parameters, every
per-row optimizer tensor and the strategy state together, for any parameter name.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional

import torch

from utils.general_utils import build_rotation, get_expon_lr_func, inverse_sigmoid

if TYPE_CHECKING:  # annotations only: no import cycle with the model or the argument groups
    from arguments import OptimizationParams
    from scene.gaussian_model import GaussianModel

logger = logging.getLogger(__name__)

#: Strategy state keys holding one row per Gaussian.
STATE_KEYS = ("grad_accum", "count", "max_radii")


def create_optimizer(gaussians: "GaussianModel", opt: "OptimizationParams",
                     spatial_lr_scale: float) -> torch.optim.Adam:
    """Adam (eps 1e-15) with one group per parameter, each group named like the parameter.

    Args:
        gaussians: model whose ``params`` ParameterDict holds xyz, f_dc, f_rest, opacity,
            scaling, rotation.
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
    missing = sorted(set(lrs) - set(gaussians.params.keys()))
    if missing:
        raise ValueError(f"gaussians.params lacks {missing}; expected keys {sorted(lrs)}")
    groups = [{"params": [gaussians.params[name]], "lr": lr, "name": name}
              for name, lr in lrs.items()]
    return torch.optim.Adam(groups, lr=0.0, eps=1e-15)


def position_lr_schedule(opt: "OptimizationParams", spatial_lr_scale: float
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


@torch.no_grad()
def update_params_with_optimizer(
    gaussians: "GaussianModel",
    optimizer: torch.optim.Optimizer,
    param_fn: Callable[[str, torch.Tensor], torch.Tensor],
    row_fn: Callable[[torch.Tensor], torch.Tensor],
    state: Optional[dict[str, torch.Tensor]] = None,
    names: Optional[Iterable[str]] = None,
) -> None:
    """Replace parameters by name and carry every per-row tensor along with them.

    For each parameter group (restricted to ``names`` if given) the parameter ``p`` [N, ...]
    becomes ``param_fn(name, p)`` [M, ...]; every tensor of that parameter's optimizer state
    whose first dimension is N (Adam's moments, whatever their names) becomes ``row_fn(t)``.
    Tensors of ``state`` with N rows are mapped with ``row_fn`` too. Scalars such as Adam's
    ``step`` are kept.

    Args:
        gaussians: model whose ``set_params`` replaces parameters by name.
        optimizer: one group per parameter, each with a ``name`` key.
        param_fn: new value of a parameter, from its name and current (detached) value.
        row_fn: new value of a per-row state tensor (moments, statistics), e.g. the same
            row selection, or zero rows appended.
        state: strategy state (``grad_accum``, ``count``, ``max_radii``), edited in place.
        names: parameters to edit; all groups when None.
    """
    wanted = None if names is None else set(names)
    num_rows = gaussians.num_gaussians
    groups = [g for g in optimizer.param_groups if wanted is None or g["name"] in wanted]
    gaussians.set_params({
        g["name"]: torch.nn.Parameter(param_fn(g["name"], g["params"][0].detach()))
        for g in groups})
    for group in groups:
        (old,) = group["params"]
        new = gaussians.params[group["name"]]
        opt_state = optimizer.state.pop(old, None)
        if opt_state is not None:
            optimizer.state[new] = {
                key: row_fn(value) if _is_per_row(value, num_rows) else value
                for key, value in opt_state.items()}
        group["params"] = [new]
    if state is not None:
        for key, value in state.items():
            if _is_per_row(value, num_rows):
                state[key] = row_fn(value)


def _is_per_row(value: Any, num_rows: int) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == num_rows


def append_gaussians(gaussians: "GaussianModel", optimizer: torch.optim.Optimizer,
                     state: Optional[dict[str, torch.Tensor]],
                     new_params: dict[str, torch.Tensor]) -> None:
    """Append M Gaussians; their optimizer moments and statistics start at zero.

    Args:
        new_params: raw values by parameter name, each [M, ...] like the parameter.
    """
    def grow(value: torch.Tensor) -> torch.Tensor:
        num_new = next(iter(new_params.values())).shape[0]
        return torch.cat([value, value.new_zeros((num_new, *value.shape[1:]))])

    update_params_with_optimizer(
        gaussians, optimizer, lambda name, p: torch.cat([p, new_params[name].to(p)]), grow,
        state)


def remove_gaussians(gaussians: "GaussianModel", optimizer: torch.optim.Optimizer,
                     state: Optional[dict[str, torch.Tensor]], mask: torch.Tensor) -> None:
    """Remove the Gaussians where ``mask`` [N] bool is True, with their optimizer rows."""
    keep = ~mask
    update_params_with_optimizer(gaussians, optimizer, lambda name, p: p[keep],
                                 lambda value: value[keep], state)


def clone_gaussians(gaussians: "GaussianModel", optimizer: torch.optim.Optimizer,
                    state: Optional[dict[str, torch.Tensor]], mask: torch.Tensor) -> None:
    """Append an exact copy of each Gaussian selected by ``mask`` [N] bool."""
    append_gaussians(gaussians, optimizer, state,
                     {name: p.detach()[mask] for name, p in gaussians.params.items()})


def split_gaussians(gaussians: "GaussianModel", optimizer: torch.optim.Optimizer,
                    state: Optional[dict[str, torch.Tensor]], mask: torch.Tensor,
                    generator: Optional[torch.Generator] = None, num_samples: int = 2) -> None:
    """Replace each selected Gaussian by ``num_samples`` smaller ones drawn from it.

    New centres are ``R @ eps + mean`` with ``eps ~ N(0, diag(scales))`` ([M, 3], activated
    scales), new scales are the old ones divided by ``0.8 * num_samples``; colours, opacity and
    rotation are copied. The originals are removed. Appended rows come after the survivors.

    Args:
        mask: [N] bool, the Gaussians to split.
        generator: CPU generator for the samples (reproducible runs).
    """
    params = {name: p.detach() for name, p in gaussians.params.items()}
    scales = gaussians.get_scaling.detach()[mask].repeat(num_samples, 1)  # [M, 3]
    noise = torch.randn(scales.shape, generator=generator, dtype=scales.dtype)
    offsets = noise.to(scales.device) * scales  # [M, 3]
    rotations = build_rotation(params["rotation"][mask]).repeat(num_samples, 1, 1)  # [M, 3, 3]
    new_params = {name: p[mask].repeat(num_samples, *([1] * (p.dim() - 1)))
                  for name, p in params.items()}
    new_params["xyz"] = (rotations @ offsets[..., None])[..., 0] + new_params["xyz"]
    new_params["scaling"] = torch.log(scales / (0.8 * num_samples))
    append_gaussians(gaussians, optimizer, state, new_params)
    num_new = new_params["xyz"].shape[0]
    remove_gaussians(gaussians, optimizer, state,
                     torch.cat([mask, mask.new_zeros(num_new)]))


def reset_opacity(gaussians: "GaussianModel", optimizer: torch.optim.Optimizer,
                  max_opacity: float = 0.01) -> None:
    """Clamp activated opacities to ``max_opacity`` and zero the opacity optimizer moments."""
    update_params_with_optimizer(
        gaussians, optimizer,
        lambda name, p: torch.minimum(p, inverse_sigmoid(torch.full_like(p, max_opacity))),
        torch.zeros_like, names=("opacity",))


@dataclass
class DefaultStrategy:
    """Adaptive density control of the original 3DGS (clone, split, prune, opacity reset).

    Iterations are 1-based like the original loop. Fill it from OptimizationParams with
    :meth:`from_opt`. Unlike the original code, which zeroes its radius statistic before the
    screen-size test (so that test never fires), ``max_radii`` is carried through clone and
    split (new rows start at 0) and reset only after pruning, as the paper intends.
    """

    #: prune Gaussians whose activated opacity is below this
    min_opacity: float = 0.005
    #: mean screen-space gradient norm (NDC units) above which a Gaussian is densified
    grad_threshold: float = 0.0002
    #: clone if the largest scale is <= percent_dense * extent, split otherwise
    percent_dense: float = 0.01
    #: after the first opacity reset, prune Gaussians wider than this on screen (pixels)
    max_screen_size: int = 20
    #: ... and those whose largest world scale exceeds this fraction of the extent
    max_world_size: float = 0.1
    #: densify at iterations (refine_start_iter, refine_stop_iter) ...
    refine_start_iter: int = 500
    refine_stop_iter: int = 15_000
    #: ... every refine_every iterations
    refine_every: int = 100
    #: opacity reset period (iterations)
    reset_every: int = 3000
    #: opacities above this are clamped to it at each reset
    reset_value: float = 0.01
    #: also reset opacity at refine_start_iter (white-background scenes, as the original)
    reset_at_start: bool = False

    @classmethod
    def from_opt(cls, opt: "OptimizationParams", white_background: bool = False
                 ) -> "DefaultStrategy":
        """Build from the 3DGS flags (densify_*, percent_dense, min_opacity, ...)."""
        return cls(min_opacity=opt.min_opacity, grad_threshold=opt.densify_grad_threshold,
                   percent_dense=opt.percent_dense, max_screen_size=opt.max_screen_size,
                   refine_start_iter=opt.densify_from_iter,
                   refine_stop_iter=opt.densify_until_iter,
                   refine_every=opt.densification_interval,
                   reset_every=opt.opacity_reset_interval, reset_at_start=white_background)

    def initialize_state(self, num_gaussians: int = 0,
                         device: Optional[torch.device] = None) -> dict[str, torch.Tensor]:
        """Statistics, one row per Gaussian: grad_accum [N], count [N], max_radii [N] (px)."""
        return {key: torch.zeros(num_gaussians, device=device) for key in STATE_KEYS}

    def step_pre_backward(self, render_pkg: dict[str, torch.Tensor]) -> None:
        """Keep the gradient of the screen-space means (render_pkg["viewspace_points"])."""
        points = render_pkg["viewspace_points"]
        if points.requires_grad and not points.is_leaf:
            points.retain_grad()

    @torch.no_grad()
    def step_post_backward(self, gaussians: "GaussianModel", optimizer: torch.optim.Optimizer,
                           state: dict[str, torch.Tensor], step: int,
                           render_pkg: dict[str, torch.Tensor], cameras_extent: float,
                           generator: Optional[torch.Generator] = None) -> None:
        """Accumulate statistics, then densify / prune / reset opacity on schedule.

        Args:
            gaussians: the model, edited in place.
            optimizer: from :func:`create_optimizer`, kept aligned with the parameters.
            state: from :meth:`initialize_state`, edited in place.
            step: current iteration (1-based).
            render_pkg: output of ``render`` after ``loss.backward()``.
            cameras_extent: scene radius (``Scene.cameras_extent``).
            generator: CPU generator for the split samples.
        """
        if step >= self.refine_stop_iter:
            return
        self._update_state(state, render_pkg, gaussians.num_gaussians)
        if step > self.refine_start_iter and step % self.refine_every == 0:
            self._refine(gaussians, optimizer, state, step, cameras_extent, generator)
        if step % self.reset_every == 0 or (self.reset_at_start
                                             and step == self.refine_start_iter):
            reset_opacity(gaussians, optimizer, max_opacity=self.reset_value)

    def _update_state(self, state: dict[str, torch.Tensor],
                      render_pkg: dict[str, torch.Tensor], num_gaussians: int) -> None:
        if state["count"].shape[0] != num_gaussians:
            raise ValueError(f"strategy state has {state['count'].shape[0]} rows, model has "
                             f"{num_gaussians}; build it with initialize_state(N)")
        grad = render_pkg["viewspace_points"].grad
        if grad is None:
            raise ValueError("render_pkg['viewspace_points'] has no gradient: call "
                             "step_pre_backward before loss.backward()")
        visible = render_pkg["visibility_filter"]
        state["grad_accum"][visible] += grad[visible, :2].norm(dim=-1)
        state["count"][visible] += 1
        radii = render_pkg["radii"][visible].to(state["max_radii"].dtype)
        state["max_radii"][visible] = torch.maximum(state["max_radii"][visible], radii)

    def _refine(self, gaussians: "GaussianModel", optimizer: torch.optim.Optimizer,
                state: dict[str, torch.Tensor], step: int, cameras_extent: float,
                generator: Optional[torch.Generator]) -> None:
        grads = (state["grad_accum"] / state["count"]).nan_to_num_(0.0)
        high_grad = grads >= self.grad_threshold
        is_small = gaussians.get_scaling.max(dim=1).values <= self.percent_dense * cameras_extent
        num_before = gaussians.num_gaussians
        clone_gaussians(gaussians, optimizer, state, high_grad & is_small)
        split = torch.cat([high_grad & ~is_small,
                           high_grad.new_zeros(gaussians.num_gaussians - num_before)])
        split_gaussians(gaussians, optimizer, state, split, generator)
        prune = gaussians.get_opacity[:, 0] < self.min_opacity
        if step > self.reset_every:
            prune |= state["max_radii"] > self.max_screen_size
            prune |= gaussians.get_scaling.max(dim=1).values > self.max_world_size * cameras_extent
        remove_gaussians(gaussians, optimizer, state, prune)
        for key in STATE_KEYS:
            state[key].zero_()
        logger.debug("step %d: %d -> %d Gaussians (clone %d, split %d, prune %d)", step,
                     num_before, gaussians.num_gaussians, int((high_grad & is_small).sum()),
                     int(split.sum()), int(prune.sum()))
