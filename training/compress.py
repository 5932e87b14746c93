"""What ``train.py`` and ``render.py`` run around the codec: compress a model, find a bitstream.

``resolve_compression``: the flags resolved once per compression into a frozen
:class:`CompressionSettings` (train.py records it in cfg_args and hands it to
``compress_model``). ``prepare_compression``: the layout's codec prepares (stages 1-6), or a
size target's search, with nothing written (train.py runs it on a given model before it writes
the model folder's files). ``compress_model``: that prepare (unless given) → evaluate and save
at finetune iteration 0 → finetune (which holds the codec, its state and the
parameters) with an evaluation + save at each ``--finetune_test_iterations`` step. Every save
writes the layout's bitstream and ``report.json`` into
``<model>/compression/<layout>/iteration_<k>/`` and one row of
``<model>/compression/results.csv`` (paths: ``utils/output_paths.py``; files:
``reporting/codec_results.py``). ``report.json``'s ``finetune_seconds`` is the finetune time up
to iteration k, evaluations and saves excluded (null without a scene).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, NamedTuple, Optional

import torch
from torch import nn

from arguments import ModelParams, write_cfg_args
from compression.bitstream import decode_file, save
from compression.codec import Codec, CodecSettings, CodecState
from compression.layouts import LAYOUTS
from compression.settings import CompressionParams, codec_settings, resolve_settings
from compression.size_target import SizeTarget, fit, search, window
from reporting.codec_results import ResultsRow, append_results, write_report
from scene import Scene
from scene.formats import BITSTREAM_KINDS, detect_format
from scene.gaussian_model import GaussianModel
from scene.interop import standard_ply
from scene.ply import standard_ply_size_bytes
from training.finetune import (evaluate_codec, finetune, leaf_parameters,
                               lpips_from_environment, resolve_test_iterations)
from utils.output_paths import (COMPRESSED_METHOD, GIVEN_SUFFIX, TEST_SPLIT, TRAIN_SPLIT,
                                UNCOMPRESSED_METHOD, compressed_method, compression_dir,
                                iteration_dir, layout_dir, parse_iteration_dir, submethod)
from utils.system_utils import searchForMaxIteration

logger = logging.getLogger(__name__)

#: the size of a compact file after the finetune over its size before. Its rate term makes
#: the file shrink, the more the finer the level (README, size targets: ×0.964 and ×0.997 on
#: the bundled scene's model at levels 5 and 3, ×0.86 to ×0.95 on six trained models at level
#: 5); between the bundled model's two, where targets at both levels' sizes land in their
#: windows with the fewest voxels dropped (0.96: 26 at level 3; 0.98: 7 at level 5)
FINETUNE_SIZE_RATIO = 0.98


@dataclass(frozen=True)
class CompressionSettings:
    """One compression's settings, resolved once (:func:`resolve_compression`).

    Attributes:
        codec: what the codec takes (``codec.layout`` is the layout record).
        finetune_iterations, finetune_test_iterations, finetune_lr_scale: the finetune's.
        recorded: every flag of the codec's group as resolved (what cfg_args and report.json
            record).
        target: the size target (``--target_size`` / ``--target_bits``), or None: ``codec``
            then lacks the settings the search chooses.
    """

    codec: CodecSettings
    finetune_iterations: int
    finetune_test_iterations: tuple[int, ...]
    finetune_lr_scale: float
    recorded: Mapping[str, Any]
    target: Optional[SizeTarget] = None


def resolve_compression(cfg: CompressionParams, *, scene: bool) -> CompressionSettings:
    """``cfg`` resolved (``compression.settings.resolve_settings``: the paper configuration,
    the layout's quality level and defaults, checks) into the frozen settings of one
    compression; ``scene``: a scene is there to finetune on.

    Raises:
        ValueError: an unknown layout, paper configuration or scene, or an invalid value.
    """
    resolved = resolve_settings(cfg, scene=scene)
    target = (SizeTarget(resolved.target_size, resolved.target_bits)
              if resolved.target_size is not None or resolved.target_bits is not None else None)
    return CompressionSettings(
        codec=codec_settings(resolved), finetune_iterations=resolved.finetune_iterations,
        finetune_test_iterations=tuple(int(i) for i in resolved.finetune_test_iterations),
        finetune_lr_scale=resolved.finetune_lr_scale,
        recorded=MappingProxyType(dataclasses.asdict(resolved)), target=target)


@dataclass
class CompressionRun:
    """What :func:`compress_model` leaves: one report per save (the content of each
    ``report.json``, in iteration order), and the codec, its state and the finetuned
    parameters of the last save."""

    reports: list[dict[str, Any]]
    codec: Codec
    state: CodecState
    params: dict[str, nn.Parameter]


@dataclass
class TargetSearch:
    """A size target's run (``compression.size_target``): the search before the finetune, the
    fit of the last save, and what report.json records of them (``target``).

    Attributes:
        target: the target; ``bytes`` its byte count; ``goal``: the sizes the search aimed at
            (the window divided by :data:`FINETUNE_SIZE_RATIO` when a finetune follows).
        result: the search's (state, parameters, settings, probes, outcome).
        seconds: the search's wall time.
        fitted: the fit's probes once the last save was fitted (None before).
    """

    target: SizeTarget
    bytes: int
    num_input: int
    goal: tuple[int, int]
    result: Any
    seconds: float
    fitted: Optional[list] = None

    @classmethod
    def run(cls, gaussians: GaussianModel, cameras: Any, settings: CompressionSettings,
            finetuned: bool, *, backend: str, seed: int) -> "TargetSearch":
        """Search the settings of ``settings.target`` for ``gaussians`` (``finetuned``: a
        finetune follows, so aim at the window over its expected growth).

        Raises:
            compression.size_target.TargetUnreachable: below the coarsest settings.
        """
        num_input = gaussians.num_gaussians
        target_bytes = settings.target.bytes_for(num_input)
        low, high = window(target_bytes)
        ratio = FINETUNE_SIZE_RATIO if finetuned else 1.0
        goal = (math.ceil(low / ratio), math.floor(high / ratio))
        start = time.perf_counter()
        result = search(settings.codec.layout.codec, gaussians.params, cameras, settings.codec,
                        goal, seed=seed, backend=backend,
                        what=settings.target.describe(num_input))
        seconds = time.perf_counter() - start
        found = result.probes[-1] if result.outcome == "finest" else None
        if found is not None:
            logger.warning("%s: the finest settings need only %s bytes; writing those",
                           settings.target.describe(num_input), f"{found.size_bytes:,}")
        logger.info("size target: %d probes in %.1f s, %s", len(result.probes), seconds,
                    result.outcome)
        return cls(settings.target, target_bytes, num_input, goal, result, seconds)

    @property
    def state(self) -> CodecState:
        return self.result.state

    @property
    def params(self) -> dict:
        return self.result.params

    def fit(self, codec: Codec, state: CodecState, params: dict, cameras: Any,
            backend: str) -> tuple[CodecState, dict]:
        """The finetuned state and parameters brought into the window (at most the target
        when the finest settings were below it)."""
        low, high = window(self.bytes)
        fitted_state, fitted, self.fitted = fit(
            codec, state, params, cameras, (0 if self.result.outcome == "finest" else low, high),
            beta=self.result.settings.imp_beta, backend=backend)
        return fitted_state, fitted

    def record(self, size_bytes: int) -> dict[str, Any]:
        """report.json's ``target`` for a save of ``size_bytes``."""
        chosen = self.result.settings
        low, high = window(self.bytes)
        return {
            "target_size": self.target.size_bytes, "target_bits": self.target.bits,
            "bytes": self.bytes, "window": [low, high], "within": low <= size_bytes <= high,
            "outcome": self.result.outcome,
            "settings": {"ladder_position": chosen.ladder_position, "percent": chosen.percent,
                         "base_step": chosen.base_step, "voxel_ratio": chosen.voxel_ratio,
                         "depth": self.state.depth,
                         "codebook_size": (0 if self.state.codebook is None
                                           else int(self.state.codebook.shape[0]))},
            "search": {"goal": list(self.goal), "seconds": self.seconds,
                       "probes": [dataclasses.asdict(p) for p in self.result.probes]},
            "fit": (None if self.fitted is None
                    else {"probes": [dataclasses.asdict(p) for p in self.fitted]}),
        }


@dataclass
class PreparedCompression:
    """The codec's state and parameters before the finetune: stages 1-6 at the given
    settings, or the size target's search (``sized``; None without a target)."""

    state: CodecState
    params: dict[str, Any]
    sized: Optional[TargetSearch] = None


def prepare_compression(gaussians: GaussianModel, scene: Any, settings: CompressionSettings,
                        pipe: Any, *, seed: int = 0) -> PreparedCompression:
    """The codec's prepare, or a target's search, for ``gaussians`` (arguments as in
    :func:`compress_model`); nothing is written, so train.py runs it before it writes into the
    model folder and a refused target leaves the folder as it was.

    Raises:
        ValueError: invalid settings; ``TargetUnreachable`` (a ValueError): a target below the
            coarsest settings.
    """
    codec = settings.codec.layout.codec
    train_views = scene.getTrainCameras() if scene is not None else []
    if settings.target is None:
        state, prepared = codec.prepare(gaussians.params, train_views or None, settings.codec,
                                        torch.Generator(device=gaussians.device).manual_seed(seed),
                                        backend=pipe.backend)
        return PreparedCompression(state, prepared)
    finetuned = scene is not None and resolve_test_iterations(
        settings.finetune_iterations, settings.finetune_test_iterations)[-1] > 0
    sized = TargetSearch.run(gaussians, train_views or None, settings, finetuned,
                             backend=pipe.backend, seed=seed)
    return PreparedCompression(sized.state, sized.params, sized)


def compress_model(gaussians: GaussianModel, scene: Any, settings: CompressionSettings,
                   pipe: Any, model_path: str | os.PathLike, *, quiet: bool = False,
                   seed: int = 0, prepared: Optional[PreparedCompression] = None
                   ) -> CompressionRun:
    """Compress a trained model and save it at every finetune test iteration.

    Args:
        gaussians: the trained model (read, not changed).
        scene: a ``Scene`` (training cameras for the importance and the finetune, test views
            for the evaluation; the training views when it has none), or None: camera-free
            importance, no finetune, a single save at iteration 0 with null metrics.
        settings: from :func:`resolve_compression` (with ``scene=scene is not None``).
        pipe: PipelineParams-like (``backend``).
        model_path: the model folder.
        quiet: no progress bars.
        seed: seed of the codec's random choices and of the finetune view order.
        prepared: :func:`prepare_compression`'s result for these arguments (None: run here).

    Raises:
        ValueError: invalid settings (see the codec's ``prepare`` and the finetune).
    """
    layout = settings.codec.layout
    codec = layout.codec
    iterations = settings.finetune_iterations if scene is not None else 0
    tests = resolve_test_iterations(iterations, settings.finetune_test_iterations
                                    if scene is not None else [0])
    ply_size_bytes = standard_ply_size_bytes(gaussians.num_gaussians, gaussians.max_sh_degree)
    device = gaussians.device
    train_views = scene.getTrainCameras() if scene is not None else []
    if prepared is None:
        prepared = prepare_compression(gaussians, scene, settings, pipe, seed=seed)
    state, sized = prepared.state, prepared.sized
    params = leaf_parameters(prepared.params)
    eval_views, eval_split = [], None
    if scene is not None:
        eval_views = scene.getTestCameras() or train_views
        eval_split = TEST_SPLIT if scene.getTestCameras() else TRAIN_SPLIT
        if eval_split == TRAIN_SPLIT:
            logger.warning("codec: no test views (train without --eval); evaluating on the "
                           "training views")
    white = bool(scene.args.white_background) if scene is not None else False
    background = torch.full((3,), float(white), device=device)
    lpips_net = lpips_from_environment(device, quiet) if eval_views else None
    reports: list[dict[str, Any]] = []
    finetune_start, saving_seconds = time.perf_counter(), 0.0  # finetune = elapsed - saving

    def evaluate_and_save(step: int) -> Optional[float]:
        nonlocal saving_seconds, state, params
        entered = time.perf_counter()
        finetune_seconds = (entered - finetune_start - saving_seconds
                            if scene is not None else None)
        state.eval()
        if sized is not None and step == tests[-1]:  # the last save: into the window
            state, params = sized.fit(codec, state, params, train_views or None, pipe.backend)
        metrics = (evaluate_codec(codec, state, params, eval_views, pipe, background, lpips_net)
                   if eval_views else None)
        out_dir = iteration_dir(model_path, layout.name, step)
        info = save(state, params, out_dir)
        psnr, ssim, lpips = ((metrics.psnr, metrics.ssim, metrics.lpips) if metrics
                             else (None, None, None))
        path = write_report(out_dir, layout=layout.name, iteration=step, save_info=info,
                            psnr=psnr, ssim=ssim, lpips=lpips, ply_size_bytes=ply_size_bytes,
                            finetune_seconds=finetune_seconds, settings=settings.recorded,
                            extra={"eval_split": eval_split,
                                   **({} if sized is None else
                                      {"target": sized.record(info["size_bytes"])})})
        append_results(model_path, [ResultsRow(submethod(layout.name, step), psnr, ssim, lpips,
                                               info["size_bytes"], info["num_gaussians"])])
        reports.append(json.loads(path.read_text()))
        logger.info("[FINETUNE %d] %s: %d bytes (%.1f bits/Gaussian, N=%d; %.1f bits per input "
                    "Gaussian)%s", step, layout.name, info["size_bytes"],
                    info["bits_per_gaussian"], info["num_gaussians"],
                    info["bits_per_input_gaussian"],
                    "" if psnr is None else f", {eval_split} PSNR {psnr:.2f}")
        saving_seconds += time.perf_counter() - entered
        return psnr

    if scene is None:
        evaluate_and_save(0)
        return CompressionRun(reports, codec, state, params)
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(layout_dir(model_path, layout.name)))
    finetune_start = time.perf_counter()
    try:
        finetune(codec, state, params, train_views, pipe, background, iterations=iterations,
                 test_iterations=tests, on_test=evaluate_and_save,
                 lr_scale=settings.finetune_lr_scale,
                 generator=torch.Generator().manual_seed(seed), quiet=quiet, writer=writer)
    finally:
        writer.close()
    return CompressionRun(reports, codec, state, params)


