"""Benchmark of the codec's math stages; prints one JSON object.

(1) codec step: RAHT forward + C×B BlockQuantizer fake-quant (training mode) + RAHT inverse,
    forward and backward, at ``--n`` Gaussians (median of ``--repeats`` runs).
(2) plan building: ``build_raht`` for ``--plan-n`` voxels at depth D, time and peak memory
    (tracemalloc peak of the numpy work, and the whole process's peak RSS as an upper bound).

Voxels come from points on a noisy surface (a sphere and a ground plane), voxelized at depth D
and deduplicated, as after the codec's voxelization stage.

    .venv/bin/python benchmarks/bench_codec.py                      # CPU targets
    .venv/bin/python benchmarks/bench_codec.py --device cuda --n 1000000 --plan-n 0
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compression.octree import codes_to_keys, keys_to_codes, voxelize  # noqa: E402
from compression.quantization import BlockQuantizer  # noqa: E402
from compression.raht import build_raht  # noqa: E402


def surface_voxels(n: int, depth: int, generator: torch.Generator) -> torch.Tensor:
    """About n distinct voxels [M, 3] int64 of points on a noisy sphere and ground plane."""
    oversample = int(n * 1.05) + 16
    n_sphere = oversample * 2 // 3
    direction = torch.randn(n_sphere, 3, generator=generator, dtype=torch.float64)
    sphere = direction / direction.norm(dim=1, keepdim=True)
    sphere = sphere * (1 + 0.01 * torch.randn(n_sphere, 1, generator=generator, dtype=torch.float64))
    plane = torch.rand(oversample - n_sphere, 3, generator=generator, dtype=torch.float64) * 4 - 2
    plane[:, 2] = -1.2 + 0.005 * torch.randn(plane.shape[0], generator=generator, dtype=torch.float64)
    codes, _ = voxelize(torch.cat([sphere, plane]), depth)
    keys = torch.unique(codes_to_keys(codes, depth))
    keep = torch.randperm(keys.numel(), generator=generator)[:n]
    return keys_to_codes(keys[keep], depth)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_step(n: int, depth: int, columns: int, n_block: int, repeats: int,
               device: torch.device) -> dict:
    generator = torch.Generator().manual_seed(0)
    voxels = surface_voxels(n, depth, generator)
    plan = build_raht(voxels, depth).to(device)
    attrs = torch.randn(voxels.shape[0], columns, generator=generator).to(device).requires_grad_(True)
    quantizer = BlockQuantizer(columns, n_block, bits=8).to(device).train()
    upstream = torch.randn(attrs.shape, generator=generator).to(device)

    def step() -> None:
        decoded = plan.inverse(quantizer.forward_coeffs(plan.forward(attrs)))
        attrs.grad = None
        decoded.backward(upstream)

    step()  # warm-up (device caches, allocator)
    times, cpu_times = [], []
    for _ in range(repeats):
        _sync(device)
        start, cpu_start = time.perf_counter(), time.process_time()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    return {"n": int(voxels.shape[0]), "depth": depth, "columns": columns, "n_block": n_block,
            "levels_with_pairs": len(plan.levels), "device": str(device),
            "median_s": statistics.median(times), "min_s": min(times),
            "median_process_cpu_s": statistics.median(cpu_times)}


def bench_plan(n: int, depth: int) -> dict:
    voxels = surface_voxels(n, depth, torch.Generator().manual_seed(1)).numpy()
    tracemalloc.start()
    start, cpu_start = time.perf_counter(), time.process_time()
    plan = build_raht(voxels, depth)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    _, peak_bytes = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"n": plan.n, "depth": depth, "seconds": seconds, "process_cpu_s": cpu_seconds,
            "numpy_peak_mb": peak_bytes / 2**20,
            # Upper bound: includes generating the test geometry with torch.
            "process_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "levels_with_pairs": len(plan.levels), "pairs": plan.num_pairs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="torch device for the codec step")
    parser.add_argument("--n", type=int, default=100_000, help="Gaussians in the codec step")
    parser.add_argument("--plan-n", type=int, default=1_000_000, help="voxels for plan building (0 skips)")
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--columns", type=int, default=55)
    parser.add_argument("--n-block", type=int, default=57)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(),
              "load_average_1min": os.getloadavg()[0]}
    if args.plan_n > 0:
        result["plan"] = bench_plan(args.plan_n, args.depth)
    if args.n > 0:
        result["step"] = bench_step(args.n, args.depth, args.columns, args.n_block, args.repeats,
                                    torch.device(args.device))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
