"""Time and peak memory of whole train.py / render.py runs on models of millions of Gaussians;
prints JSON.

The models look trained: the Gaussians of a trained PLY (default: the shared
``pretrained_ply/small_3dgs_sh3.ply``, 9,080 Gaussians, SH 3) copied side by side on a square
grid, every copy's positions jittered by a tenth of each Gaussian's size, its DC colour by 0.02
and its f_rest row by a tenth of that row's spread (a hundredth of the median row's spread for
an all-zero row): as in a trained model no two f_rest rows are equal, so the codec runs its
k-means rather than taking a palette of repeated rows. The whole grid is scaled into the bundled
lego scene's cube (half-width 1.2, log-scales shifted to match) so that its cameras see it.
Built once per size and kept in ``--work_dir``.

Each size runs, as separate processes (wall time and peak resident set from ``os.wait4``, the
largest of the process and the children it waited for):

* ``read_ply``: ``scene.ply.read_ply`` of the model alone;
* ``encode``: ``train.py --given_ply_path <model> --layout compact`` without a scene (default
  quality, no finetune); the 6 M targets: ≤ 120 s, ≤ 12 GB;
* ``decode``: ``render.py --given_ply_path <bitstream.gsc> --export_ply`` (target ≤ 20 s);
* ``export_spz``: ``render.py --given_ply_path <bitstream.gsc> --export scene.spz``;
* ``finetune`` (``--finetune_iterations``, default 20; 0 skips it): ``train.py -s
  data/lego_sample --given_ply_path <model> --layout compact`` with a single save at the last
  step; ``seconds_per_step`` from its report's ``finetune_seconds``.

Every output line of a run (log lines go through tqdm to stdout) is kept with the second it arrived (``log``), so the stages a run
logs can be timed from the output. The load average is read before and after each run.

    .venv/bin/python benchmarks/bench_scale.py [--sizes 1000000 3000000 6000000]
        [--steps read_ply encode decode export_spz finetune] [--finetune_iterations 20]
        [--work_dir output/bench_scale] [--source ../shared/data/pretrained_ply/...ply]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scene.ply import read_ply, write_ply  # noqa: E402

DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "pretrained_ply" / "small_3dgs_sh3.ply"
SCENE = ROOT / "data" / "lego_sample"
STEPS = ("read_ply", "encode", "decode", "export_spz", "finetune")
HALF_WIDTH = 1.2
#: f_rest jitter, over each row's standard deviation
F_REST_JITTER = 0.1
TARGETS_6M = {"encode_seconds": 120, "encode_peak_rss_gb": 12, "decode_seconds": 20}


def tiled_model(source: dict[str, np.ndarray], n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` Gaussians: copies of ``source`` on a square grid (spacing: the source's 1st-99th
    percentile extent), positions jittered by 0.1 × each Gaussian's mean scale, DC by 0.02 and
    f_rest by 0.1 × the standard deviation of the row's values (at least a tenth of the median
    row's: every row unique), scaled into the cube of half-width :data:`HALF_WIDTH` around the
    origin."""
    rng = np.random.default_rng(seed)
    m = source["xyz"].shape[0]
    copies = math.ceil(n / m)
    side = math.ceil(math.sqrt(copies))
    low, high = np.percentile(source["xyz"], [1, 99], axis=0)
    spacing = (high - low)[:2]
    tile = np.arange(copies)
    offsets = np.zeros((copies, 3))
    offsets[:, 0], offsets[:, 1] = tile % side * spacing[0], tile // side * spacing[1]
    rows = np.arange(n) % m
    centre_shift = (offsets.max(0) + high + low) / 2  # centre of the whole grid
    xyz = source["xyz"][rows] + np.repeat(offsets, m, axis=0)[:n] - centre_shift
    size = np.exp(source["scaling"]).mean(1)[rows, None]
    xyz += 0.1 * size * rng.standard_normal((n, 3))
    factor = HALF_WIDTH / np.abs(xyz).max()
    f_dc = source["f_dc"][rows] + 0.02 * rng.standard_normal((n, 1, 3))
    f_rest = source["f_rest"][rows]
    spread = f_rest.reshape(n, -1).std(1)
    spread = F_REST_JITTER * np.maximum(spread, 0.1 * np.median(spread))[:, None, None]
    f_rest += spread * rng.standard_normal(f_rest.shape, dtype=np.float32)
    return {"xyz": (xyz * factor).astype(np.float32),
            "f_dc": f_dc.astype(np.float32),
            "f_rest": f_rest,
            "opacity": source["opacity"][rows],
            "scaling": (source["scaling"][rows] + np.log(factor)).astype(np.float32),
            "rotation": source["rotation"][rows]}


