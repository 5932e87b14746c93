"""What a codec is: the :class:`Codec` protocol, the :class:`Layout` record that names one, the
frozen :class:`CodecSettings` it takes, the :class:`CodecState` it keeps for one prepared
model, and the attribute groups a layout arranges into columns.

One codec object serves one bitstream family (``bins_codec.BINS_CODEC``: the MesonGS "bins"
container of the seed and official layouts; ``compact_codec.COMPACT_CODEC``: the entropy-coded
``bitstream.gsc``), with CompressAI's shape::

    codec.prepare(params, cameras, settings) ─▶ (state, params')   stages 1-6
    codec.simulate(state, params') ─▶ rasterizer inputs            the finetune's forward
    codec.simulate_with_rate(state, params') ─▶ (inputs, bits)     … with a rate estimate
    codec.encode(state, params') ─▶ bitstream ─ codec.write ─▶ file
    file ─ codec.read ─▶ bitstream ─ codec.decode ─▶ params        stage 9

A bitstream object knows its layout (``bitstream.layout``), whose record names its codec, so
writing and decoding need no table; reading tells the families apart by content in one place
(``compression.bitstream.read_bitstream``). A new family is one module with its codec object
and one :class:`Layout` record in ``layouts.py`` naming it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping, Optional, Protocol, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from compression.euler import euler_to_quat, euler_to_quat_exact, quat_to_euler
from compression.octree import decode_positions, keys_to_codes
from compression.raht import RahtPlan
from utils.sh_utils import sh_degree_of

#: parameters the codec codes (``xyz`` becomes the voxel centres instead)
CODED_PARAMS = ("f_dc", "f_rest", "opacity", "scaling", "rotation")


def rest_columns(sh_degree: int) -> int:
    """Number of f_rest values per Gaussian, 3·((d+1)² − 1)."""
    return 3 * ((sh_degree + 1) ** 2 - 1)


def sh_degree_of_params(params: Mapping[str, Tensor]) -> int:
    """SH degree d of raw parameters, from f_rest's [N, (d+1)² − 1, 3] shape.

    Raises:
        ValueError: f_rest's row count is not (d+1)² − 1 for any degree.
    """
    degree = sh_degree_of(params["f_rest"].shape[1] + 1)
    if degree is None:
        raise ValueError(f"f_rest has {params['f_rest'].shape[1]} coefficients per channel, "
                         f"not (d+1)^2 - 1 for an SH degree d")
    return degree


@dataclass(frozen=True)
class AttributeGroup:
    """One coded attribute: its parameter, its columns, and back.

    Attributes:
        name: group name used by the layouts ("opacity", "euler", "f_dc", "f_rest", "scaling").
        param: the GaussianModel parameter it codes.
        width: number of columns at SH degree d.
        to_columns: raw parameter [N, ...] → [N, width] columns.
        from_columns: ([N, width] columns, d) → raw parameter [N, ...].
        exact_from_columns: the same, reproducible bit for bit on every machine, for codecs
            that decode exactly (None: ``from_columns`` already is).
    """

    name: str
    param: str
    width: Callable[[int], int]
    to_columns: Callable[[Tensor], Tensor]
    from_columns: Callable[[Tensor, int], Tensor]
    exact_from_columns: Optional[Callable[[Tensor, int], Tensor]] = None

    def inverse(self, exact: bool) -> Callable[[Tensor, int], Tensor]:
        """``from_columns``, or its reproducible form when ``exact`` asks for it."""
        return self.exact_from_columns if exact and self.exact_from_columns else self.from_columns


GROUPS: Mapping[str, AttributeGroup] = MappingProxyType({group.name: group for group in (
    AttributeGroup("opacity", "opacity", lambda d: 1, lambda p: p.reshape(p.shape[0], 1),
                   lambda cols, d: cols),
    AttributeGroup("euler", "rotation", lambda d: 3, quat_to_euler,
                   lambda cols, d: euler_to_quat(cols), lambda cols, d: euler_to_quat_exact(cols)),
    AttributeGroup("f_dc", "f_dc", lambda d: 3, lambda p: p.reshape(p.shape[0], 3),
                   lambda cols, d: cols.reshape(cols.shape[0], 1, 3)),
    AttributeGroup("f_rest", "f_rest", rest_columns, lambda p: p.reshape(p.shape[0], -1),
                   lambda cols, d: cols.reshape(cols.shape[0], (d + 1) ** 2 - 1, 3)),
    AttributeGroup("scaling", "scaling", lambda d: 3, lambda p: p, lambda cols, d: cols),
)})


@dataclass(frozen=True)
class Container:
    """How a codec family's bitstream is stored.

    Attributes:
        file_name: the bitstream file in the iteration folder (its size is the reported size).
        folder_name: an unpacked copy beside it, or None.
    """

    file_name: str
    folder_name: Optional[str]


@dataclass(frozen=True)
class FinetuneSchedule:
    """The finetune's learning rates over its steps, as factors on its base rates
    (``training.finetune.FINETUNE_LRS`` × ``--finetune_lr_scale``): a trained tensor named in
    ``factors`` starts at its first factor and falls along a half cosine to its second at the
    last step; the others keep factor 1. The default is CODEC.md §7's constant rates.

    ``average_decay`` d > 0: the finetune's result (and every evaluation or save on the way) is
    the exponential moving average of the trained tensors over the steps so far, each step's
    values weighing d times the next's (Polyak averaging: the single-view steps leave the
    last values noisy); 0: the last step's values (CODEC.md §7).

    ``rate_weight`` w > 0: the finetune's loss adds w × the codec's estimate of the bits per
    coded Gaussian of what it trains (``Codec.simulate_with_rate``), so that a step that wins
    little PSNR for many bits is not taken; 0: the photometric loss alone (CODEC.md §7)."""

    factors: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    average_decay: float = 0.0
    rate_weight: float = 0.0

    def factor(self, name: str, step: int, iterations: int) -> float:
        """The factor on tensor ``name``'s rate at finetune step ``step`` of ``iterations``
        (1-based)."""
        start, end = self.factors.get(name, (1.0, 1.0))
        fall = 0.5 * (1.0 + math.cos(math.pi * min(step / max(iterations, 1), 1.0)))
        return end + (start - end) * fall


@dataclass(frozen=True, eq=False)
class Layout:
    """One codec layout (``layouts.py`` holds the records).

    Attributes:
        name: the ``--layout`` value (stored in the bins container's meta.json).
        raht: groups through RAHT + quantization of the AC coefficients, column order.
        direct: groups quantized directly (rows in voxel-key order), column order.
        vq: groups vector-quantized with one codebook over their columns.
        trains: tensors the finetune trains: parameters by name, ``codebook`` for the VQ
            codebook (the parameters of ``vq`` groups are then frozen).
        files: the bins container's array files, in order (meta.json comes first); empty for
            other families.
        codec: the :class:`Codec` of the layout's bitstream family.
        defaults: the value of every layout-dependent setting when neither its flag nor the
            quality level gives it; None: chosen from the model at prepare (depth, codebook
            size) or not used by the codec (``Codec.unused_settings``).
        quality_levels: ``--quality`` → the settings it stands for (flags given win); may hold
            ``codebook_reference``, the codebook size of a 32,768-Gaussian model (the size is
            scaled to the model). Empty: the layout has no quality knob.
        quality_without_finetune: the default ``--quality`` when no finetune runs (no scene,
            or ``--finetune_iterations 0``); None: ``defaults["quality"]`` either way. Coarse
            steps rely on the finetune to win back what they lose, so without it the default
            codes finer.
        step_weights: codecs with per-level steps: each RAHT group's step relative to the base
            step.
        camera_free_area: without cameras, the importance weighs each opacity by the
            Gaussian's mean projected area (``importance.mean_projected_area``); False: the
            opacity alone (MesonGS, CODEC.md §2).
        finetune_schedule: the finetune's learning rates over its steps; the default keeps
            them constant (CODEC.md §7).
    """

    name: str
    raht: tuple[str, ...]
    direct: tuple[str, ...]
    vq: tuple[str, ...]
    trains: tuple[str, ...]
    files: tuple[str, ...]
    codec: Codec
    defaults: Mapping[str, Any] = field(repr=False)
    quality_levels: Mapping[int, Mapping[str, Any]] = field(default_factory=dict, repr=False)
    quality_without_finetune: Optional[int] = None
    step_weights: Mapping[str, float] = field(default_factory=dict, repr=False)
    camera_free_area: bool = False
    finetune_schedule: FinetuneSchedule = FinetuneSchedule()

    def __post_init__(self) -> None:
        coded = [GROUPS[name].param for name in self.raht + self.direct + self.vq]
        if sorted(coded) != sorted(CODED_PARAMS):
            raise ValueError(f"layout {self.name!r} must code each of {CODED_PARAMS} once, "
                             f"codes {coded}")
        if self.step_weights and sorted(self.step_weights) != sorted(self.raht):
            raise ValueError(f"layout {self.name!r}: step_weights must name each RAHT group")

    def width(self, groups: tuple[str, ...], sh_degree: int) -> int:
        """Columns of ``groups`` (e.g. ``layout.raht``) at SH degree d."""
        return sum(GROUPS[name].width(sh_degree) for name in groups)

    def columns(self, groups: tuple[str, ...], params: Mapping[str, Tensor]) -> Tensor:
        """Raw parameters → the [N, width] matrix of ``groups`` in column order."""
        return torch.cat([GROUPS[name].to_columns(params[GROUPS[name].param])
                          for name in groups], dim=1)

    def params_from_columns(self, groups: tuple[str, ...], matrix: Tensor, sh_degree: int, *,
                            exact: bool = False) -> dict[str, Tensor]:
        """Inverse of :meth:`columns`: [N, width] → raw parameters by name (``exact``: each
        group's reproducible inverse, :meth:`AttributeGroup.inverse`).

        One ``split`` (not one slice per group), so that the backward is one concatenation
        instead of a zero-filled full-width gradient per group.
        """
        widths = [GROUPS[name].width(sh_degree) for name in groups]
        return {GROUPS[name].param: GROUPS[name].inverse(exact)(cols, sh_degree)
                for name, cols in zip(groups, torch.split(matrix, widths, dim=1))}


@dataclass(frozen=True)
class CodecSettings:
    """The settings one compression's codec runs with, resolved once
    (``settings.codec_settings`` of ``settings.resolve_settings``' result) and frozen.

    ``depth`` and ``codebook_size`` None: chosen from the model at prepare; a setting the
    layout's codec does not use (``Codec.unused_settings``) is None. ``ladder_position``: the
    real position on the quality ladder (``compression.ladder``) a size target's search chose
    the settings at (``quality`` is then None: the file names no level); None: ``quality``.
    """

    layout: Layout
    percent: float
    depth: Optional[int]
    n_block: Optional[int]
    num_bits: Optional[int]
    quantizer: Optional[str]
    codebook_size: Optional[int]
    vq_steps: int
    vq_batch: int
    oct_merge: str
    imp_beta: float
    quality: Optional[int]
    base_step: Optional[float]
    voxel_ratio: Optional[float]
    ladder_position: Optional[float] = None

    @property
    def position(self) -> Optional[float]:
        """Where on the quality ladder the settings stand (the codebook size follows it)."""
        return self.ladder_position if self.ladder_position is not None else self.quality


class CodecState(nn.Module):
    """Everything a codec keeps for one prepared model (frozen geometry, RAHT, quantizers).

    Attributes:
        layout: the :class:`Layout` (``layout.codec`` is the codec that made the state).
        sh_degree: d.
        depth: D.
        num_bits, quantizer_kind: b and "vanilla" | "lsq" of every block quantizer (None for
            codecs without block quantizers).
        plan: the :class:`RahtPlan` of the frozen voxels.
        quantizer: the quantizer of the C RAHT columns; None until initialized.
        direct_quantizer: the quantizer of the C' directly quantized columns (official: the 3
            log-scales), or None.
        codebook: layouts with VQ, [K, F] trainable codebook (nn.Parameter), else None.
        codebook_exponent: codecs storing the codebook on a grid: the exponent e of its step
            2^(e/4) (fixed at prepare), else None.
        num_input: Gaussians of the model before pruning and merging (bits per input Gaussian).
        quality: the ``--quality`` level (0 for layouts without the knob).
        up: [3] float32 unit up vector of the scene from the training cameras
            (``compact_format.camera_up``), or None; the compact container stores it.
    Buffers: ``keys`` [N] int64 ascending voxel keys, ``bbox`` [6] float64, ``means`` [N, 3]
    voxel centres (float32), ``vq_indices`` [N] int64 (layouts with VQ).

    ``train()``/``eval()`` switch the quantizers: training forwards grow the vanilla ranges,
    evaluation and saving never move them (level quantizers never move).
    """

    def __init__(self, layout: Layout, sh_degree: int, depth: int, num_bits: Optional[int],
                 quantizer_kind: Optional[str], keys: Tensor, bbox: Tensor, plan: RahtPlan,
                 codebook: Optional[Tensor] = None, vq_indices: Optional[Tensor] = None, *,
                 num_input: Optional[int] = None, quality: int = 0,
                 codebook_exponent: Optional[int] = None) -> None:
        super().__init__()
        self.layout, self.sh_degree, self.depth = layout, sh_degree, depth
        self.num_bits, self.quantizer_kind = num_bits, quantizer_kind
        self.plan = plan
        self.num_input = int(keys.shape[0] if num_input is None else num_input)
        self.quality = int(quality)
        self.quantizer: Optional[nn.Module] = None
        self.direct_quantizer: Optional[nn.Module] = None
        self.codebook = None if codebook is None else nn.Parameter(codebook.detach().clone())
        self.codebook_exponent = codebook_exponent
        self.up: Optional[np.ndarray] = None
        self.register_buffer("keys", keys)
        self.register_buffer("bbox", bbox.to(torch.float64))
        self.register_buffer("means", decode_positions(keys_to_codes(keys, depth), bbox, depth)
                             .to(torch.float32))
        self.register_buffer("vq_indices", None if vq_indices is None else vq_indices.long())

    @property
    def num_gaussians(self) -> int:
        """N."""
        return int(self.keys.shape[0])


class Codec(Protocol):
    """One bitstream family (module docstring); stateless: what one model needs is in its
    :class:`CodecState`.

    Attributes:
        container: how its bitstreams are stored (file name, unpacked folder).
        unused_settings: settings its layouts do not use (giving one is an error).
    """

    container: Container
    unused_settings: tuple[str, ...]

    def prepare(self, params: Mapping[str, Tensor], cameras: Optional[Sequence],
                settings: CodecSettings, generator: Optional[torch.Generator] = None, *,
                backend: str = "auto", importance: Optional[Tensor] = None
                ) -> tuple[CodecState, dict[str, Tensor]]:
        """Stages 1-6 on raw parameters: ``(state, params')`` (``pipeline.prepare_geometry``
        then the family's quantizers; ``importance``: the scores ``pipeline.importance_of``
        gave for these parameters and cameras, None: computed)."""

    def simulate(self, state: CodecState, params: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """What the decoder would reconstruct, differentiably: dict ``means`` [N, 3], ``quats``
        [N, 4], ``scales`` [N, 3] and ``opacities`` [N] activated, ``shs`` [N, K, 3]."""

    def simulate_with_rate(self, state: CodecState, params: Mapping[str, Tensor]
                           ) -> tuple[dict[str, Tensor], Optional[Tensor]]:
        """:meth:`simulate`'s inputs and a differentiable estimate of the bits per coded
        Gaussian that the trained values cost in the bitstream (None: the family has no rate
        model)."""

    def trainable(self, state: CodecState, params: Mapping[str, Tensor]
                  ) -> tuple[dict[str, Tensor], list[Tensor]]:
        """What the finetune trains: tensors by name (``Layout.trains``) and the learned
        quantizer steps (LSQ; empty otherwise)."""

    def encode(self, state: CodecState, params: Mapping[str, Tensor]) -> Any:
        """The bitstream object (quantized with the current ranges or steps, never moving
        them); its ``layout`` is ``state.layout``."""

    def decode(self, bitstream: Any, device: torch.device | str | None = None
               ) -> dict[str, Tensor]:
        """Raw parameters named like ``GaussianModel.params`` in ascending voxel-key order
        (``xyz`` float32 voxel centres) on ``device`` (default CPU)."""

    def write(self, bitstream: Any, out_dir: str | Path) -> Path:
        """Write the container into ``out_dir`` atomically; the bitstream file's path."""

    def recognizes(self, path: Path) -> bool:
        """Whether ``path`` holds this family's container (by content, not by name)."""

    def read(self, path: Path, layouts: Mapping[str, Layout]) -> Any:
        """Read and fully validate ``path`` (the ``layouts`` naming this codec are the ones
        a stream may hold). Raises FileNotFoundError, or a ValueError naming the file."""
