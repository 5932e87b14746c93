"""Differentiable Gaussian rasterization: one entry point, interchangeable backends.

``rasterize`` takes plain tensors and returns a :class:`RenderResult`; ``render`` (camera +
model in) and ``ft_render`` (camera + a codec's simulated attributes in) are the
3DGS-compatible wrappers returning the familiar dict.
Backends (RENDERING.md): ``torch`` (ours, any device), ``gsplat`` (CUDA), ``inria`` (optional).
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
from typing import Any, Callable, Mapping

import torch

from gaussian_renderer._result import RenderResult
from utils.sh_utils import sh_degree_of

__all__ = ["RenderResult", "rasterize", "render", "ft_render", "available_backends", "BACKENDS"]

logger = logging.getLogger(__name__)

# name -> (module, function, package to import, how to install it)
_REGISTRY: dict[str, tuple[str, str, str | None, str | None]] = {
    "torch": ("gaussian_renderer.torch_backend", "rasterize_torch", None, None),
    "gsplat": ("gaussian_renderer.gsplat_backend", "rasterize_gsplat", "gsplat", "pip install gsplat"),
    "inria": (
        "gaussian_renderer.inria_backend",
        "rasterize_inria",
        "diff_gaussian_rasterization",
        "pip install git+https://github.com/graphdeco-inria/diff-gaussian-rasterization",
    ),
}
BACKENDS: tuple[str, ...] = ("auto", *_REGISTRY)
_CUDA_ONLY = ("gsplat", "inria")


def available_backends() -> list[str]:
    """Names of the backends whose packages are installed (CUDA ones may still need a GPU)."""
    return [name for name, (_, _, pkg, _) in _REGISTRY.items() if pkg is None or importlib.util.find_spec(pkg)]


@functools.cache
def _gsplat_kernels_error() -> str | None:
    """Why gsplat's CUDA kernels cannot be used (None when they load); checked once per process.

    gsplat JIT-compiles its kernels on first import of its backend, which can fail in many ways
    (no nvcc, compiler errors, a stale lock), so any exception is turned into a reason.
    """
    if importlib.util.find_spec("gsplat") is None:
        return "gsplat is not installed (pip install gsplat)"
    if not torch.cuda.is_available():
        return "CUDA is not available"
    try:
        from gsplat.cuda._backend import _C
    except Exception as exc:  # noqa: BLE001 - any build/load failure means "unusable"
        return f"gsplat CUDA kernels failed to load: {type(exc).__name__}: {exc}".splitlines()[0]
    return None if _C is not None else "gsplat CUDA kernels failed to build (no CUDA toolkit?)"


@functools.cache
def _warn_fallback(reason: str, on_cuda: bool) -> None:
    """Log once that ``auto`` falls back to the torch backend."""
    log = logger.warning if on_cuda else logger.info
    log("rasterizer backend 'auto': using the torch backend (%s)", reason)


def _resolve_backend(backend: str, device: torch.device) -> Callable[..., RenderResult]:
    if backend == "auto":
        reason = "tensors are not on CUDA" if device.type != "cuda" else _gsplat_kernels_error()
        backend = "gsplat" if reason is None else "torch"
        if reason is not None:
            _warn_fallback(reason, device.type == "cuda")
    if backend not in _REGISTRY:
        raise ValueError(f"unknown rasterizer backend {backend!r}; available: {', '.join(BACKENDS)}")
    module_name, func_name, package, install = _REGISTRY[backend]
    if package is not None and importlib.util.find_spec(package) is None:
        raise ImportError(f"rasterizer backend {backend!r} needs the {package} package: {install}")
    if backend in _CUDA_ONLY and device.type != "cuda":
        raise ValueError(f"rasterizer backend {backend!r} needs CUDA tensors, got device {device}")
    if backend == "gsplat" and (reason := _gsplat_kernels_error()) is not None:
        raise ImportError(f"rasterizer backend 'gsplat' is unusable: {reason}")
    return getattr(importlib.import_module(module_name), func_name)


def _check_shape(name: str, tensor: Any, shape: tuple[int | None, ...]) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    ok = tensor.dim() == len(shape) and all(s is None or s == t for s, t in zip(shape, tensor.shape))
    if not ok:
        expected = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"{name} must have shape {expected}, got {list(tensor.shape)}")


def _validate(
    means: torch.Tensor,
    quats: torch.Tensor,
    scales: torch.Tensor,
    opacities: torch.Tensor,
    colors: torch.Tensor,
    viewmat: torch.Tensor,
    K: torch.Tensor,
    width: int,
    height: int,
    sh_degree: int | None,
    background: torch.Tensor | None,
    screen_offset: torch.Tensor | None,
) -> int | None:
    """Check shapes, sizes and devices; returns the SH degree to use (None: precomputed colours)."""
    _check_shape("means", means, (None, 3))
    n = means.shape[0]
    _check_shape("quats", quats, (n, 4))
    _check_shape("scales", scales, (n, 3))
    _check_shape("opacities", opacities, (n,))
    _check_shape("viewmat", viewmat, (4, 4))
    _check_shape("K", K, (3, 3))
    if not isinstance(colors, torch.Tensor) or colors.dim() not in (2, 3) or colors.shape[0] != n:
        got = list(colors.shape) if isinstance(colors, torch.Tensor) else type(colors).__name__
        raise ValueError(f"colors must be [N={n}, D] colours or [N={n}, K, 3] SH coefficients, got {got}")
    if colors.dim() == 3:
        _check_shape("colors (SH)", colors, (n, None, 3))
        if sh_degree is None:
            sh_degree = sh_degree_of(colors.shape[1])
            if sh_degree is None:
                raise ValueError(f"colors has K={colors.shape[1]} SH coefficients; pass sh_degree explicitly")
        if not 0 <= sh_degree <= 3 or (sh_degree + 1) ** 2 > colors.shape[1]:
            raise ValueError(f"sh_degree must be in 0..3 with (sh_degree+1)^2 <= K={colors.shape[1]}, got {sh_degree}")
    elif sh_degree is not None:
        raise ValueError(f"sh_degree={sh_degree} needs SH colors [N, K, 3], got {list(colors.shape)}")
    channels = 3 if colors.dim() == 3 else colors.shape[1]
    if background is not None:
        _check_shape("background", background, (channels,))
    if screen_offset is not None:
        _check_shape("screen_offset", screen_offset, (n, 2))
    for name, value in (("width", width), ("height", height)):
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    tensors = [means, quats, scales, opacities, colors, viewmat, K, background, screen_offset]
    devices = {t.device for t in tensors if t is not None}
    if len(devices) > 1:
        raise ValueError(f"all tensors must be on one device, got {sorted(map(str, devices))}")
    if not means.is_floating_point():
        raise ValueError(f"means must be floating point, got {means.dtype}")
    return sh_degree


def rasterize(
    means: torch.Tensor,  # [N, 3]
    quats: torch.Tensor,  # [N, 4]
    scales: torch.Tensor,  # [N, 3]
    opacities: torch.Tensor,  # [N]
    colors: torch.Tensor,  # [N, D] or [N, K, 3]
    viewmat: torch.Tensor,  # [4, 4]
    K: torch.Tensor,  # [3, 3]
    width: int,
    height: int,
    *,
    sh_degree: int | None = None,
    background: torch.Tensor | None = None,  # [D]
    backend: str = "auto",
    screen_offset: torch.Tensor | None = None,  # [N, 2]
) -> RenderResult:
    """Rasterize 3D Gaussians into one pinhole image (conventions: RENDERING.md).

    Args:
        means: [N, 3] world positions.
        quats: [N, 4] rotations, wxyz, need not be normalized.
        scales: [N, 3] activated scales (exp of the log-scales).
        opacities: [N] activated opacities (sigmoid of the logits).
        colors: [N, D] precomputed colours used as given, or [N, K, 3] SH coefficients.
        viewmat: [4, 4] world→camera matrix, OpenCV axes (+x right, +y down, +z forward).
        K: [3, 3] intrinsics with fx, fy, cx, cy (pixel centres at i + 0.5).
        width, height: image size in pixels.
        sh_degree: SH degree (0..3) for SH colours; inferred from K when None.
        background: [D] colour added with the remaining transmittance; None for black.
        backend: "auto" (gsplat on CUDA when its kernels load, else torch), "torch", "gsplat", "inria".
        screen_offset: [N, 2] zero tensor added to the projected pixel means inside the graph, so
            that its gradient is d loss / d means2d in pixels (used by ``render``).

    Returns:
        RenderResult: image [D, H, W], alpha [1, H, W], radii [N] int32, means2d [N, 2] px, depths [N].
        Gradients reach means, quats, scales, opacities, colors, viewmat and background.

    Raises:
        ValueError: bad shapes, sizes, mixed devices, an unknown backend or a CUDA backend on CPU.
        ImportError: a named backend whose package is missing (the message says what to install).
    """
    sh_degree = _validate(
        means, quats, scales, opacities, colors, viewmat, K, width, height, sh_degree, background, screen_offset
    )
    impl = _resolve_backend(backend, means.device)
    dtype = means.dtype
    return impl(
        means,
        quats,
        scales,
        opacities,
        colors,
        viewmat.to(dtype),
        K.to(dtype),
        width,
        height,
        sh_degree=sh_degree,
        background=None if background is None else background.to(dtype),
        screen_offset=screen_offset,
    )


def _render_gaussians(
    camera: Any,
    means: torch.Tensor,
    quats: torch.Tensor,
    scales: torch.Tensor,
    opacities: torch.Tensor,
    colors: torch.Tensor,
    sh_degree: int | None,
    pipe: Any,
    bg_color: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Shared body of render / ft_render: rasterize and package the 3DGS dict."""
    width, height = int(camera.width), int(camera.height)
    # 3DGS's screenspace_points: a zero leaf whose .grad is d loss / d NDC mean.
    viewspace_points = torch.zeros(means.shape[0], 2, dtype=means.dtype, device=means.device, requires_grad=True)
    px_per_ndc = torch.tensor([width / 2.0, height / 2.0], dtype=means.dtype, device=means.device)
    result = rasterize(
        means,
        quats,
        scales,
        opacities,
        colors,
        camera.world_to_cam.to(means),
        camera.K.to(means),
        width,
        height,
        sh_degree=sh_degree,
        background=bg_color.to(means),
        backend=getattr(pipe, "backend", "auto"),
        screen_offset=viewspace_points * px_per_ndc,
    )
    return {
        "render": result.image,
        "viewspace_points": viewspace_points,
        "visibility_filter": result.radii > 0,
        "radii": result.radii,
        "alpha": result.alpha,
        "depths": result.depths,
    }