def load_model_file(path: str | os.PathLike, sh_degree: int, device: torch.device | str
                    ) -> GaussianModel:
    """The model in ``path``, told apart by content: one of our bitstreams (a bins folder,
    bins.zip or compact ``bitstream.gsc``: decoded, SH degree at the stream's), a 3DGS PLY, or
    another tool's format that :func:`scene.interop.standard_ply` converts (at most
    ``sh_degree``).

    Raises:
        FileNotFoundError, ValueError: a missing or invalid file.
    """
    if detect_format(path) in BITSTREAM_KINDS:
        gaussians = GaussianModel.from_params(decode_file(path, device=device))
    else:
        gaussians = GaussianModel(sh_degree)
        with standard_ply(path) as ply:
            gaussians.load_ply(ply)
        gaussians = gaussians.to(device)
    # logged once read: a file refused gives its one error line and nothing before it
    logger.info("Read %s (%d Gaussians)", path, gaussians.num_gaussians)
    return gaussians


def load_given_model(dataset: ModelParams, ply_path: str | os.PathLike
                     ) -> tuple[Optional[Scene], GaussianModel]:
    """A trained model file to compress instead of training (``--given_ply_path``): any file
    :func:`load_model_file` reads (a PLY, another tool's format, or one of our bitstreams,
    decoded), and the scene of ``dataset.source_path`` when it is set (cameras for the
    importance, finetune and evaluation). Nothing is written (:func:`write_model_files`).
    The model goes to ``dataset.data_device``.

    Returns:
        ``(scene or None, gaussians)``.

    Raises:
        FileNotFoundError, ValueError: a missing or invalid model file or scene.
    """
    gaussians = load_model_file(ply_path, dataset.sh_degree, torch.device(dataset.data_device))
    return (Scene(dataset, None) if dataset.source_path else None), gaussians


