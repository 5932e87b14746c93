"""LPIPS (VGG16 variant, Zhang et al. 2018) in plain torch, weights supplied by the user.

No weights ship with the project and nothing is downloaded. ``load_lpips(path)`` reads one
``torch.save``-d state dict holding both parts:

* ``features.<i>.weight`` / ``features.<i>.bias`` for the 13 convolutions of torchvision's
  ``vgg16().features`` (i in 0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28), i.e. the
  ImageNet VGG16 weights under torchvision's names;
* ``lin0.model.1.weight`` … ``lin4.model.1.weight`` ([1, 64|128|256|512|512, 1, 1]), the
  linear heads of the ``lpips`` package (its ``weights/v0.1/vgg.pth``).

Build it once where torchvision and lpips are installed::

    sd = {f"features.{k}": v for k, v in vgg16(weights="IMAGENET1K_V1").features.state_dict().items()}
    sd.update(torch.load("lpips/weights/v0.1/vgg.pth"))
    torch.save(sd, "lpips_vgg.pth")

A full ``lpips.LPIPS(net="vgg").state_dict()`` (keys ``net.slice<j>.<i>.*``, ``lin<j>.*``,
their aliases ``lins.<j>.*``, ``scaling_layer.*``) is accepted as well. With the same weights
the distances equal the lpips package's (tests/test_lpips_reference.py).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from torch import nn

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
    model = LPIPS()
    try:
        model.load_state_dict(_normalize_keys(state), strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise ValueError(f"{path}: LPIPS weights do not match (expected features.<i>.weight/bias "
                         f"and lin0..lin4.model.1.weight): {' '.join(first[1:3])}") from None
    return model.to(device) if device is not None else model