def model_path(work_dir: Path, source: Path, n: int) -> Path:
    """The cached model of ``n`` Gaussians built from ``source`` (built on first use)."""
    path = work_dir / f"{source.stem}_x{n}_unique_rest.ply"
    if not path.is_file():
        work_dir.mkdir(parents=True, exist_ok=True)
        print(f"building {path} ({n:,} Gaussians)", file=sys.stderr, flush=True)
        write_ply(path, tiled_model(read_ply(source), n))
    return path


def run_process(command: Sequence[str], cwd: Path = ROOT) -> dict[str, Any]:
    """Run ``command`` to its end: wall seconds, peak RSS (GB), CPU seconds, exit status, load
    average before and after, and its output lines (stdout and stderr) stamped with their arrival second."""
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    process = subprocess.Popen(list(command), cwd=cwd, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, bufsize=1)
    log = []
    for line in process.stdout:  # tqdm redraws with \r: keep each line's last state
        text = line.rstrip("\n").split("\r")[-1].strip()
        if text:
            log.append([round(time.perf_counter() - start, 2), text])
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    return {"command": " ".join(map(str, command)), "exit_status": process.returncode,
            "wall_seconds": round(wall, 2),
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_gb": round(usage.ru_maxrss * 1024 / 1e9, 3),  # KiB on Linux
            "load_average_before": round(load_before, 2),
            "load_average_after": round(os.getloadavg()[0], 2), "log": log}


def bench_size(n: int, ply: Path, work_dir: Path, steps: Sequence[str],
               finetune_iterations: int, results: list[dict[str, Any]]) -> None:
    """Every asked step on the model ``ply`` of ``n`` Gaussians (outputs under ``work_dir``),
    appended to ``results`` as a dict that grows step by step; ``work_dir/results.json`` holds
    all of ``results`` after every step (a long run can be read before its end)."""
    python = sys.executable
    out = work_dir / f"run_{n}"
    gsc = out / "encode" / "compression" / "compact" / "iteration_0" / "bitstream.gsc"
    result: dict[str, Any] = {"num_gaussians": n, "model": str(ply),
                              "ply_bytes": ply.stat().st_size}
    results.append(result)
    for step in steps:
        if step == "read_ply":
            command = [python, "-c", f"from scene.ply import read_ply; read_ply({str(ply)!r})"]
        elif step == "encode":
            command = [python, "train.py", "--given_ply_path", ply, "-m", out / "encode",
                       "--layout", "compact"]
        elif step in ("decode", "export_spz"):
            target = out / ("decoded.ply" if step == "decode" else "decoded.spz")
            command = [python, "render.py", "--given_ply_path", gsc,
                       "--export_ply" if step == "decode" else "--export", target]
        else:
            command = [python, "train.py", "-s", SCENE, "--given_ply_path", ply,
                       "-m", out / "finetune", "--layout", "compact",
                       "--finetune_iterations", str(finetune_iterations),
                       "--finetune_test_iterations", str(finetune_iterations)]
        print(f"{n:,}: {step}", file=sys.stderr, flush=True)
        run = run_process(command)
        if step == "encode" and gsc.is_file():
            run["bitstream_bytes"] = gsc.stat().st_size
            report = json.loads((gsc.parent / "report.json").read_text())
            run["bits_per_input_gaussian"] = report.get("bits_per_input_gaussian")
        if step == "finetune" and run["exit_status"] == 0:
            report_path = (out / "finetune" / "compression" / "compact"
                           / f"iteration_{finetune_iterations}" / "report.json")
            seconds = json.loads(report_path.read_text())["finetune_seconds"]
            run["finetune_seconds"] = seconds
            run["seconds_per_step"] = round(seconds / finetune_iterations, 3)
        result[step] = run
        (work_dir / "results.json").write_text(json.dumps(results, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 3_000_000,
                                                                   6_000_000])
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    parser.add_argument("--finetune_iterations", type=int, default=20)
    parser.add_argument("--work_dir", type=Path, default=ROOT / "output" / "bench_scale")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE,
                        help="the trained PLY whose Gaussians are tiled")
    args = parser.parse_args()
    steps = [s for s in args.steps if s != "finetune" or args.finetune_iterations > 0]
    results: list[dict[str, Any]] = []
    for n in args.sizes:
        bench_size(n, model_path(args.work_dir, args.source, n), args.work_dir, steps,
                   args.finetune_iterations, results)
    print(json.dumps({"cpu_count": os.cpu_count(), "source": str(args.source),
                      "targets_6m": TARGETS_6M, "sizes": results}, indent=2))


if __name__ == "__main__":
    main()
