"""LPIPS (VGG16 variant, Zhang et al. 2018) in plain torch, without torchvision or lpips.

Where the weights come from, in the order :func:`lpips_for_evaluation` tries them:

1. a weights file the user names (``--lpips_weights`` or ``$LPIPS_WEIGHTS``), read by
   :func:`load_lpips`;
2. the ecosystem's convention (what the ``lpips`` package does through torchvision,
   :func:`standard_lpips`): torchvision's ImageNet VGG16 weights where torch caches them,
   ``$TORCH_HOME/hub/checkpoints/vgg16-397923af.pth`` (``torch.hub``; downloaded there on first
   use when online), plus the LPIPS v0.1 linear heads that ship in ``utils/weights/`` (1,472
   values from the lpips package, BSD-2, notice in ``utils/weights/LICENSE.lpips``);
3. none: LPIPS is skipped, said in one line with the reason (offline without a cached file).

A weights file for :func:`load_lpips` is one ``torch.save``-d state dict holding both parts:

* ``features.<i>.weight`` / ``features.<i>.bias`` for the 13 convolutions of torchvision's
  ``vgg16().features`` (i in 0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28), i.e. the
  ImageNet VGG16 weights under torchvision's names;
* ``lin0.model.1.weight`` … ``lin4.model.1.weight`` ([1, 64|128|256|512|512, 1, 1]), the
  linear heads of the ``lpips`` package (its ``weights/v0.1/vgg.pth``).

A full ``lpips.LPIPS(net="vgg").state_dict()`` (keys ``net.slice<j>.<i>.*``, ``lin<j>.*``,
their aliases ``lins.<j>.*``, ``scaling_layer.*``) is accepted as well. With the same weights
the distances equal the lpips package's (tests/test_lpips_reference.py).
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

logger = logging.getLogger(__name__)

#: environment variable naming a weights file (metrics.py and the codec's evaluation)
LPIPS_ENV = "LPIPS_WEIGHTS"
#: torchvision's VGG16 ImageNet weights (IMAGENET1K_V1), the backbone the lpips package uses;
#: torch.hub caches it under its file name, whose hex part is the start of its SHA-256
VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
#: the LPIPS v0.1 linear heads for VGG16 (``lin<j>.model.1.weight``), shipped with the project
LINEAR_HEADS = Path(__file__).resolve().parent / "weights" / "lpips_v0.1_vgg_lin.pth"

# torchvision vgg16 "features" up to relu5_3: conv widths, "M" = 2×2 max pool.
_VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
# Indices (in ``features``) of the ReLUs whose outputs LPIPS compares: relu1_2 … relu5_3.
_TAP_INDICES = (3, 8, 15, 22, 29)
_TAP_CHANNELS = (64, 128, 256, 512, 512)
_LPIPS_SLICE_KEY = re.compile(r"net\.slice\d\.(\d+)\.(weight|bias)$")
_LPIPS_LINS_KEY = re.compile(r"lins\.(\d)\.(.+)$")  # the package's ModuleList of lin0..lin4


def _vgg16_features() -> nn.Sequential:
    """VGG16 conv stack with torchvision's module indices (0 … 29)."""
    layers: list[nn.Module] = []
    in_channels = 3
    for item in _VGG16_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_channels, item, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
            in_channels = item
    return nn.Sequential(*layers)


class _LinearHead(nn.Module):
    """1×1 conv without bias (named ``model.1`` as in the lpips package; ``model.0`` is dropout)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, kernel_size=1, bias=False))


class LPIPS(nn.Module):
    """LPIPS distance with a VGG16 backbone (version 0.1, spatially averaged)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = _vgg16_features()
        for j, channels in enumerate(_TAP_CHANNELS):
            self.add_module(f"lin{j}", _LinearHead(channels))
        # Input normalisation of the lpips "ScalingLayer" (inputs in [-1, 1]).
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1),
                             persistent=False)
        self.eval()
        self.requires_grad_(False)

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Unit-normalized (over channels) activations at the five tap layers."""
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in _TAP_INDICES:
                taps.append(x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10))
        return taps

    def forward(self, img1: torch.Tensor, img2: torch.Tensor) -> torch.Tensor:
        """LPIPS between images in [0, 1].

        Args:
            img1, img2: [B, 3, H, W] or [3, H, W] RGB in [0, 1].

        Returns:
            [B] distances (a scalar for unbatched inputs); 0 for identical images.
        """
        if img1.shape != img2.shape or img1.dim() not in (3, 4) or img1.shape[-3] != 3:
            raise ValueError(f"LPIPS: images must share a [3, H, W] or [B, 3, H, W] shape, got "
                             f"{tuple(img1.shape)} and {tuple(img2.shape)}")
        single = img1.dim() == 3
        pair = torch.cat([img1[None], img2[None]] if single else [img1, img2])
        taps = self._taps(((pair * 2 - 1) - self.shift) / self.scale)
        batch = pair.shape[0] // 2
        dist = sum(getattr(self, f"lin{j}").model((t[:batch] - t[batch:]) ** 2).mean(dim=(1, 2, 3))
                   for j, t in enumerate(taps))
        return dist[0] if single else dist


def _normalize_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map lpips-package names (``net.slice<j>.<i>.*``, ``lins.<j>.*``) to ours
    (``features.<i>.*``, ``lin<j>.*``); drop its input-scaling buffers."""
    out = {}
    for key, value in state.items():
        if key.startswith("scaling_layer."):
            continue
        if match := _LPIPS_SLICE_KEY.match(key):
            key = f"features.{match.group(1)}.{match.group(2)}"
        elif match := _LPIPS_LINS_KEY.match(key):
            key = f"lin{match.group(1)}.{match.group(2)}"
        out[key] = value
    return out