def render(
    viewpoint_camera: Any,
    pc: Any,
    pipe: Any,
    bg_color: torch.Tensor,
    scaling_modifier: float = 1.0,
    override_color: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Render a GaussianModel from a camera, as 3DGS's ``render``.

    Args:
        viewpoint_camera: has ``world_to_cam`` [4, 4], ``K`` [3, 3], ``width``, ``height``.
        pc: GaussianModel (get_xyz, get_rotation, get_scaling, get_opacity [N, 1],
            get_features [N, K, 3], active_sh_degree).
        pipe: PipelineParams-like object with ``backend``.
        bg_color: [3] background colour.
        scaling_modifier: multiplies the activated scales.
        override_color: [N, 3] precomputed colours replacing the SH colour.

    Returns:
        dict with ``render`` [3, H, W], ``viewspace_points`` [N, 2] (its .grad after backward is
        d loss / d NDC mean = pixel gradient × (W/2, H/2)), ``visibility_filter`` [N] bool,
        ``radii`` [N], ``alpha`` [1, H, W], ``depths`` [N].
    """
    colors = pc.get_features if override_color is None else override_color
    sh_degree = pc.active_sh_degree if override_color is None else None
    return _render_gaussians(
        viewpoint_camera,
        pc.get_xyz,
        pc.get_rotation,
        pc.get_scaling * scaling_modifier,
        pc.get_opacity.squeeze(-1),
        colors,
        sh_degree,
        pipe,
        bg_color,
    )


def ft_render(
    viewpoint_camera: Any,
    simulated: Mapping[str, torch.Tensor],
    pipe: Any,
    bg_color: torch.Tensor,
    scaling_modifier: float = 1.0,
) -> dict[str, torch.Tensor]:
    """Render the codec-simulated model (finetuning), as the decoder would reconstruct it.

    ``simulated`` is what a codec's ``simulate(state, params)`` returns (RAHT → quantize →
    dequantize → inverse RAHT, differentiably): ``means`` [N, 3], ``quats`` [N, 4], ``scales``
    [N, 3] (activated), ``opacities`` [N] (activated) and ``shs`` [N, K, 3] (the SH degree is
    K's, the finetune's maximum). Plain tensors in, so the renderer imports no codec. Same dict
    as ``render``.
    """
    shs = simulated["shs"]
    return _render_gaussians(
        viewpoint_camera,
        simulated["means"],
        simulated["quats"],
        simulated["scales"] * scaling_modifier,
        simulated["opacities"],
        shs,
        sh_degree_of(shs.shape[1]),
        pipe,
        bg_color,
    )
