"""Rate–distortion sweep over bit depths on a model's saved (finetuned) codec state.

    python scripts/rd_sweep.py -m <model> [--layouts seed official] [--num_bits 6 8 10] [--quiet]

For each layout, the latest ``<model>/compression/<layout>/iteration_<k>/bins.zip`` is decoded;
its frozen geometry (voxels, RAHT plan, VQ codebook) is kept and the attributes are
re-encoded at each bit depth with fresh quantizers whose ranges are recalibrated for that bit
count (no retraining per point). Each point is written to
``<model>/compression/sweep/<layout>_<k>_b<bits>/`` (bins.zip + report.json), its decoded
model is rendered on the test views and measured (PSNR, SSIM of the float renders), and one
row ``<layout>_<k>_b<bits>`` is appended to ``<model>/compression/results.csv``.

The source is the saved bitstream, so a bit depth above the saved one cannot recover detail
that the saved quantization already removed; sweeping at or below it is exact.
"""
from __future__ import annotations

import argparse
import csv
import io
import logging
import sys
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from arguments import ModelParams, PipelineParams, extract, read_cfg_args  # noqa: E402
from compression.bitstream import Bitstream, num_raht_columns, read_bitstream  # noqa: E402
from compression.octree import keys_to_codes  # noqa: E402
from compression.pipeline import (LAYOUTS, RESULTS_HEADER, CodecState, decode,  # noqa: E402
                                  iteration_dir, write_report)
from compression.quantization import BlockQuantizer  # noqa: E402
from compression.raht import build_raht  # noqa: E402
from gaussian_renderer import render  # noqa: E402
from scene import Scene  # noqa: E402
from scene.gaussian_model import GaussianModel  # noqa: E402
from utils.loss_utils import ssim  # noqa: E402
from utils.eval_utils import evaluate_views  # noqa: E402
from utils.render_utils import default_device  # noqa: E402
from utils.system_utils import atomic_path, searchForMaxIteration  # noqa: E402
from utils.threads import add_threads_argument, set_threads  # noqa: E402

logger = logging.getLogger("rd_sweep")


def requantized_state(bitstream: Bitstream, gaussians: GaussianModel, bits: int) -> CodecState:
    """A codec state over ``bitstream``'s frozen geometry with fresh ``bits``-bit quantizers.

    The quantizer ranges (or LSQ steps) are calibrated from ``gaussians``' own coefficients by
    one training-mode :meth:`CodecState.simulate`; the state is returned in evaluation mode.

    Args:
        bitstream: the saved stream whose keys, bbox, depth, n_block, quantizer kind and (official
            layout) codebook and VQ indices are reused.
        gaussians: the decoded model, [N] Gaussians in ascending voxel-key order.
        bits: b for every quantizer.
    """
    device = gaussians.device
    keys = torch.from_numpy(bitstream.keys).to(device)
    plan = build_raht(keys_to_codes(keys, bitstream.depth), bitstream.depth).to(device)
    columns = num_raht_columns(bitstream.layout, bitstream.sh_degree)
    extras = {}
    if bitstream.layout == "official":
        extras = {"scale_quantizer": BlockQuantizer(3, bitstream.n_block, bits,
                                                    bitstream.quantizer).to(device),
                  "codebook": torch.from_numpy(bitstream.codebook).to(device),
                  "vq_indices": torch.from_numpy(bitstream.vq_indices.astype("int64")).to(device)}
    state = CodecState(bitstream.layout, bitstream.sh_degree, bitstream.depth, keys,
                       torch.from_numpy(bitstream.bbox).to(device), plan,
                       BlockQuantizer(columns, bitstream.n_block, bits, bitstream.quantizer
                                      ).to(device), **extras)
    state.train()
    with torch.no_grad():
        state.simulate(gaussians)
    return state.eval()


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


def append_rows(model_path: Path, rows: list[list[object]]) -> Path:
    """Append rows to ``<model>/compression/results.csv`` (header when new; atomic rewrite)."""
    path = model_path / "compression" / "results.csv"
    existing = path.read_text() if path.is_file() else ""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if not existing:
        writer.writerow(RESULTS_HEADER)
    writer.writerows(rows)
    with atomic_path(path) as tmp:
        tmp.write_text(existing + buffer.getvalue())
    return path


def sweep(model_path: Path, layouts: Sequence[str], bit_depths: Sequence[int],
          quiet: bool = False) -> list[list[object]]:
    """Run the sweep (module docstring) and return the rows appended to results.csv.

    Raises:
        FileNotFoundError: the model folder, its cfg_args, or a layout's saved bitstream is
            missing.
    """
    dataset = extract(ModelParams, read_cfg_args(model_path / "cfg_args"))
    dataset.model_path = str(model_path)
    device = default_device()
    scene = Scene(dataset, GaussianModel(dataset.sh_degree), load_iteration=-1, shuffle=False)
    cameras = [cam.to(device) for cam in scene.getTestCameras()]
    if not cameras:
        raise ValueError(f"{model_path}: no test views (train with --eval)")
    background = torch.full((3,), float(dataset.white_background), device=device)
    ply = model_path / "point_cloud" / f"iteration_{scene.loaded_iter}" / "point_cloud.ply"
    sources = {}
    for layout in layouts:
        k = searchForMaxIteration(model_path / "compression" / layout)
        bitstream = read_bitstream(iteration_dir(model_path, layout, k) / "bins.zip")
        sources[layout] = (k, bitstream, decode(bitstream, device))
    rows: list[list[object]] = []
    points = [(layout, bits) for layout in layouts for bits in bit_depths]
    for layout, bits in tqdm(points, desc="RD sweep", disable=quiet):
        k, bitstream, gaussians = sources[layout]
        name = f"{layout}_{k}_b{bits}"
        state = requantized_state(bitstream, gaussians, bits)
        out_dir = model_path / "compression" / "sweep" / name
        info = state.save(gaussians, out_dir)
        psnr_db, ssim_val = measure(state.decode(read_bitstream(info["path"])), cameras,
                                    background)
        write_report(out_dir, layout=layout, iteration=k, save_info=info, psnr=psnr_db,
                     ssim=ssim_val, lpips=None, ply_size_bytes=ply.stat().st_size,
                     settings={"source": f"compression/{layout}/iteration_{k}/bins.zip",
                               "num_bits": bits, "n_block": bitstream.n_block,
                               "depth": bitstream.depth, "quantizer": bitstream.quantizer})
        rows.append([name, f"{psnr_db:.6f}", f"{ssim_val:.6f}", "", info["size_bytes"],
                     info["num_gaussians"]])
        logger.info("%s: %.2f dB, %d bytes", name, psnr_db, info["size_bytes"])
    append_rows(model_path, rows)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model_path", required=True, help="model folder")
    parser.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=LAYOUTS)
    parser.add_argument("--num_bits", nargs="+", type=int, default=[6, 8, 10],
                        help="bit depths to sweep (default: 6 8 10)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or log lines")
    add_threads_argument(parser)
    args = parser.parse_args(argv)
    bad = [b for b in args.num_bits if not 1 <= b <= 16]
    if bad:
        parser.error(f"--num_bits: expected values in 1..16, got {bad}")
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(message)s")
    model_path = Path(args.model_path)
    try:
        if not model_path.is_dir():
            raise FileNotFoundError(f"{model_path}: model folder not found")
        set_threads(args.threads)
        sweep(model_path, args.layouts, args.num_bits, quiet=args.quiet)
    except (FileNotFoundError, ValueError) as exc:
        print(f"rd_sweep: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