class LpipsUnavailable(RuntimeError):
    """The standard weights are neither cached nor downloadable; the message says why."""


def _network(state: Mapping[str, torch.Tensor], source: Any,
             device: torch.device | str | None) -> LPIPS:
    """:class:`LPIPS` with ``state`` (our key names or the lpips package's) loaded strictly.

    Raises:
        ValueError: keys or shapes do not match; the message names ``source``.
    """
    model = LPIPS()
    try:
        model.load_state_dict(_normalize_keys(dict(state)), strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise ValueError(f"{source}: LPIPS weights do not match (expected features.<i>.weight/bias "
                         f"and lin0..lin4.model.1.weight): {' '.join(first[1:3])}") from None
    return model.to(device) if device is not None else model


def load_lpips(path: str | os.PathLike, device: torch.device | str | None = None) -> LPIPS:
    """Build :class:`LPIPS` from a weights file (keys in the module docstring).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not a state dict or its keys/shapes do not match.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: LPIPS weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for a foreign file
        raise ValueError(f"{path}: not a torch state dict ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, found {type(state).__name__}")
    return _network(state, path, device)


def cached_vgg16_path() -> Path:
    """Where torch.hub keeps :data:`VGG16_URL`: ``<torch.hub.get_dir()>/checkpoints/<name>``
    (``$TORCH_HOME/hub/...``, by default ``~/.cache/torch/hub/...``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(VGG16_URL).name


def standard_lpips(device: torch.device | str | None = None, progress: bool = True) -> LPIPS:
    """LPIPS with torchvision's VGG16 weights (through ``torch.hub``: the cached file, else a
    download into the cache, its SHA-256 prefix checked) and the shipped linear heads.

    Raises:
        LpipsUnavailable: the weights are not cached and cannot be fetched (offline), or the
            cached file is unreadable.
    """
    try:  # torch.hub announces a download on stdout: stderr keeps a JSON stdout clean
        with contextlib.redirect_stdout(sys.stderr):
            vgg = torch.hub.load_state_dict_from_url(VGG16_URL, map_location="cpu",
                                                     progress=progress, check_hash=True,
                                                     weights_only=True)
    except Exception as exc:  # URLError/OSError offline, RuntimeError on a hash mismatch, ...
        raise LpipsUnavailable(f"torchvision's VGG16 weights are not in {cached_vgg16_path()} "
                               f"and could not be fetched from {VGG16_URL} "
                               f"({type(exc).__name__}: {exc})") from None
    state = {key: value for key, value in vgg.items() if key.startswith("features.")}
    state.update(torch.load(LINEAR_HEADS, map_location="cpu", weights_only=True))
    return _network(state, cached_vgg16_path(), device)


def lpips_for_evaluation(weights: str | os.PathLike | None, device: torch.device | str | None,
                         progress: bool = True) -> LPIPS | None:
    """The LPIPS network an evaluation reports with: ``weights`` (or ``$LPIPS_WEIGHTS``) when
    given, else :func:`standard_lpips`; None when the standard weights are unavailable, said
    in one warning line (PSNR and SSIM are then reported alone).

    Raises:
        FileNotFoundError, ValueError: a named weights file that is missing or invalid.
    """
    weights = weights or os.environ.get(LPIPS_ENV)
    if weights:
        return load_lpips(weights, device)
    try:
        return standard_lpips(device, progress)
    except LpipsUnavailable as exc:
        logger.warning("LPIPS skipped: %s; reporting PSNR and SSIM only", exc)
        return None
