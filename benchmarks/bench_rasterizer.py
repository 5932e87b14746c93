"""Rasterizer speed and memory benchmark; prints one JSON object.

Scene (fixed, seed 0 through a local torch.Generator): N Gaussians with means uniform in
x ∈ [-1.5, 1.5], y ∈ [-1.1, 1.1], z ∈ [0.5, 6] before an identity camera, log-scales uniform in
[-4.5, -1.5], random rotations, opacities uniform in [0.05, 1], SH degree 3, fx = fy = 1.1 W.

Cases: "small" = 20,000 Gaussians at 160×120 (forward and forward+backward time, best and median
of the repeats); "large" = 200,000 Gaussians at 640×480 (one forward+backward, peak RSS from
resource.getrusage, run in a child process so the number is its own).

    python benchmarks/bench_rasterizer.py [--device cpu|cuda] [--backend torch|gsplat|auto] [--threads T]
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gaussian_renderer import rasterize  # noqa: E402


def make_scene(n: int, width: int, height: int, device: torch.device) -> dict:
    """The benchmark scene as leaf tensors that require grad."""
    g = torch.Generator().manual_seed(0)

    def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(*shape, generator=g)

    fx = 1.1 * width
    scene = {
        "means": torch.stack([uniform(-1.5, 1.5, n), uniform(-1.1, 1.1, n), uniform(0.5, 6.0, n)], -1),
        "quats": torch.randn(n, 4, generator=g),
        "scales": uniform(-4.5, -1.5, n, 3).exp(),
        "opacities": uniform(0.05, 1.0, n),
        "colors": 0.3 * torch.randn(n, 16, 3, generator=g),
    }
    leaves = {k: v.to(device).requires_grad_(True) for k, v in scene.items()}
    leaves["viewmat"] = torch.eye(4, device=device)
    leaves["K"] = torch.tensor([[fx, 0, width / 2], [0, fx, height / 2], [0, 0, 1]], device=device)
    return leaves


def step(scene: dict, width: int, height: int, backend: str, backward: bool) -> float:
    """One render (and backward); returns wall seconds, synchronised on CUDA."""
    device = scene["means"].device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    out = rasterize(scene["means"], scene["quats"], scene["scales"], scene["opacities"], scene["colors"],
                    scene["viewmat"], scene["K"], width, height, sh_degree=3, backend=backend)
    if backward:
        (out.image.sum() + out.alpha.sum()).backward()
    sync()
    return time.perf_counter() - start


def small_case(device: torch.device, backend: str, repeats: int) -> dict:
    width, height, n = 160, 120, 20_000
    scene = make_scene(n, width, height, device)
    step(scene, width, height, backend, True)  # warm-up (allocations, lazy imports, kernels)
    with torch.no_grad():
        forward = [step(scene, width, height, backend, False) for _ in range(repeats)]
    cpu_start = time.process_time()
    both = [step(scene, width, height, backend, True) for _ in range(repeats)]
    cpu_per_iter = (time.process_time() - cpu_start) / repeats
    return {
        "gaussians": n, "width": width, "height": height,
        "forward_s_best": round(min(forward), 4), "forward_s_median": round(statistics.median(forward), 4),
        "forward_backward_s_best": round(min(both), 4),
        "forward_backward_s_median": round(statistics.median(both), 4),
        "forward_backward_process_cpu_s": round(cpu_per_iter, 4),
    }


def large_case(device: torch.device, backend: str) -> dict:
    width, height, n = 640, 480, 200_000
    scene = make_scene(n, width, height, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds = step(scene, width, height, backend, True)
    result = {"gaussians": n, "width": width, "height": height, "forward_backward_s": round(seconds, 3),
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if device.type == "cuda":
        result["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="torch device of the scene tensors")
    parser.add_argument("--backend", default="torch", choices=("auto", "torch", "gsplat", "inria"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--case", default="all", choices=("all", "small", "large"))
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    report = {"device": str(device), "backend": args.backend, "torch": torch.__version__,
              "threads": torch.get_num_threads()}
    if args.case in ("all", "small"):
        report["small"] = small_case(device, args.backend, args.repeats)
    if args.case == "large":
        report["large"] = large_case(device, args.backend)
    elif args.case == "all":  # a child process, so that its peak RSS is its own
        child = subprocess.run(
            [sys.executable, __file__, "--device", args.device, "--backend", args.backend, "--case", "large",
             "--threads", str(args.threads)],
            check=True, capture_output=True, text=True,
        )
        report["large"] = json.loads(child.stdout)["large"]
    if "small" in report:
        report["small"]["meets_1s_requirement"] = report["small"]["forward_backward_s_best"] <= 1.0
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
