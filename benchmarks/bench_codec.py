"""Benchmark of the codec's math stages; prints one JSON object.

(1) codec step: ``compression.pipeline.simulate`` in training mode, forward and backward, at
    ``--n`` Gaussians (median of ``--repeats`` runs): exactly what every finetune step runs
    (seed layout: layout columns → RAHT → C×B block fake-quant → inverse RAHT → activations).
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

from compression.layouts import LAYOUTS  # noqa: E402
from compression.octree import codes_to_keys, keys_to_codes, voxelize  # noqa: E402
from compression.raht import build_raht  # noqa: E402
from compression.settings import CompressionParams, codec_settings, resolve_settings  # noqa: E402


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


def synthetic_params(voxels: torch.Tensor, sh_degree: int, generator: torch.Generator
                     ) -> dict[str, torch.Tensor]:
    """Raw parameters with one Gaussian at each (distinct) voxel, random attributes."""
    n = voxels.shape[0]
    k = (sh_degree + 1) ** 2
    return {"xyz": voxels.to(torch.float32), "f_dc": torch.randn(n, 1, 3, generator=generator),
            "f_rest": torch.randn(n, k - 1, 3, generator=generator) * 0.1,
            "opacity": torch.randn(n, 1, generator=generator),
            "scaling": torch.randn(n, 3, generator=generator) - 4,
            "rotation": torch.randn(n, 4, generator=generator)}


def bench_step(n: int, depth: int, layout: str, sh_degree: int, n_block: int, repeats: int,
               device: torch.device) -> dict:
    generator = torch.Generator().manual_seed(0)
    voxels = surface_voxels(n, depth, generator)
    params = {name: value.to(device) for name, value in
              synthetic_params(voxels, sh_degree, generator).items()}
    settings = codec_settings(resolve_settings(CompressionParams(
        layout=layout, percent=0.0, depth=depth, n_block=n_block, vq_steps=5)))
    codec = settings.layout.codec
    state, params = codec.prepare(params, None, settings,
                                  torch.Generator(device=device).manual_seed(0))
    state.train()
    for name, value in params.items():
        value.requires_grad_(name != "xyz")
    with torch.no_grad():  # a random upstream gradient for every differentiable output
        upstream = {name: torch.randn(value.shape, generator=generator).to(device)
                    for name, value in codec.simulate(state, params).items() if name != "means"}

    def step() -> None:
        simulated = codec.simulate(state, params)
        for value in params.values():
            value.grad = None
        torch.autograd.backward([simulated[name] for name in upstream], list(upstream.values()))

    step()  # warm-up (device caches, allocator)
    times, cpu_times = [], []
    for _ in range(repeats):
        _sync(device)
        start, cpu_start = time.perf_counter(), time.process_time()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    record = LAYOUTS[layout]
    return {"n": state.num_gaussians, "depth": depth, "layout": layout,
            "columns": record.width(record.raht, sh_degree), "n_block": n_block,
            "levels_with_pairs": len(state.plan.levels), "device": str(device),
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
    parser.add_argument("--layout", default="seed", choices=tuple(LAYOUTS),
                        help="codec layout of the step (default: seed, 55 RAHT columns)")
    parser.add_argument("--sh_degree", type=int, default=3)
    parser.add_argument("--n-block", type=int, default=57)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(),
              "load_average_1min": os.getloadavg()[0]}
    if args.plan_n > 0:
        result["plan"] = bench_plan(args.plan_n, args.depth)
    if args.n > 0:
        result["step"] = bench_step(args.n, args.depth, args.layout, args.sh_degree,
                                    args.n_block, args.repeats, torch.device(args.device))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
