"""Encode / decode speed and peak memory of the codec without finetuning; prints JSON.

1,000,000 synthetic Gaussians (default) on a noisy wavy surface, SH degree 3, no cameras
(importance from opacity). Layouts: seed (default; depth 20, 57 blocks, 8 bits), official (the
same and its 4096-entry codebook), compact (its own defaults: --quality 5, depth and codebook
chosen from the model). Targets: encode (prepare + save) <= 30 s, decode (read the bitstream +
decode) <= 5 s, peak RSS <= 4 GB.

    .venv/bin/python benchmarks/bench_encode.py [--layout seed|official|compact]
                      [--num_gaussians 1000000] [--threads 2] [--device cpu]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compression.bitstream import decode_file, save  # noqa: E402
from compression.layouts import LAYOUTS  # noqa: E402
from compression.settings import CompressionParams, codec_settings, resolve_settings  # noqa: E402
from scene.ply import standard_ply_size_bytes  # noqa: E402


def synthetic_params(n: int, sh_degree: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Raw parameters of Gaussians on z = 0.3·sin(3x)·cos(2y) over [-2, 2]², jittered, with
    plausible attributes."""
    xy = torch.rand(n, 2, generator=generator) * 4 - 2
    z = 0.3 * torch.sin(3 * xy[:, 0]) * torch.cos(2 * xy[:, 1])
    xyz = torch.cat([xy, z[:, None]], 1) + 0.01 * torch.randn(n, 3, generator=generator)
    k = (sh_degree + 1) ** 2
    smooth = torch.sin(xyz @ torch.randn(3, 3 * k, generator=generator))  # spatially coherent
    return {
        "xyz": xyz,
        "f_dc": (smooth[:, :3] + 0.1 * torch.randn(n, 3, generator=generator))[:, None, :],
        "f_rest": (0.05 * smooth[:, 3:] + 0.02 * torch.randn(n, 3 * (k - 1), generator=generator))
        .reshape(n, k - 1, 3),
        "opacity": torch.randn(n, 1, generator=generator) * 2,
        "scaling": torch.randn(n, 3, generator=generator) * 0.5 - 5.0,
        "rotation": torch.randn(n, 4, generator=generator),
    }


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layout", choices=tuple(LAYOUTS), default="seed")
    parser.add_argument("--num_gaussians", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="torch device for the codec")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    params = {name: value.to(args.device) for name, value in
              synthetic_params(args.num_gaussians, 3, generator).items()}
    generator = torch.Generator(device=args.device).manual_seed(0)
    block_flags = {} if LAYOUTS[args.layout].quality_levels else {"depth": 20, "n_block": 57,
                                                                  "num_bits": 8}
    settings = codec_settings(resolve_settings(CompressionParams(layout=args.layout,
                                                                 **block_flags)))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    _sync(args.device)
    start, cpu_start = time.perf_counter(), time.process_time()
    state, coded = settings.layout.codec.prepare(params, None, settings, generator)
    _sync(args.device)
    prepare_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as out:
        info = save(state, coded, out, measure_decode=False)
        encode_s, encode_cpu = time.perf_counter() - start, time.process_time() - cpu_start
        start, cpu_start = time.perf_counter(), time.process_time()
        decoded = decode_file(info["path"], device=args.device)
        _sync(args.device)
        decode_s, decode_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # KiB on Linux
    print(json.dumps({
        "layout": args.layout,
        "num_gaussians_in": args.num_gaussians,
        "num_gaussians_coded": info["num_gaussians"],
        "threads": args.threads,
        "device": str(torch.cuda.get_device_name() if args.device.startswith("cuda")
                      else args.device),
        "prepare_seconds": round(prepare_s, 3),
        "save_seconds": round(info["encode_seconds"], 3),
        "encode_seconds": round(encode_s, 3),
        "decode_seconds": round(decode_s, 3),
        # CPU time of this process (all its threads): on a shared machine wall time grows with
        # the other processes' load, CPU time much less
        "encode_cpu_seconds": round(encode_cpu, 3),
        "decode_cpu_seconds": round(decode_cpu, 3),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "decoded_gaussians": int(decoded["xyz"].shape[0]),
        "size_bytes": info["size_bytes"],
        "bits_per_gaussian": round(info["bits_per_gaussian"], 2),
        "bits_per_input_gaussian": round(info["bits_per_input_gaussian"], 2),
        "depth": info["depth"],
        "codebook_size": info["codebook_size"],
        "ply_size_bytes": standard_ply_size_bytes(args.num_gaussians, 3),
        "peak_rss_gb": round(peak_gb, 3),
        "rss_after_model_gb": round(rss_before * 1024 / 1e9, 3),
        "targets": {"encode_seconds": 30, "decode_seconds": 5, "peak_rss_gb": 4},
    }, indent=2))


if __name__ == "__main__":
    main()
