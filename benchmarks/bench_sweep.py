"""The small sweep of ``tests/test_sweep.py`` run serially and on embedded Ray, timed.

Scenes: the bundled lego sample and ../shared/data/statuette; two grid settings
(``n_block=8,16``), the official layout, a tiny schedule (``--iterations``, ``--finetune``).
Each mode runs ``sweep.py`` as a user would, into a fresh folder, and is timed end to end
(Ray's start included):

* ``serial_1_thread``: ``--serial`` (one step after the other, no Ray), 1 thread per step;
* ``serial_all_threads``: ``--serial`` with every core's threads given to the one step;
* ``ray``: embedded Ray with ``--num_cpus`` = the cores, 1 CPU (thread) per step.

Prints one JSON object: per mode the wall seconds, the job count and the summed job seconds;
whether each mode gave the same sizes and PSNRs as the serial 1-thread run (more threads may
round differently); the load average before and after (the machine may be shared).

Usage: ``python benchmarks/bench_sweep.py [--iterations 60] [--finetune 5] [--out DIR]``.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCENES = [REPO / "data" / "lego_sample", REPO.parent / "shared" / "data" / "statuette"]


def run_mode(name: str, mode_flags: list[str], schedule: list[str], out: Path) -> dict:
    """Run the sweep once into ``out/name``; its wall time and rows."""
    folder = out / name
    command = [sys.executable, str(REPO / "sweep.py"), "--scenes", *map(str, SCENES),
               "--grid", "n_block=8,16", "-o", str(folder), "--quiet", *mode_flags, *schedule]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"bench_sweep: {name} failed ({done.returncode}): "
                         f"{done.stderr.strip()[-2000:]}")
    with (folder / "sweep.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {"wall_seconds": round(seconds, 1), "jobs": len(rows),
            "ok": sum(r["status"] == "ok" for r in rows),
            "sum_job_seconds": round(sum(float(r["job_seconds"]) for r in rows), 1),
            "rows": [(r["scene"], r["setting"], r["size_bytes"], r["psnr"]) for r in rows]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=60, help="training iterations")
    parser.add_argument("--finetune", type=int, default=5, help="finetune iterations")
    parser.add_argument("--out", type=str, default=None, help="sweep folders (default: temp)")
    args = parser.parse_args()
    if not SCENES[1].is_dir():
        raise SystemExit(f"{SCENES[1]} not found (../shared/data is needed for this benchmark)")
    cores = len(os.sched_getaffinity(0))
    schedule = ["-r", "32", "--eval", "--sh_degree", "1", "--backend", "torch",
                "--num_random_points", "300", "--iterations", str(args.iterations),
                "--sh_increase_interval", str(max(1, args.iterations // 3)),
                "--test_iterations", str(args.iterations), "--save_iterations",
                str(args.iterations), "--codebook_size", "64", "--vq_steps", "10",
                "--finetune_iterations", str(args.finetune), "--finetune_test_iterations",
                str(args.finetune)]
    modes = {"serial_1_thread": ["--serial", "--cpus_per_job", "1"],
             "serial_all_threads": ["--serial", "--cpus_per_job", str(cores)],
             "ray": ["--num_cpus", str(cores), "--cpus_per_job", "1"]}
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    load_before = os.getloadavg()
    results = {name: run_mode(name, flags, schedule, out) for name, flags in modes.items()}
    rows = [result.pop("rows") for result in results.values()]
    print(json.dumps({
        "cores": cores, "scenes": [p.name for p in SCENES], "settings": ["n_block=8",
                                                                        "n_block=16"],
        "iterations": args.iterations, "finetune_iterations": args.finetune, "modes": results,
        "ray_speedup_vs_serial_1_thread": round(results["serial_1_thread"]["wall_seconds"]
                                                / results["ray"]["wall_seconds"], 2),
        "ray_speedup_vs_serial_all_threads": round(
            results["serial_all_threads"]["wall_seconds"] / results["ray"]["wall_seconds"], 2),
        "same_sizes_and_psnr_as_serial_1_thread": {name: r == rows[0] for name, r
                                                   in zip(results, rows)},
        "loadavg_1min_before": round(load_before[0], 2),
        "loadavg_1min_after": round(os.getloadavg()[0], 2),
        "out": str(out)}, indent=1))


if __name__ == "__main__":
    main()