def write_model_files(model_path: str | os.PathLike, scene: Optional[Scene], cfg: Any) -> None:
    """The model folder's files of a run on a given model: cfg_args (``cfg``), and with a
    scene its cameras.json and input.ply (``Scene.write_model_files``)."""
    if scene is None:
        write_cfg_args(model_path, cfg)
    else:
        scene.write_model_files(cfg)


# ------------------------------------------------------------------------ finding bitstreams

def latest_bitstream(model_path: str | os.PathLike, layout: Optional[str] = None,
                     iteration: int = -1) -> tuple[Path, str, int]:
    """The saved bitstream of a model folder: ``(path, layout, k)``.

    Args:
        layout: None picks the first layout (in ``LAYOUTS`` order) with a compression folder.
        iteration: -1 = the latest saved iteration of that layout.

    Raises:
        FileNotFoundError: no compression folder / iteration / bitstream.
        ValueError: an unknown layout.
    """
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"--layout must be one of {tuple(LAYOUTS)}, got {layout!r}")
    candidates = [layout] if layout else [name for name in LAYOUTS
                                          if layout_dir(model_path, name).is_dir()]
    if not candidates:
        raise FileNotFoundError(f"{compression_dir(model_path)}: no compressed model (run "
                                f"train.py without --skip_compress)")
    layout = candidates[0]
    k = searchForMaxIteration(layout_dir(model_path, layout)) if iteration == -1 \
        else int(iteration)
    path = iteration_dir(model_path, layout, k) / LAYOUTS[layout].codec.container.file_name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no saved bitstream for layout {layout} iteration {k}")
    return path, layout, k


