"""Densification strategies over plain parameters (the gsplat strategy pattern).

A strategy sees the Gaussians as a mapping of named ``nn.Parameter`` rows (``params``: xyz,
f_dc, f_rest, opacity, scaling, rotation, e.g. ``GaussianModel.params``), the optimizer whose
groups carry the same names (``training/optim.py``) and its own state dict; it edits the three
together and never sees a model. :class:`Strategy` is the interface the training loop calls;
:class:`DefaultStrategy` is graphdeco's adaptive density control, ``scene/mcmc.py`` the MCMC
one. The row operations below (append, remove, clone, split, opacity reset) all go through
:func:`update_params_with_optimizer`, the one helper that replaces parameters and carries every
per-row optimizer tensor and state tensor along, for any parameter name.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, MutableMapping, Optional, Protocol

import torch

from utils.general_utils import build_rotation, inverse_sigmoid

if TYPE_CHECKING:  # annotations only: no import cycle with the argument groups
    from arguments import OptimizationParams

logger = logging.getLogger(__name__)

#: the Gaussians as the strategies see them: parameter name -> [N, ...] leaf parameter
Params = MutableMapping[str, torch.nn.Parameter]

#: DefaultStrategy state keys holding one row per Gaussian.
STATE_KEYS = ("grad_accum", "count", "max_radii")


@dataclass
class StepInfo:
    """What one training step tells its strategy besides parameters, optimizer and state."""

    #: output of ``render`` for the step's view (viewspace_points, visibility_filter, radii)
    render_pkg: dict[str, torch.Tensor]
    #: scene radius (``Scene.cameras_extent``)
    extent: float
    #: the step's xyz learning rate
    lr: float
    #: CPU generator for every random draw of the strategy (checkpointed: exact resume)
    generator: Optional[torch.Generator] = None


class Strategy(Protocol):
    """The training loop's view of a densification strategy (iterations are 1-based).

    Per step the loop calls :meth:`step_pre_backward` after rendering, adds
    :meth:`regularization` to the loss, calls :meth:`step_post_backward` after
    ``loss.backward()`` and :meth:`step_post_optimizer` after ``optimizer.step()``.
    """

    def initialize_params(self, params: Params, generator: Optional[torch.Generator]) -> None:
        """Adapt the initial Gaussians (before the optimizer exists)."""

    def initialize_state(self, num_gaussians: int = 0,
                         device: Optional[torch.device] = None) -> dict[str, torch.Tensor]:
        """The strategy state of ``num_gaussians`` Gaussians."""

    def step_pre_backward(self, render_pkg: dict[str, torch.Tensor]) -> None:
        """Ask the render for the gradients the strategy reads later."""

    def regularization(self, params: Params) -> Optional[torch.Tensor]:
        """A loss term on the parameters, or None."""

    def step_post_backward(self, params: Params, optimizer: torch.optim.Optimizer,
                           state: dict[str, torch.Tensor], step: int, info: StepInfo) -> None:
        """Work between the backward pass and the optimizer step."""

    def step_post_optimizer(self, params: Params, optimizer: torch.optim.Optimizer,
                            state: dict[str, torch.Tensor], step: int, info: StepInfo) -> None:
        """Work after the optimizer step."""


def num_rows(params: Params) -> int:
    """Number of Gaussians (rows of ``xyz``)."""
    return params["xyz"].shape[0]


@torch.no_grad()
def update_params_with_optimizer(
    params: Params,
    optimizer: torch.optim.Optimizer,
    param_fn: Callable[[str, torch.Tensor], torch.Tensor],
    row_fn: Callable[[torch.Tensor], torch.Tensor],
    state: Optional[dict[str, torch.Tensor]] = None,
    names: Optional[Iterable[str]] = None,
) -> None:
    """Replace parameters by name and carry every per-row tensor along with them.

    For each parameter group (restricted to ``names`` if given) the parameter ``p`` [N, ...]
    becomes a new leaf ``param_fn(name, p)`` [M, ...] in ``params``; every tensor of that
    parameter's optimizer state whose first dimension is N (Adam's moments, whatever their
    names) becomes ``row_fn(t)``. Tensors of ``state`` with N rows are mapped with ``row_fn``
    too. Scalars such as Adam's ``step`` are kept.

    Args:
        params: the Gaussians, edited in place.
        optimizer: one group per parameter, each with a ``name`` key.
        param_fn: new value of a parameter, from its name and current (detached) value.
        row_fn: new value of a per-row state tensor (moments, statistics), e.g. the same
            row selection, or zero rows appended.
        state: strategy state, edited in place.
        names: parameters to edit; all groups when None.
    """
    wanted = None if names is None else set(names)
    rows = num_rows(params)
    groups = [g for g in optimizer.param_groups if wanted is None or g["name"] in wanted]
    for group in groups:
        (old,) = group["params"]
        new = torch.nn.Parameter(param_fn(group["name"], old.detach()),
                                 requires_grad=old.requires_grad)
        params[group["name"]] = new
        opt_state = optimizer.state.pop(old, None)
        if opt_state is not None:
            optimizer.state[new] = {
                key: row_fn(value) if _is_per_row(value, rows) else value
                for key, value in opt_state.items()}
        group["params"] = [new]
    if state is not None:
        for key, value in state.items():
            if _is_per_row(value, rows):
                state[key] = row_fn(value)


def _is_per_row(value: Any, rows: int) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == rows


def append_gaussians(params: Params, optimizer: torch.optim.Optimizer,
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
        params, optimizer, lambda name, p: torch.cat([p, new_params[name].to(p)]), grow, state)


def remove_gaussians(params: Params, optimizer: torch.optim.Optimizer,
                     state: Optional[dict[str, torch.Tensor]], mask: torch.Tensor) -> None:
    """Remove the Gaussians where ``mask`` [N] bool is True, with their optimizer rows."""
    keep = ~mask
    update_params_with_optimizer(params, optimizer, lambda name, p: p[keep],
                                 lambda value: value[keep], state)


def clone_gaussians(params: Params, optimizer: torch.optim.Optimizer,
                    state: Optional[dict[str, torch.Tensor]], mask: torch.Tensor) -> None:
    """Append an exact copy of each Gaussian selected by ``mask`` [N] bool."""
    append_gaussians(params, optimizer, state,
                     {name: p.detach()[mask] for name, p in params.items()})


def split_gaussians(params: Params, optimizer: torch.optim.Optimizer,
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
    values = {name: p.detach() for name, p in params.items()}
    scales = torch.exp(values["scaling"])[mask].repeat(num_samples, 1)  # [M, 3]
    noise = torch.randn(scales.shape, generator=generator, dtype=scales.dtype)
    offsets = noise.to(scales.device) * scales  # [M, 3]
    rotations = build_rotation(values["rotation"][mask]).repeat(num_samples, 1, 1)  # [M, 3, 3]
    new_params = {name: p[mask].repeat(num_samples, *([1] * (p.dim() - 1)))
                  for name, p in values.items()}
    new_params["xyz"] = (rotations @ offsets[..., None])[..., 0] + new_params["xyz"]
    new_params["scaling"] = torch.log(scales / (0.8 * num_samples))
    append_gaussians(params, optimizer, state, new_params)
    num_new = new_params["xyz"].shape[0]
    remove_gaussians(params, optimizer, state, torch.cat([mask, mask.new_zeros(num_new)]))


def reset_opacity(params: Params, optimizer: torch.optim.Optimizer,
                  max_opacity: float = 0.01) -> None:
    """Clamp activated opacities to ``max_opacity`` and zero the opacity optimizer moments."""
    update_params_with_optimizer(
        params, optimizer,
        lambda name, p: torch.minimum(p, inverse_sigmoid(torch.full_like(p, max_opacity))),
        torch.zeros_like, names=("opacity",))


@dataclass
class DefaultStrategy:
    """Adaptive density control of the original 3DGS (clone, split, prune, opacity reset).

    Iterations are 1-based like the original loop. Fill it from OptimizationParams with
    :meth:`from_opt`. Unlike the original code, which zeroes its radius statistic before the
    screen-size test (so that test never fires), ``max_radii`` is carried through clone and
    split (new rows start at 0) and reset only after pruning, as the paper intends. It works
    between backward and optimizer step, as graphdeco's loop does (the rows it rebuilds skip
    that step).
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

    def initialize_params(self, params: Params, generator: Optional[torch.Generator]) -> None:
        """The initial Gaussians stay as the point cloud gave them."""

    def initialize_state(self, num_gaussians: int = 0,
                         device: Optional[torch.device] = None) -> dict[str, torch.Tensor]:
        """Statistics, one row per Gaussian: grad_accum [N], count [N], max_radii [N] (px)."""
        return {key: torch.zeros(num_gaussians, device=device) for key in STATE_KEYS}

    def step_pre_backward(self, render_pkg: dict[str, torch.Tensor]) -> None:
        """Keep the gradient of the screen-space means (render_pkg["viewspace_points"])."""
        points = render_pkg["viewspace_points"]
        if points.requires_grad and not points.is_leaf:
            points.retain_grad()

    def regularization(self, params: Params) -> Optional[torch.Tensor]:
        """None: graphdeco's loss is photometric only."""
        return None

    @torch.no_grad()
    def step_post_backward(self, params: Params, optimizer: torch.optim.Optimizer,
                           state: dict[str, torch.Tensor], step: int, info: StepInfo) -> None:
        """Accumulate statistics, then densify / prune / reset opacity on schedule.

        Args:
            params: the Gaussians, edited in place.
            optimizer: from ``training.optim.create_optimizer``, kept aligned with ``params``.
            state: from :meth:`initialize_state`, edited in place.
            step: current iteration (1-based).
            info: the render (after ``loss.backward()``), extent and generator (split samples).
        """
        if step >= self.refine_stop_iter:
            return
        self._update_state(state, info.render_pkg, num_rows(params))
        if step > self.refine_start_iter and step % self.refine_every == 0:
            self._refine(params, optimizer, state, step, info.extent, info.generator)
        if step % self.reset_every == 0 or (self.reset_at_start
                                             and step == self.refine_start_iter):
            reset_opacity(params, optimizer, max_opacity=self.reset_value)

    def step_post_optimizer(self, params: Params, optimizer: torch.optim.Optimizer,
                            state: dict[str, torch.Tensor], step: int, info: StepInfo) -> None:
        """Nothing: graphdeco's densification runs before the optimizer step."""

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

    def _refine(self, params: Params, optimizer: torch.optim.Optimizer,
                state: dict[str, torch.Tensor], step: int, cameras_extent: float,
                generator: Optional[torch.Generator]) -> None:
        grads = (state["grad_accum"] / state["count"]).nan_to_num_(0.0)
        high_grad = grads >= self.grad_threshold
        is_small = _max_scale(params) <= self.percent_dense * cameras_extent
        num_before = num_rows(params)
        clone_gaussians(params, optimizer, state, high_grad & is_small)
        split = torch.cat([high_grad & ~is_small,
                           high_grad.new_zeros(num_rows(params) - num_before)])
        split_gaussians(params, optimizer, state, split, generator)
        prune = torch.sigmoid(params["opacity"])[:, 0] < self.min_opacity
        if step > self.reset_every:
            prune |= state["max_radii"] > self.max_screen_size
            prune |= _max_scale(params) > self.max_world_size * cameras_extent
        remove_gaussians(params, optimizer, state, prune)
        for key in STATE_KEYS:
            state[key].zero_()
        logger.debug("step %d: %d -> %d Gaussians (clone %d, split %d, prune %d)", step,
                     num_before, num_rows(params), int((high_grad & is_small).sum()),
                     int(split.sum()), int(prune.sum()))


def _max_scale(params: Params) -> torch.Tensor:
    """[N] largest activated scale of each Gaussian."""
    return torch.exp(params["scaling"]).max(dim=1).values
