"""Compact-layout settings on one trained model: bits (in all and per part of the file:
``CompactBitstream.part_bytes``), the f_rest energy that sized the codebook, and the PSNR change
on the test views before and after the finetune, one JSON line per setting.

    python benchmarks/bench_compact_settings.py <model folder> [--finetune_iterations 500]
        [--views V] [--codebook_noise_share S] '{"quality": 5}'
        '{"quality": 5, "codebook_size": 256}' ...

Each setting is a JSON object of ``CompressionParams`` fields (the compact layout's flags). The
codec runs as ``train.py --given_ply_path`` runs it (the scene's training cameras, seed 0), in
one process that loads the scene once; PSNR is the codec's own evaluation (report.json's: the
simulated model, float renders) against the uncompressed model's on the same views. Used to
derive the compact default (README, "Codebook size against f_rest energy").
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

import compression.compact_codec as compact_codec  # noqa: E402
from arguments import ModelParams, PipelineParams, extract, read_cfg_args  # noqa: E402
from compression.bitstream import save  # noqa: E402
from compression.settings import CompressionParams  # noqa: E402
from gaussian_renderer import render  # noqa: E402
from scene import Scene  # noqa: E402
from scene.gaussian_model import GaussianModel  # noqa: E402
from training.compress import resolve_compression  # noqa: E402
from training.finetune import evaluate_codec, finetune, leaf_parameters  # noqa: E402
from utils.cli import run_main  # noqa: E402
from utils.eval_utils import evaluate_views  # noqa: E402
from utils.output_paths import point_cloud_path  # noqa: E402
from utils.system_utils import searchForMaxIteration  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    """Parse the flags, run each setting, print its JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="trained model folder (cfg_args names its scene)")
    parser.add_argument("settings", nargs="+", help="JSON objects of CompressionParams fields")
    parser.add_argument("--finetune_iterations", type=int, default=500)
    parser.add_argument("--views", type=int, default=0, help="every k-th test view so that "
                        "about V remain (0: all)")
    parser.add_argument("--codebook_noise_share", type=float,
                        default=compact_codec.CODEBOOK_NOISE_SHARE,
                        help="the finetuned levels' codebook grid noise over the k-means error "
                             "(compact_codec.CODEBOOK_NOISE_SHARE; default: the code's)")
    args = parser.parse_args(argv)
    compact_codec.CODEBOOK_NOISE_SHARE = args.codebook_noise_share
    model = Path(args.model)
    dataset = extract(ModelParams, {**read_cfg_args(model / "cfg_args"), "model_path": str(model)})
    scene = Scene(dataset, None, shuffle=False)
    gaussians = GaussianModel(dataset.sh_degree)
    gaussians.load_ply(point_cloud_path(model, searchForMaxIteration(str(model / "point_cloud"))))
    views = scene.getTestCameras()
    if args.views:
        views = views[::max(1, len(views) // args.views)]
    pipe = PipelineParams()
    background = torch.full((3,), float(dataset.white_background))
    reference = evaluate_views(lambda cam: render(cam, gaussians, pipe, background)["render"],
                               views)["psnr"]
    print(json.dumps({"model": str(model), "gaussians": gaussians.num_gaussians,
                      "views": len(views), "psnr": reference}), flush=True)
    energies: list[float] = []
    measure = compact_codec.f_rest_energy

    def recorded(columns: torch.Tensor, weights: torch.Tensor) -> float:
        energies.append(measure(columns, weights))
        return energies[-1]

    compact_codec.f_rest_energy = recorded  # the codec looks it up at each prepare
    for text in args.settings:
        start, energies[:] = time.perf_counter(), []
        settings = resolve_compression(CompressionParams(layout="compact", **json.loads(text)),
                                       scene=True)
        codec = settings.codec.layout.codec
        state, prepared = codec.prepare(gaussians.params, scene.getTrainCameras(),
                                        settings.codec, torch.Generator().manual_seed(0))
        params = leaf_parameters(prepared)
        change: dict[int, float] = {}

        def on_test(step: int) -> float:
            psnr = evaluate_codec(codec, state, params, views, pipe, background).psnr
            change[step] = round(psnr - reference, 3)
            return psnr

        iterations = args.finetune_iterations
        finetune(codec, state, params, scene.getTrainCameras(), pipe, background,
                 iterations=iterations, test_iterations=sorted({0, iterations}),
                 on_test=on_test, quiet=True)
        state.eval()
        with tempfile.TemporaryDirectory() as folder:
            info = save(state, params, folder)
        parts = codec.encode(state, params).part_bytes()
        print(json.dumps({"settings": json.loads(text), "coded": state.num_gaussians,
                          "codebook": info["codebook_size"],
                          "f_rest_energy": energies[0] if energies else None,
                          "bits_per_input_gaussian": round(info["bits_per_input_gaussian"], 2),
                          "part_bits_per_input_gaussian": {
                              name: round(8 * size / state.num_input, 2)
                              for name, size in parts.items()},
                          "psnr_change": change,
                          "seconds": round(time.perf_counter() - start)}), flush=True)


if __name__ == "__main__":
    sys.exit(run_main(main, "bench_compact_settings.py", sys.argv[1:]))