def method_for_bitstream(path: str | os.PathLike, model_path: Optional[str | os.PathLike]
                         ) -> tuple[str, str]:
    """Render folder parts ``(method, suffix)`` for a bitstream: ``("compressed_<layout>",
    "<k>")`` inside ``<model>/compression/<layout>/iteration_<k>``, else ``("compressed",
    "given")``."""
    saved = None if model_path is None else parse_iteration_dir(Path(path).parent, model_path)
    if saved is not None and saved[0] in LAYOUTS:
        return compressed_method(saved[0]), str(saved[1])
    return COMPRESSED_METHOD, GIVEN_SUFFIX


class LoadedModel(NamedTuple):
    """A model render.py draws, and where it came from."""
    gaussians: GaussianModel
    method: str  #: render folder parts ``<set>/<method>_<suffix>/``
    suffix: str
    path: Path  #: the file or folder it was decoded from (a ``.gsc`` for the viewer page)


def load_for_rendering(*, given_path: Optional[str], dec_npz: bool, layout: Optional[str],
                       iteration: int, model_path: Optional[str], sh_degree: int,
                       device: torch.device) -> LoadedModel:
    """The model render.py draws with ``--given_ply_path`` or ``--dec_npz``, decoded before any
    output is written.

    ``given_path`` may be a model file (``ours_given``: a PLY, or another tool's format that
    :func:`scene.interop.standard_ply` converts), a bins folder, a bins.zip or a compact
    ``bitstream.gsc`` (told apart by content; ``compressed_<layout>_<k>`` inside the model's
    compression folder, else ``compressed_given``). ``dec_npz``: the model's bitstream of
    ``layout`` at ``iteration`` (-1 = latest).

    Raises:
        FileNotFoundError, ValueError: a missing input, or a corrupt PLY / bitstream.
    """
    if given_path is not None:
        path = Path(given_path)
        method, suffix = (method_for_bitstream(path, model_path)
                          if detect_format(path) in BITSTREAM_KINDS
                          else (UNCOMPRESSED_METHOD, GIVEN_SUFFIX))
    else:
        if not dec_npz or not model_path:
            raise ValueError("--dec_npz needs -m/--model_path")
        path, layout, k = latest_bitstream(model_path, layout, iteration)
        method, suffix = compressed_method(layout), str(k)
    return LoadedModel(load_model_file(path, sh_degree, device), method, suffix, path)
