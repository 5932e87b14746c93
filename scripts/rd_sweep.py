"""Rate–distortion sweep of a model's codec (bit depths for the block layouts, ``--quality`` for
layouts with a quality knob: compact), and the points of other tools' codecs (SPZ, SOG) on the
same model.

    python scripts/rd_sweep.py -m <model> [--layouts seed official compact] [--num_bits 6 8 10]
                               [--qualities 1 3 5 7 9] [--peers [spz sog]] [--quiet]

Layouts default to every layout the model folder has a saved bitstream of.

Bit-depth sweep (layouts with block quantizers): the latest
``<model>/compression/<layout>/iteration_<k>/`` bitstream is decoded; its frozen geometry
(voxels, RAHT plan, VQ codebook) is kept and the attributes are re-encoded at each bit depth
with fresh quantizers whose ranges are calibrated for that bit count
(``pipeline.state_from_bitstream``; no retraining per point), written to
``<model>/compression/sweep/<layout>_<k>_b<bits>/``. The source is the saved bitstream, so a
bit depth above the saved one cannot recover detail that the saved quantization already
removed; sweeping at or below it is exact.

Quality sweep (layouts with ``--quality``): every setting the knob stands for (pruning, depth,
steps, codebook) changes the geometry, so each level compresses the trained model
(``point_cloud/iteration_<N>/point_cloud.ply``, importance from the training views) anew,
without finetune, into ``<model>/compression/sweep/<layout>_q<quality>/``.

Each point's decoded model is rendered on the test views and measured (PSNR, SSIM of the float
renders), its report.json written, and one row appended to ``<model>/compression/results.csv``.

``--peers`` (default codecs: all of ``training.peers.PEER_CODECS``) writes the trained PLY with
PlayCanvas's splat-transform as each codec's file into ``<model>/compression/peers/<codec>/``,
reads it back with the same tool, renders the test views into ``<model>/test/peer_<codec>/``
and writes ``peer.json`` (size, bits per input Gaussian, PSNR / SSIM of the PNGs, the tool's
encode and decode seconds); the HTML report plots them beside the layouts' curves. SOG
clusters the SH on the CPU: minutes for a large SH-degree-3 model.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from arguments import ModelParams, PipelineParams, extract, read_cfg_args  # noqa: E402
from compression.bitstream import decode_file, read_bitstream, save  # noqa: E402
from compression.layouts import LAYOUTS  # noqa: E402
from compression.settings import (QUALITY_RANGE, CompressionParams, codec_settings,  # noqa: E402
                                  resolve_settings)
from gaussian_renderer import render  # noqa: E402
from reporting.codec_results import ResultsRow, append_results, write_report  # noqa: E402
from scene import Scene  # noqa: E402
from scene.gaussian_model import GaussianModel  # noqa: E402
from training.peers import PEER_CODECS, run_peer  # noqa: E402
from utils.cli import run_main  # noqa: E402
from utils.eval_utils import evaluate_views  # noqa: E402
from utils.loss_utils import ssim  # noqa: E402
from utils.output_paths import (CFG_ARGS, iteration_dir, layout_dir,  # noqa: E402
                                point_cloud_path, quality_submethod, sweep_dir, sweep_submethod)
from utils.render_utils import default_device  # noqa: E402
from utils.system_utils import searchForMaxIteration  # noqa: E402
from utils.threads import add_threads_argument, set_threads  # noqa: E402

logger = logging.getLogger("rd_sweep")


@torch.no_grad()
def measure(gaussians: GaussianModel, cameras: Sequence, background: torch.Tensor
            ) -> tuple[float, float]:
    """Mean PSNR and SSIM of the float renders (clamped to [0, 1]) over ``cameras``."""
    pipe = PipelineParams()
    ssims: list[float] = []
    metrics = evaluate_views(
        lambda cam: render(cam, gaussians, pipe, background)["render"], cameras,
        lambda _index, _cam, image, gt: ssims.append(float(ssim(image, gt))))
    return metrics["psnr"], sum(ssims) / len(ssims)


def _open_model(model_path: Path, load_trained: bool = False
                ) -> tuple[ModelParams, Scene, list, torch.Tensor]:
    """The model's settings, scene (with the trained PLY loaded as ``scene.gaussians`` when
    ``load_trained``), test cameras (on the default device) and background.

    Raises:
        FileNotFoundError, ValueError: no cfg_args, trained PLY or test views.
    """
    dataset = extract(ModelParams, read_cfg_args(model_path / CFG_ARGS))
    dataset.model_path = str(model_path)
    device = default_device()
    trained = GaussianModel(dataset.sh_degree) if load_trained else None
    scene = Scene(dataset, trained, load_iteration=-1, shuffle=False)
    cameras = [cam.to(device) for cam in scene.getTestCameras()]
    if not cameras:
        raise ValueError(f"{model_path}: no test views (train with --eval)")
    background = torch.full((3,), float(dataset.white_background), device=device)
    return dataset, scene, cameras, background


def sweep(model_path: Path, layouts: Sequence[str], bit_depths: Sequence[int],
          qualities: Sequence[int] = (), quiet: bool = False) -> list[ResultsRow]:
    """Run the sweep (module docstring) and return the rows appended to results.csv.

    Raises:
        FileNotFoundError: the model folder, its cfg_args, or a bit-depth layout's saved
            bitstream is missing.
    """
    quality_layouts = [layout for layout in layouts if LAYOUTS[layout].quality_levels]
    _, scene, cameras, background = _open_model(model_path, load_trained=bool(quality_layouts))
    device = background.device
    ply_size_bytes = point_cloud_path(model_path, scene.loaded_iter).stat().st_size
    points: list[tuple[str, str, int]] = []  # (layout, "bits" | "quality", value)
    sources = {}
    for layout in layouts:
        if layout in quality_layouts:
            points += [(layout, "quality", quality) for quality in qualities]
            continue
        k = searchForMaxIteration(layout_dir(model_path, layout))
        source = iteration_dir(model_path, layout, k) / LAYOUTS[layout].codec.container.file_name
        bitstream = read_bitstream(source)
        sources[layout] = (k, source, bitstream, bitstream.layout.codec.decode(bitstream, device))
        points += [(layout, "bits", bits) for bits in bit_depths]
    if quality_layouts:
        trained = scene.gaussians.to(device)
        train_views = [cam.to(device) for cam in scene.getTrainCameras()]
    rows: list[ResultsRow] = []
    for layout, knob, value in tqdm(points, desc="RD sweep", disable=quiet):
        if knob == "quality":
            name, k = quality_submethod(layout, value), scene.loaded_iter
            settings = resolve_settings(CompressionParams(layout=layout, quality=value))
            state, params = LAYOUTS[layout].codec.prepare(
                {key: p.detach() for key, p in trained.params.items()}, train_views,
                codec_settings(settings))
            report_settings = {"source": str(point_cloud_path(model_path, k)
                                             .relative_to(model_path)), **vars(settings)}
        else:
            k, source, bitstream, params = sources[layout]
            name = sweep_submethod(layout, k, value)
            state = bitstream.layout.codec.state_from_bitstream(bitstream, params, value)
            report_settings = {"source": str(source.relative_to(model_path)), "num_bits": value,
                               "n_block": bitstream.n_block, "depth": bitstream.depth,
                               "quantizer": bitstream.quantizer}
        out_dir = sweep_dir(model_path, name)
        info = save(state.eval(), params, out_dir)
        decoded = GaussianModel.from_params(decode_file(info["path"], device))
        psnr_db, ssim_val = measure(decoded, cameras, background)
        write_report(out_dir, layout=layout, iteration=k, save_info=info, psnr=psnr_db,
                     ssim=ssim_val, lpips=None, ply_size_bytes=ply_size_bytes,
                     settings=report_settings)
        rows.append(ResultsRow(name, psnr_db, ssim_val, None, info["size_bytes"],
                               info["num_gaussians"]))
        logger.info("%s: %.2f dB, %d bytes (%.1f bits per input Gaussian)", name, psnr_db,
                    info["size_bytes"], info["bits_per_input_gaussian"])
    append_results(model_path, rows)
    return rows


def peers(model_path: Path, codecs: Sequence[str], quiet: bool = False) -> list[dict]:
    """Run each of ``codecs`` on the model's trained PLY (module docstring); their peer.json.

    Raises:
        FileNotFoundError, ValueError: see :func:`_open_model`; a failed conversion.
        SplatTransformUnavailable: no Node.js.
    """
    dataset, scene, cameras, background = _open_model(model_path)
    ply = point_cloud_path(model_path, scene.loaded_iter)
    return [run_peer(model_path, codec, ply, cameras, sh_degree=dataset.sh_degree,
                     pipe=PipelineParams(), background=background, quiet=quiet)
            for codec in codecs]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model_path", required=True, help="model folder")
    parser.add_argument("--layouts", nargs="*", default=None, choices=tuple(LAYOUTS),
                        help="layouts to sweep (default: every layout with a saved bitstream; "
                             "none with an empty list)")
    parser.add_argument("--num_bits", nargs="+", type=int, default=[6, 8, 10],
                        help="bit depths to sweep, block layouts (default: 6 8 10)")
    parser.add_argument("--qualities", nargs="+", type=int, default=[1, 3, 5, 7, 9],
                        help="--quality levels to sweep, layouts with the knob "
                             "(default: 1 3 5 7 9)")
    parser.add_argument("--peers", nargs="*", default=None, choices=tuple(PEER_CODECS),
                        help="also run other tools' codecs on the trained PLY (default when "
                             f"given alone: {' '.join(PEER_CODECS)}; needs Node.js)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or log lines")
    add_threads_argument(parser)
    args = parser.parse_args(argv)
    bad = [b for b in args.num_bits if not 1 <= b <= 16]
    if bad:
        parser.error(f"--num_bits: expected values in 1..16, got {bad}")
    low, high = QUALITY_RANGE
    bad = [q for q in args.qualities if not low <= q <= high]
    if bad:
        parser.error(f"--qualities: expected values in {low}..{high}, got {bad}")
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(message)s")
    model_path = Path(args.model_path)
    if not model_path.is_dir():
        raise FileNotFoundError(f"{model_path}: model folder not found")
    set_threads(args.threads)
    layouts = args.layouts if args.layouts is not None else \
        [name for name in LAYOUTS if layout_dir(model_path, name).is_dir()]
    codecs = [] if args.peers is None else (args.peers or list(PEER_CODECS))
    if not layouts and not codecs:
        raise FileNotFoundError(f"{model_path}: no saved bitstream to sweep (run train.py "
                                "without --skip_compress) and no --peers")
    if layouts:
        sweep(model_path, layouts, args.num_bits, args.qualities, quiet=args.quiet)
    if codecs:
        peers(model_path, codecs, quiet=args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "rd_sweep.py", sys.argv[1:]))
