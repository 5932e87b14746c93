"""Decode time of a compact bitstream in JavaScript (web/gsc.mjs in Node.js) beside the Python
decoder, and gsc2ply beside render.py --export_ply; prints JSON.

The model: 1,000,000 synthetic Gaussians (bench_encode.synthetic_params, SH degree 3, no
cameras) compressed with --layout compact at --quality 9 (no pruning: the file holds about
1M Gaussians; quality 5 keeps 700k), or a given .gsc.
Targets: Node decode of the 1M-Gaussian file <= 1.5 s on 2 cores; `node web/gsc2ply.mjs` no
slower than `render.py --given_ply_path <gsc> --export_ply <ply>` on the same file.

    .venv/bin/python benchmarks/bench_web_decode.py [--num_gaussians 1000000] [--quality 9]
                      [--gsc FILE] [--repeat 3]

Decode times are the best of --repeat runs in one process each (the file already read), wall
and CPU time of the process (on a shared machine the wall time grows with the others' load);
command times are the wall time of one whole command (start-up included). The JSON's
"decode_seconds" maps each decoder to its time: the viewer page's benchmark adds its
headless-Chromium time there (and the page bytes beside), through :func:`measure`.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_encode import synthetic_params  # noqa: E402
from compression.bitstream import decode_file, read_bitstream, save  # noqa: E402
from compression.settings import CompressionParams, codec_settings, resolve_settings  # noqa: E402

NODE_DECODE = """
import { readFileSync } from 'node:fs';
import { decodeGsc } from './web/gsc.mjs';
const bytes = new Uint8Array(readFileSync(process.argv[1]));
const times = [];
const cpu = [];
for (let i = 0; i < Number(process.argv[2]); i++) {
  const start = performance.now();
  const usage = process.cpuUsage();
  decodeGsc(bytes);
  const used = process.cpuUsage(usage);
  times.push((performance.now() - start) / 1000);
  cpu.push((used.user + used.system) / 1e6);
}
process.stdout.write(JSON.stringify({ times, cpu }));
"""


def compact_file(num_gaussians: int, quality: int, folder: Path) -> Path:
    """A compact bitstream of ``num_gaussians`` synthetic Gaussians (no cameras)."""
    params = synthetic_params(num_gaussians, 3, torch.Generator().manual_seed(0))
    settings = codec_settings(resolve_settings(CompressionParams(layout="compact",
                                                                 quality=quality)))
    state, coded = settings.layout.codec.prepare(params, None, settings,
                                                 torch.Generator().manual_seed(0))
    state.eval()
    return Path(save(state, coded, folder, measure_decode=False)["path"])


def node_decode_seconds(path: Path, repeat: int) -> dict[str, float]:
    """Best wall and CPU time of decodeGsc in Node.js (the bytes already in memory)."""
    result = subprocess.run(["node", "--input-type=module", "-e", NODE_DECODE, str(path),
                             str(repeat)], cwd=REPO, capture_output=True, text=True, check=True)
    times = json.loads(result.stdout)
    return {"wall": min(times["times"]), "cpu": min(times["cpu"])}


def python_decode_seconds(path: Path, repeat: int) -> dict[str, float]:
    """Best wall and CPU time of reading + decoding (what render.py runs for a .gsc)."""
    wall, cpu = [], []
    for _ in range(repeat):
        start, cpu_start = time.perf_counter(), time.process_time()
        decode_file(path)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
    return {"wall": min(wall), "cpu": min(cpu)}


def command_seconds(command: list[str]) -> float:
    """Wall time of one command (its start-up included)."""
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, capture_output=True,
                   env={**os.environ, "OMP_NUM_THREADS": "2"})
    return time.perf_counter() - start


def measure(decoders: dict[str, Callable[[Path, int], dict[str, float]]], path: Path,
            repeat: int) -> dict[str, dict[str, float]]:
    """Wall and CPU seconds of decoding ``path`` by each named decoder (the extension point of
    this benchmark: another decoder is one more entry)."""
    return {name: {kind: round(seconds, 3) for kind, seconds in decoder(path, repeat).items()}
            for name, decoder in decoders.items()}


def add_decode_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags choosing the decoded file and the repetitions (shared with bench_web_page)."""
    parser.add_argument("--num_gaussians", type=int, default=1_000_000)
    parser.add_argument("--quality", type=int, default=9)
    parser.add_argument("--gsc", type=Path, default=None, help="a .gsc to time instead")
    parser.add_argument("--repeat", type=int, default=3)


def decode_report(args: argparse.Namespace, folder: Path, decoders: dict) -> dict:
    """The decode part of a report: the file (``--gsc`` or the synthetic one written under
    ``folder``), each decoder's seconds, gsc2ply beside render.py --export_ply and whether
    their PLYs are identical."""
    path = args.gsc or compact_file(args.num_gaussians, args.quality, folder / "compact")
    decode_seconds = measure(decoders, path, args.repeat)
    gsc2ply = command_seconds(["node", "web/gsc2ply.mjs", str(path), str(folder / "js.ply")])
    render = command_seconds([sys.executable, "render.py", "--given_ply_path", str(path),
                              "--export_ply", str(folder / "py.ply"), "--quiet"])
    return {
        "num_gaussians_coded": read_bitstream(path).num_gaussians,
        "gsc_bytes": path.stat().st_size,
        "decode_seconds": decode_seconds,
        "command_seconds": {"node web/gsc2ply.mjs": round(gsc2ply, 3),
                            "render.py --export_ply": round(render, 3)},
        "plys_identical": (folder / "js.ply").read_bytes() == (folder / "py.ply").read_bytes(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_decode_arguments(parser)
    args = parser.parse_args()
    if shutil.which("node") is None:
        sys.exit("bench_web_decode.py: error: Node.js (node) is not installed")
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        report = decode_report(args, Path(tmp), {"node": node_decode_seconds,
                                                 "python": python_decode_seconds})
    print(json.dumps({
        **report,
        "node_version": subprocess.run(["node", "--version"], capture_output=True,
                                       text=True).stdout.strip(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "note": "decode_seconds: best of --repeat; wall and process CPU time",
        "targets": {"node_decode_seconds": 1.5,
                    "gsc2ply_seconds": "<= render.py --export_ply"},
    }, indent=2))

if __name__ == "__main__":
    main()
