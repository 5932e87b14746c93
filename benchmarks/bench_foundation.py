"""Timings of the foundation pieces: PLY I/O, create_from_pcd, SSIM/PSNR, LPIPS (prints JSON).

Usage: ``python benchmarks/bench_foundation.py [--ply PATH] [--repeats 5]``
(default PLY: ../shared/data/pretrained_ply/small_3dgs_sh3.ply).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scene.gaussian_model import GaussianModel  # noqa: E402
from utils.graphics_utils import BasicPointCloud  # noqa: E402
from utils.image_utils import psnr  # noqa: E402
from utils.loss_utils import ssim  # noqa: E402
from utils.lpips import LPIPS  # noqa: E402


def best_ms(fn: Callable[[], object], repeats: int) -> float:
    """Fastest of ``repeats`` runs, in milliseconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ply", default=str(REPO.parent / "shared" / "data" / "pretrained_ply"
                                             / "small_3dgs_sh3.ply"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    gen = torch.Generator().manual_seed(0)
    out: dict[str, object] = {"torch_threads": torch.get_num_threads()}

    model = GaussianModel(3)
    out["ply_load_ms"] = best_ms(lambda: model.load_ply(args.ply), args.repeats)
    out["ply_gaussians"] = model.num_gaussians
    with tempfile.TemporaryDirectory() as tmp:
        out["ply_save_ms"] = best_ms(lambda: model.save_ply(Path(tmp) / "p.ply"), args.repeats)

    points = torch.rand(100_000, 3, generator=gen).numpy() * 10
    pcd = BasicPointCloud(points, np.full_like(points, 0.5), np.zeros_like(points))
    out["create_from_pcd_100k_ms"] = best_ms(lambda: GaussianModel(3).create_from_pcd(pcd, 1.0),
                                             args.repeats)

    img = torch.rand(3, 800, 800, generator=gen)
    ref = torch.rand(3, 800, 800, generator=gen)
    out["psnr_800px_ms"] = best_ms(lambda: psnr(img, ref), args.repeats)

    def ssim_step() -> None:
        x = img.clone().requires_grad_(True)
        (1 - ssim(x, ref)).backward()

    out["ssim_800px_fwd_ms"] = best_ms(lambda: ssim(img, ref), args.repeats)
    out["ssim_800px_fwd_bwd_ms"] = best_ms(ssim_step, args.repeats)

    net = LPIPS()
    small, small_ref = img[None, :, :200, :200], ref[None, :, :200, :200]
    with torch.no_grad():
        out["lpips_vgg_200px_ms"] = best_ms(lambda: net(small, small_ref), max(1, args.repeats // 2))
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in out.items()},
                     indent=1))


if __name__ == "__main__":
    main()
