"""Typed configuration: one dataclass per flag group, turned into argparse with 3DGS flag names.

Each dataclass field is one flag (``--<field name>``); ``short`` in the field metadata adds the
original single-letter alias (``-s``, ``-m``, ``-r``, ...). ``cfg_args`` keeps the original
format (the repr of an ``argparse.Namespace``) and is read back by a literal-only parser.
The codec's flag group, ``CompressionParams``, lives with the codec (``compression/settings.py``):
its choices and defaults come from the layout registry.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence, TypeVar, get_args, get_origin, get_type_hints

from utils.output_paths import CFG_ARGS
from utils.system_utils import atomic_path

T = TypeVar("T")


def flag(default: Any, help: str, short: str | None = None, choices: Sequence[Any] | None = None,
         nargs: str | None = None, default_help: str | None = None) -> Any:
    """A dataclass field that :func:`add_arguments` turns into ``--<name>``.

    ``default_help`` replaces the default shown by ``--help`` (e.g. a default that depends
    on another flag).
    """
    meta = {"help": help, "short": short, "choices": choices, "nargs": nargs,
            "default_help": default_help}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class ModelParams:
    """Scene and model folder (the original 3DGS "Loading Parameters")."""

    sh_degree: int = flag(3, "maximum SH degree")
    source_path: str = flag("", "scene folder (COLMAP or Blender/NeRF-synthetic)", short="s")
    model_path: str = flag("", "output model folder", short="m")
    images: str = flag("images", "image folder inside the COLMAP scene", short="i")
    resolution: int = flag(-1, "1|2|4|8 divide; -1 caps the width at 1600 px; other values "
                                "are a target width", short="r")
    white_background: bool = flag(False, "composite RGBA images on white", short="w")
    data_device: str = flag("cpu", "device holding the ground-truth images")
    eval: bool = flag(False, "hold out test views (COLMAP: every 8th; Blender: test JSON)")
    num_random_points: int = flag(100_000, "random initial points for scenes without a "
                                            "point cloud (Blender)")


@dataclass
class PipelineParams:
    """Rendering options (the original "Pipeline Parameters" plus the backend choice)."""

    backend: str = flag("auto", "rasterizer: auto | torch | gsplat | inria",
                         choices=("auto", "torch", "gsplat", "inria"))
    convert_SHs_python: bool = flag(False, "accepted for compatibility (SH are always "
                                            "evaluated by the backend)")
    compute_cov3D_python: bool = flag(False, "accepted for compatibility")
    debug: bool = flag(False, "extra checks while rendering")
    antialiasing: bool = flag(False, "accepted for compatibility; not supported")


@dataclass
class OptimizationParams:
    """3DGS training schedule, learning rates and densification (original names/defaults)."""

    iterations: int = flag(30_000, "training iterations")
    position_lr_init: float = flag(0.00016, "position lr at step 0 (times cameras_extent)")
    position_lr_final: float = flag(0.0000016, "position lr at position_lr_max_steps")
    position_lr_delay_mult: float = flag(0.01, "position lr delay multiplier")
    position_lr_max_steps: int = flag(30_000, "steps of the position lr decay")
    feature_lr: float = flag(0.0025, "f_dc lr (f_rest uses feature_lr / 20)")
    opacity_lr: float = flag(0.025, "opacity lr")
    scaling_lr: float = flag(0.005, "log-scale lr")
    rotation_lr: float = flag(0.001, "rotation lr")
    percent_dense: float = flag(0.01, "clone/split boundary as a fraction of the extent")
    lambda_dssim: float = flag(0.2, "weight of (1 - SSIM) in the loss")
    densification_interval: int = flag(100, "iterations between densification steps")
    opacity_reset_interval: int = flag(3000, "iterations between opacity resets")
    densify_from_iter: int = flag(500, "first densification iteration")
    densify_until_iter: int = flag(15_000, "last densification iteration")
    densify_grad_threshold: float = flag(0.0002, "mean NDC screen-space gradient threshold")
    min_opacity: float = flag(0.005, "prune Gaussians below this opacity (mcmc: relocate "
                                      "those at or below it)")
    max_screen_size: int = flag(20, "prune Gaussians larger than this many pixels on screen "
                                     "(after the first opacity reset)")
    sh_increase_interval: int = flag(1000, "iterations between SH degree increases")
    random_background: bool = flag(False, "random background colour each iteration")
    strategy: str = flag("default", "densification: default (graphdeco's clone / split / "
                                     "prune, the --densify_* flags) | mcmc (Kheradmand et al. "
                                     "2024 under --cap_max, the --refine_* flags)",
                         choices=("default", "mcmc"))
    cap_max: int = flag(0, "mcmc: the Gaussian budget (required; starting points above it "
                           "are subsampled)")
    refine_every: int = flag(100, "mcmc: iterations between relocation / growth steps")
    refine_start_iter: int = flag(500, "mcmc: first relocation / growth after this iteration")
    refine_stop_iter: int = flag(25_000, "mcmc: no relocation / growth from this iteration")
    noise_lr: float = flag(5e5, "mcmc: position noise scale, times the xyz learning rate")
    opacity_reg: float = flag(0.01, "mcmc: weight of the mean opacity in the loss")
    scale_reg: float = flag(0.01, "mcmc: weight of the mean scale in the loss")
    init_opa: float = flag(0.5, "mcmc: initial opacity")
    init_scale: float = flag(0.1, "mcmc: factor on the initial (nearest-neighbour) scales")


def add_arguments(parser: argparse.ArgumentParser, cls: type, title: str | None = None,
                  sentinel: bool = False) -> argparse._ArgumentGroup:
    """Add one flag per field of the dataclass ``cls`` to ``parser``.

    With ``sentinel`` every default is None, so a caller can tell which flags the user gave
    (render.py merges the CLI over ``cfg_args`` that way).
    """
    group = parser.add_argument_group(title or cls.__name__)
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        names = [f"--{f.name}"] + ([f"-{f.metadata['short']}"] if f.metadata.get("short") else [])
        default = _default_of(f)
        shown = f.metadata.get("default_help") or default
        kwargs: dict[str, Any] = {"help": f"{f.metadata.get('help', '')} (default: {shown})"}
        kwargs["default"] = None if sentinel else default
        typ = scalar_type(hints[f.name])
        if typ is bool:
            kwargs["action"] = "store_true"
        else:
            kwargs["type"] = typ
            if f.metadata.get("choices"):
                kwargs["choices"] = f.metadata["choices"]
            if f.metadata.get("nargs"):
                kwargs["nargs"] = f.metadata["nargs"]
        group.add_argument(*names, **kwargs)
    return group


def extract(cls: type[T], args: argparse.Namespace | dict) -> T:
    """Build ``cls`` from the matching names of a Namespace/dict; missing or None keep defaults."""
    values = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    kwargs = {f.name: values[f.name] for f in dataclasses.fields(cls)
              if values.get(f.name) is not None}
    return cls(**kwargs)


def _default_of(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return f.default


def scalar_type(hint: Any) -> type:
    """The type a flag's value is parsed with: ``X`` for ``X`` and ``Optional[X]``, int for a
    list (the nargs flags are lists of iterations)."""
    if get_origin(hint) is not None:  # Optional[X] or list
        args = [a for a in get_args(hint) if a is not type(None)]
        if get_origin(hint) is list:
            return int
        return args[0] if args else str
    return int if hint is list else hint


# ---------------------------------------------------------------- cfg_args (original format)

def write_cfg_args(model_path: str | os.PathLike, args: argparse.Namespace | dict) -> Path:
    """Write ``<model_path>/cfg_args`` as the repr of a Namespace, like the original 3DGS."""
    values = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    path = Path(model_path) / CFG_ARGS
    with atomic_path(path) as tmp:
        tmp.write_text(repr(argparse.Namespace(**values)))
    return path


def read_cfg_args(path: str | os.PathLike) -> dict[str, Any]:
    """Parse a ``cfg_args`` file (``Namespace(key=literal, ...)``) without ``eval``.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: the file is not a Namespace of literals.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: cfg_args not found")
    text = path.read_text().strip()
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError as exc:
        raise ValueError(f"{path}: not a Namespace(...) repr ({exc.msg})") from None
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == "Namespace" and not node.args):
        raise ValueError(f"{path}: expected 'Namespace(key=value, ...)'")
    try:
        return {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
    except ValueError:
        raise ValueError(f"{path}: cfg_args holds a value that is not a literal") from None


def get_combined_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None
                      ) -> argparse.Namespace:
    """Merge ``<model_path>/cfg_args`` under the command line: given CLI values win.

    The parser must have been built with ``sentinel=True`` groups so that unset flags are None.
    """
    cli = parser.parse_args(argv)
    merged: dict[str, Any] = {}
    if cli.model_path:
        cfg = Path(cli.model_path) / CFG_ARGS
        if cfg.is_file():
            merged.update(read_cfg_args(cfg))
    merged.update({k: v for k, v in vars(cli).items() if v is not None})
    return argparse.Namespace(**merged)
