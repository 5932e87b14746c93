"""Rate–distortion sweep over bit depths on a model's saved (finetuned) codec state, and the
points of other tools' codecs (SPZ, SOG) on the same model.

    python scripts/rd_sweep.py -m <model> [--layouts seed official] [--num_bits 6 8 10]
                               [--peers [spz sog]] [--quiet]

For each layout (default: every layout the model folder has a saved bitstream of), the latest
``<model>/compression/<layout>/iteration_<k>/`` bitstream is decoded; its frozen geometry
(voxels, RAHT plan, VQ codebook) is kept and the attributes are re-encoded at each bit depth
with fresh quantizers whose ranges are calibrated for that bit count
(``pipeline.state_from_bitstream``; no retraining per point). Each point is written to
``<model>/compression/sweep/<layout>_<k>_b<bits>/`` (bitstream + report.json), its decoded
model is rendered on the test views and measured (PSNR, SSIM of the float renders), and one
row ``<layout>_<k>_b<bits>`` is appended to ``<model>/compression/results.csv``.

The source is the saved bitstream, so a bit depth above the saved one cannot recover detail
that the saved quantization already removed; sweeping at or below it is exact.

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
from typing import Sequence

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from arguments import ModelParams, PipelineParams, extract, read_cfg_args  # noqa: E402
from compression.bitstream import read_bitstream  # noqa: E402
from compression.layouts import LAYOUTS  # noqa: E402
from compression.pipeline import decode, save, state_from_bitstream  # noqa: E402
from gaussian_renderer import render  # noqa: E402
from reporting.codec_results import ResultsRow, append_results, write_report  # noqa: E402
from scene import Scene  # noqa: E402
from scene.gaussian_model import GaussianModel  # noqa: E402
from training.peers import PEER_CODECS, run_peer  # noqa: E402
from utils.cli import run_main  # noqa: E402
from utils.eval_utils import evaluate_views  # noqa: E402
from utils.loss_utils import ssim  # noqa: E402
from utils.output_paths import (CFG_ARGS, iteration_dir, layout_dir,  # noqa: E402
                                point_cloud_path, sweep_dir, sweep_submethod)
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


def _test_views(model_path: Path) -> tuple[ModelParams, Path, list, torch.Tensor]:
    """The model's settings, trained PLY, test cameras (on the default device) and background.

    Raises:
        FileNotFoundError, ValueError: no cfg_args, trained PLY or test views.
    """
    dataset = extract(ModelParams, read_cfg_args(model_path / CFG_ARGS))
    dataset.model_path = str(model_path)
    device = default_device()
    scene = Scene(dataset, None, load_iteration=-1, shuffle=False)
    cameras = [cam.to(device) for cam in scene.getTestCameras()]
    if not cameras:
        raise ValueError(f"{model_path}: no test views (train with --eval)")
    background = torch.full((3,), float(dataset.white_background), device=device)
    return dataset, point_cloud_path(model_path, scene.loaded_iter), cameras, background


def sweep(model_path: Path, layouts: Sequence[str], bit_depths: Sequence[int],
          quiet: bool = False) -> list[ResultsRow]:
    """Run the sweep (module docstring) and return the rows appended to results.csv.

    Raises:
        FileNotFoundError: the model folder, its cfg_args, or a layout's saved bitstream is
            missing.
    """
    _, ply, cameras, background = _test_views(model_path)
    device = background.device
    ply_size_bytes = ply.stat().st_size
    sources = {}
    for layout in layouts:
        k = searchForMaxIteration(layout_dir(model_path, layout))
        source = iteration_dir(model_path, layout, k) / LAYOUTS[layout].container.file_name
        bitstream = read_bitstream(source)
        sources[layout] = (k, source, bitstream, decode(bitstream, device))
    rows: list[ResultsRow] = []
    points = [(layout, bits) for layout in layouts for bits in bit_depths]
    for layout, bits in tqdm(points, desc="RD sweep", disable=quiet):
        k, source, bitstream, params = sources[layout]
        name = sweep_submethod(layout, k, bits)
        state = state_from_bitstream(bitstream, params, bits).eval()
        out_dir = sweep_dir(model_path, name)
        info = save(state, params, out_dir)
        decoded = GaussianModel.from_params(decode(read_bitstream(info["path"]), device))
        psnr_db, ssim_val = measure(decoded, cameras, background)
        write_report(out_dir, layout=layout, iteration=k, save_info=info, psnr=psnr_db,
                     ssim=ssim_val, lpips=None, ply_size_bytes=ply_size_bytes,
                     settings={"source": str(source.relative_to(model_path)),
                               "num_bits": bits, "n_block": bitstream.n_block,
                               "depth": bitstream.depth, "quantizer": bitstream.quantizer})
        rows.append(ResultsRow(name, psnr_db, ssim_val, None, info["size_bytes"],
                               info["num_gaussians"]))
        logger.info("%s: %.2f dB, %d bytes", name, psnr_db, info["size_bytes"])
    append_results(model_path, rows)
    return rows


def peers(model_path: Path, codecs: Sequence[str], quiet: bool = False) -> list[dict]:
    """Run each of ``codecs`` on the model's trained PLY (module docstring); their peer.json.

    Raises:
        FileNotFoundError, ValueError: see :func:`_test_views`; a failed conversion.
        SplatTransformUnavailable: no Node.js.
    """
    dataset, ply, cameras, background = _test_views(model_path)
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
                        help="bit depths to sweep (default: 6 8 10)")
    parser.add_argument("--peers", nargs="*", default=None, choices=tuple(PEER_CODECS),
                        help="also run other tools' codecs on the trained PLY (default when "
                             f"given alone: {' '.join(PEER_CODECS)}; needs Node.js)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or log lines")
    add_threads_argument(parser)
    args = parser.parse_args(argv)
    bad = [b for b in args.num_bits if not 1 <= b <= 16]
    if bad:
        parser.error(f"--num_bits: expected values in 1..16, got {bad}")
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
        sweep(model_path, layouts, args.num_bits, quiet=args.quiet)
    if codecs:
        peers(model_path, codecs, quiet=args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "rd_sweep.py", sys.argv[1:]))
