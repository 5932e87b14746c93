"""Sweep scenes × settings × layouts on Ray: ``python sweep.py --scenes ... -o <sweep folder>``.

    python sweep.py --scenes <folder of scenes | scene ...> (--configs c1 c2 c3 | --grid
        key=v1,v2 ...) [--layouts <layout> ...] -o <sweep folder> [--address auto|ray://host:port]
        [--gpus_per_job N] [--cpus_per_job N] [--threads N]
        [--given_ply_pattern '<scene>/point_cloud.ply']
        --eval [any other train.py flag, passed to every step]

Each scene is trained once (or its --given_ply_pattern model file is taken), then each
(setting, layout) job compresses, renders and scores it in
<sweep folder>/<scene>/<layout>/<setting>/. A --grid axis over a training flag (e.g.
cap_max=2000,4000 with --strategy mcmc) trains the scene once per value, in
<sweep folder>/<scene>/<key=value>/trained/, with that value's jobs beside it.
Without --address, Ray runs embedded on this machine; with it, the sweep runs on that cluster.
A rerun skips finished jobs. Writes sweep.csv, sweep_averages.md and sweep.html; exits with 1
when a job failed.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from compression.layouts import LAYOUTS, PAPER_LAYOUT
from sweeps import Executor, SweepOptions, run_sweep
from train import build_parser as build_train_parser
from utils.cli import run_main
from utils.output_paths import SWEEP_CSV

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False,
                                     epilog="Any other flag goes to train.py in every step.")
    parser.add_argument("--scenes", nargs="+", required=True,
                        help="scene folders, or folders holding scene folders")
    settings = parser.add_mutually_exclusive_group(required=True)
    settings.add_argument("--configs", nargs="+", help="the paper's per-scene settings: c1 c2 c3")
    settings.add_argument("--grid", nargs="+", metavar="KEY=V1,V2",
                          help="cartesian product over compression flags (one job each, e.g. "
                               "num_bits=6,8) and training flags (one scene step each, e.g. "
                               "cap_max=2000,4000)")
    parser.add_argument("--layouts", nargs="+", default=[PAPER_LAYOUT],
                        help=f"codec layouts, among {', '.join(LAYOUTS)} (default: "
                             f"{PAPER_LAYOUT})")
    parser.add_argument("-o", "--output", required=True, help="the sweep folder")
    parser.add_argument("--given_ply_pattern", default=None,
                        help="compress these model files instead of training (a PLY or any "
                             "format train.py --given_ply_path reads; '<scene>' is replaced by "
                             "the scene's folder name)")
    parser.add_argument("--lpips_weights", default=None, help="LPIPS weights for metrics.py")
    parser.add_argument("--address", default=None,
                        help="Ray cluster to join (auto | ray://host:port); default: embedded")
    parser.add_argument("--runtime_env", type=json.loads, default=None,
                        help="Ray runtime_env as JSON, e.g. '{\"working_dir\": \".\"}'")
    parser.add_argument("--num_cpus", type=int, default=None,
                        help="CPUs of the embedded Ray (default: the machine's)")
    parser.add_argument("--cpus_per_job", type=int, default=1,
                        help="CPUs each step declares")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads of each step's train.py, render.py and metrics.py "
                             "(default: --cpus_per_job, the CPUs reserved for the step)")
    parser.add_argument("--gpus_per_job", type=float, default=None,
                        help="GPUs each step declares (default: 1 where Ray sees a GPU, else 0)")
    parser.add_argument("--serial", action="store_true",
                        help="run the steps one by one in this process, without Ray")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or tables")
    return parser


def train_flags(tokens: Sequence[str]) -> dict[str, Any]:
    """The train.py flags given in ``tokens``, parsed: ``{name: value}``.

    Raises:
        ValueError: a flag train.py does not know.
    """
    parser = build_train_parser()
    parser.set_defaults(**dict.fromkeys(vars(parser.parse_args([]))))  # None: not given
    parsed, unknown = parser.parse_known_args(list(tokens))
    if unknown:
        raise ValueError(f"unknown flag(s) {' '.join(unknown)} (neither a sweep.py nor a "
                         f"train.py flag)")
    return {name: value for name, value in vars(parsed).items() if value is not None}


def main(argv: Optional[Sequence[str]] = None) -> int:
    args, rest = build_parser().parse_known_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(message)s")
    executor = Executor(use_ray=not args.serial, address=args.address,
                        runtime_env=args.runtime_env, num_cpus=args.num_cpus,
                        cpus_per_job=args.cpus_per_job, gpus_per_job=args.gpus_per_job,
                        threads_per_job=args.threads)
    options = SweepOptions(scenes=args.scenes, out_dir=args.output, configs=args.configs or (),
                           grid=args.grid or (), layouts=args.layouts,
                           extra_flags=train_flags(rest),
                           given_ply_pattern=args.given_ply_pattern,
                           lpips_weights=args.lpips_weights, executor=executor)
    try:
        summary = run_sweep(options, quiet=args.quiet)
    except KeyboardInterrupt:
        print(f"sweep.py: interrupted; finished jobs are in {Path(args.output) / SWEEP_CSV}; "
              f"run the same command again to resume", file=sys.stderr)
        return 130
    if not args.quiet:
        print(summary.averages.read_text())
        print(f"sweep: {len(summary.jobs)} jobs, {len(summary.failed)} failed; wrote "
              f"{summary.csv}, {summary.averages.name}, {summary.html.name}")
    for job in summary.failed:
        print(f"sweep.py: job {job.scene}/{job.layout}/{job.setting} failed: {job.error}",
              file=sys.stderr)
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(run_main(main, "sweep.py", sys.argv[1:]))
