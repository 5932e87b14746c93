"""The codec as tests drive it from flags: resolve a ``CompressionParams`` into the frozen
settings and call the layout's codec object (what ``training.compress`` does once per run)."""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import torch

from compression.codec import CodecSettings, CodecState
from compression.settings import CompressionParams, codec_settings, resolve_settings


def settings_of(cfg: CompressionParams) -> CodecSettings:
    """``cfg`` resolved and narrowed to the codec's settings."""
    return codec_settings(resolve_settings(cfg))


def prepare(params: Mapping[str, torch.Tensor], cameras: Optional[Sequence],
            cfg: CompressionParams, generator: Optional[torch.Generator] = None,
            **kwargs: Any) -> tuple[CodecState, dict[str, torch.Tensor]]:
    """The codec of ``cfg``'s layout prepares ``params`` (stages 1-6)."""
    settings = settings_of(cfg)
    return settings.layout.codec.prepare(params, cameras, settings, generator, **kwargs)


def simulate(state: CodecState, params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state's codec simulates ``params``."""
    return state.layout.codec.simulate(state, params)


def encode(state: CodecState, params: Mapping[str, torch.Tensor]) -> Any:
    """The state's codec encodes ``params``."""
    return state.layout.codec.encode(state, params)


def decode(bitstream: Any) -> dict[str, torch.Tensor]:
    """The bitstream's codec decodes it (on the CPU)."""
    return bitstream.layout.codec.decode(bitstream)
