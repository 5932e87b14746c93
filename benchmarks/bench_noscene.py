"""Compression without a scene: compact settings against SPZ and SOG on one bare PLY, one JSON.

    python benchmarks/bench_noscene.py <model.ply> -o <work folder> [--configs "" "--percent 0"
        "--quality 9" ...] [--peers spz sog] [--views 8] [--size 256] [--seed 0] [--quiet]

Fidelity is bench_peers.py's measure without a scene: PSNR (and SSIM) of the decoded model's
renders against the uncompressed model's renders from the camera ring (``scene.camera_ring``,
oriented by the model), PNG against PNG as metrics.py scores them. Each compact config is one
``train.py --given_ply_path <PLY> --layout compact <config>`` run without a scene (the empty
config: the no-scene default) into ``<work>/compact_<i>``; each peer goes through PlayCanvas's
splat-transform (``training.peers.run_peer``) into ``<work>/peers``. The uncompressed renders
are kept in ``<work>/ring_reference`` and reused when the work folder is given again (the CPU
rasterizer takes about a minute per 256-px view of a 500k-Gaussian model), so configs can be
added run by run; rows already measured are measured again.

Rates: ``bits_per_input_gaussian`` is 8 · bytes of the file the decoder reads over the PLY's
Gaussians. Prints one JSON object: the model, the ring, and one row per codec under ``codecs``.
"""
from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import torch  # noqa: E402

from arguments import PipelineParams  # noqa: E402
from bench_peers import run_script  # noqa: E402
from gaussian_renderer import render  # noqa: E402
from scene.camera_ring import ring_cameras  # noqa: E402
from scene.cameras import Camera  # noqa: E402
from scene.gaussian_model import GaussianModel  # noqa: E402
from scene.ply import read_ply  # noqa: E402
from sweep import train_flags  # noqa: E402
from training.compress import latest_bitstream, load_model_file  # noqa: E402
from training.peers import PEER_CODECS, run_peer  # noqa: E402
from utils.cli import run_main  # noqa: E402
from utils.image_utils import load_image  # noqa: E402
from utils.metrics_utils import evaluate_method  # noqa: E402
from utils.render_utils import render_views  # noqa: E402
from utils.sh_utils import sh_degree_of  # noqa: E402
from utils.output_paths import REPORT_JSON, iteration_dir  # noqa: E402
from utils.result_files import read_report  # noqa: E402

logger = logging.getLogger("bench_noscene")
REFERENCE = "ring_reference"


def reference_ring(model: GaussianModel, work: Path, views: int, size: int, quiet: bool
                   ) -> list[Camera]:
    """The ring around ``model`` holding its renders as ground truth (rendered once into
    ``<work>/ring_reference``, read back from there afterwards)."""
    folder = work / REFERENCE / "renders"
    names = [folder / f"{index:05d}.png" for index in range(views)]
    ring = ring_cameras(model.get_xyz, count=views, size=size)
    if not all(name.is_file() for name in names):
        pipe, background = PipelineParams(), torch.zeros(3)
        render_views(ring, lambda view: render(view, model, pipe, background)["render"],
                     work / REFERENCE, quiet=quiet)
    images = [load_image(name)[:3] for name in names]
    return ring_cameras(model.get_xyz, count=views, size=size, images=images)


def ring_scores(model: GaussianModel, ring: Sequence[Camera], folder: Path, quiet: bool
                ) -> dict[str, float]:
    """Mean PSNR / SSIM of ``model`` rendered from ``ring`` against the ring's images."""
    pipe, background = PipelineParams(), torch.zeros(3)
    render_views(ring, lambda view: render(view, model, pipe, background)["render"], folder,
                 quiet=quiet)
    per_view = evaluate_method(folder, progress=not quiet)
    return {metric.lower(): sum(values.values()) / len(values)
            for metric, values in per_view.items()}


def compact_row(ply: Path, work: Path, index: int, config: str, sh_degree: int,
                ring: Sequence[Camera], seed: int, quiet: bool) -> dict[str, Any]:
    """One compact config: train.py without a scene, decode, render the ring, score."""
    flags = shlex.split(config)
    train_flags(flags)  # an unknown flag fails here, before the run
    folder = work / f"compact_{index}"
    seconds = run_script("train.py", ["-m", folder, "--given_ply_path", ply, "--layout",
                                      "compact", "--sh_degree", sh_degree, "--seed", seed,
                                      "--quiet", *flags], work)
    path, _, k = latest_bitstream(folder, "compact")
    report = read_report(iteration_dir(folder, "compact", k) / REPORT_JSON)
    decoded = load_model_file(path, sh_degree, "cpu")
    settings = report["settings"]
    return {"config": config, "bytes": report["size_bytes"],
            "bits_per_input_gaussian": report["bits_per_input_gaussian"],
            **ring_scores(decoded, ring, folder / "ring", quiet),
            "coded_gaussians": report["num_gaussians"], "quality": settings["quality"],
            "percent": settings["percent"], "depth": report["depth"],
            "codebook_size": report["codebook_size"], "command_seconds": seconds}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a 3DGS PLY (e.g. from benchmarks/noscene_model.py)")
    parser.add_argument("-o", "--output", required=True,
                        help="work folder (created; its ring renders are reused)")
    parser.add_argument("--configs", nargs="*", default=[""],
                        help="compact configs, each a string of train.py flags ('' = the "
                             "no-scene default)")
    parser.add_argument("--peers", nargs="*", default=list(PEER_CODECS),
                        choices=tuple(PEER_CODECS), help="peer codecs to run (default: all)")
    parser.add_argument("--views", type=int, default=8, help="cameras of the ring (8)")
    parser.add_argument("--size", type=int, default=256, help="ring image size (256 px)")
    parser.add_argument("--seed", type=int, default=0, help="train.py's --seed (0)")
    parser.add_argument("--quiet", action="store_true", help="no progress or log lines")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(message)s")
    ply, work = Path(args.model).resolve(), Path(args.output)
    if not ply.is_file():
        raise FileNotFoundError(f"{ply}: no such PLY")
    work.mkdir(parents=True, exist_ok=True)
    sh_degree = sh_degree_of(read_ply(ply)["f_rest"].shape[1] + 1)
    model = GaussianModel(sh_degree)
    model.load_ply(ply)
    ring = reference_ring(model, work, args.views, args.size, args.quiet)
    rows: dict[str, dict[str, Any]] = {}
    for codec in args.peers:
        peer = run_peer(work / "peers", codec, ply, ring, sh_degree=sh_degree,
                        pipe=PipelineParams(), background=torch.zeros(3), quiet=args.quiet)
        rows[codec] = {key: peer[key] for key in ("size_bytes", "bits_per_input_gaussian",
                                                  "psnr", "ssim", "encode_seconds", "tool")}
    for index, config in enumerate(args.configs):
        rows[f"compact {config}".strip()] = compact_row(ply, work, index, config, sh_degree,
                                                        ring, args.seed, args.quiet)
        logger.info("%s", json.dumps(rows[f"compact {config}".strip()]))
    print(json.dumps({"model": {"ply": str(ply), "gaussians": model.num_gaussians,
                                "sh_degree": sh_degree, "ply_bytes": ply.stat().st_size},
                      "fidelity": {"measure": "camera ring against the uncompressed model's "
                                              "renders", "views": args.views, "size": args.size},
                      "seed": args.seed, "codecs": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "bench_noscene.py", sys.argv[1:]))
