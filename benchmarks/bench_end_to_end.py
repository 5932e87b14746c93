"""The whole scene's bytes: default training against MCMC under budgets, each compressed.

    python benchmarks/bench_end_to_end.py SCENE [-o WORK] [--fractions 0.5 0.25 0.125]
        [--default_model MODEL] [--finetune_iterations 500] [--skip_peers] [--quiet]

SCENE is one of the shared scenes with a CPU recipe (:data:`RECIPES`: the README's training
commands; ``lego_200``, ``statuette``, ``sacre_coeur``) or a scene folder whose name is one of
them. The benchmark

(a) trains the default strategy with the recipe, timed (``train.py --skip_compress``), or
    reads a model already trained with it (``--default_model``, left untouched: its recipe
    flags are checked against its cfg_args, its training seconds are the span of its
    TensorBoard events);
(b) trains ``--strategy mcmc --cap_max round(f · N_a)`` for each fraction f of (a)'s final
    Gaussian count N_a, with the recipe's schedule (its MCMC schedule where it has one) and
    ``--refine_*`` flags (chosen so that 5 % growth per refinement reaches every cap:
    :func:`refine_steps_to_cap`);

then measures every model with ``benchmarks/bench_peers.py`` (``--layout compact`` at its
default quality with ``--finetune_iterations`` steps, render.py and metrics.py on the test
views), (a) also as SPZ and SOG. Every step keeps its result in the work folder (default
``output/bench_e2e/<scene>``; ``train.json``, ``peers.json``) and is skipped when run again, so an
interrupted run resumes. Prints one JSON object: per run its training seconds, final
Gaussians, uncompressed and decoded test PSNR, bytes; and per budget whether it meets the
goal: at most half of (a)+compact's bytes at a decoded PSNR no more than 0.1 dB below.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

import train  # noqa: E402
from arguments import read_cfg_args  # noqa: E402
from scene.formats import ply_vertex_count  # noqa: E402
from utils.cli import run_main  # noqa: E402
from utils.output_paths import CFG_ARGS, point_cloud_dir, point_cloud_path  # noqa: E402
from utils.system_utils import searchForMaxIteration  # noqa: E402

logger = logging.getLogger("bench_end_to_end")

#: the README's CPU training commands per shared scene: scene flags, shared schedule, the
#: default strategy's densification flags, the MCMC refinement flags, and where MCMC trains
#: longer than the default its own schedule ("mcmc_schedule", in place of "schedule";
#: lego_200: 4,000 iterations, refinement scaled with them, measured 1.3-1.4x (a)'s training
#: time; sacre_coeur: 3,000, 0.64x, its MCMC steps costing about half a default one; README)
RECIPES: dict[str, dict[str, list[str]]] = {
    "lego_200": {
        "scene": ["-r", "1", "--white_background", "--num_random_points", "10000"],
        "schedule": ["--iterations", "1500", "--position_lr_max_steps", "1500",
                     "--sh_increase_interval", "150", "--test_iterations", "1500",
                     "--save_iterations", "1500"],
        "default": ["--densify_from_iter", "150", "--densify_until_iter", "750",
                    "--densification_interval", "100", "--opacity_reset_interval", "1501"],
        "mcmc_schedule": ["--iterations", "4000", "--position_lr_max_steps", "4000",
                          "--sh_increase_interval", "400", "--test_iterations", "4000",
                          "--save_iterations", "4000"],
        "mcmc": ["--refine_start_iter", "400", "--refine_stop_iter", "3400",
                 "--refine_every", "25", "--min_opacity", "0.05", "--opacity_lr", "0.05"],
    },
    "statuette": {
        "scene": ["-r", "4"],
        "schedule": ["--iterations", "3000", "--position_lr_max_steps", "3000",
                     "--sh_increase_interval", "300", "--test_iterations", "3000",
                     "--save_iterations", "3000"],
        "default": ["--densify_from_iter", "300", "--densify_until_iter", "1500",
                    "--densification_interval", "100", "--opacity_reset_interval", "1000",
                    "--densify_grad_threshold", "0.0001"],
        "mcmc": ["--refine_start_iter", "300", "--refine_stop_iter", "2500",
                 "--refine_every", "20"],
    },
    "sacre_coeur": {
        "scene": ["-r", "4"],
        "schedule": ["--iterations", "2000", "--position_lr_max_steps", "2000",
                     "--sh_increase_interval", "200", "--test_iterations", "2000",
                     "--save_iterations", "2000"],
        "default": ["--densify_from_iter", "200", "--densify_until_iter", "1000",
                    "--densification_interval", "100", "--opacity_reset_interval", "1000",
                    "--densify_grad_threshold", "0.0001"],
        "mcmc_schedule": ["--iterations", "3000", "--position_lr_max_steps", "3000",
                          "--sh_increase_interval", "300", "--test_iterations", "3000",
                          "--save_iterations", "3000"],
        "mcmc": ["--refine_start_iter", "300", "--refine_stop_iter", "2550",
                 "--refine_every", "15"],
    },
}
#: the goal per budget: bytes at most this fraction of (a)+compact's ...
BYTES_GOAL = 0.5
#: ... at a decoded test PSNR at most this far below (a)+compact's
PSNR_MARGIN_DB = 0.1


def refine_steps_to_cap(start: int, cap: int) -> int:
    """Refinement steps MCMC needs to grow from ``start`` Gaussians to ``cap`` (5 % each)."""
    steps, count = 0, min(start, cap)
    while count < cap:
        count = min(cap, int(1.05 * count))
        steps += 1
    return steps


def _flag(tokens: Sequence[str], name: str) -> int:
    return int(tokens[list(tokens).index(name) + 1])


def run_logged(arguments: Sequence[str], log: Path) -> tuple[float, str]:
    """Run this interpreter on ``arguments`` in the repository; (wall seconds, stdout).

    Raises:
        ValueError: a non-zero exit, with the last line of its log.
    """
    with log.open("a") as err:
        err.write(f"$ {' '.join(map(str, arguments))}\n")
        err.flush()
        start = time.perf_counter()
        done = subprocess.run([sys.executable, *map(str, arguments)], cwd=REPO, text=True,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        lines = log.read_text().strip().splitlines()
        raise ValueError(f"{arguments[0]} exited with status {done.returncode}: "
                         f"{lines[-1] if lines else ''} (log: {log})")
    return seconds, done.stdout


def recipe_mismatches(cfg: dict[str, Any], flags: Sequence[str]) -> list[str]:
    """The ``flags`` (train.py's) whose values differ from train.py's defaults but are not
    those recorded in a model's ``cfg``: ``["name: recipe value != model value", ...]``."""
    parser = train.build_parser()
    defaults = vars(parser.parse_args([]))
    wanted = vars(parser.parse_args(list(flags)))
    return [f"{name}: {value!r} != {cfg.get(name)!r}" for name, value in wanted.items()
            if value != defaults[name] and cfg.get(name) != value]


def given_run(model: Path, flags: list[str]) -> dict[str, Any]:
    """The record of a model already trained with ``flags`` (the default strategy's recipe).

    Raises:
        ValueError: its cfg_args disagree with ``flags`` or name another strategy.
    """
    cfg = read_cfg_args(model / CFG_ARGS)
    wrong = recipe_mismatches(cfg, flags)
    if cfg.get("strategy", "default") != "default":
        wrong.append(f"strategy: 'default' != {cfg['strategy']!r}")
    if wrong:
        raise ValueError(f"{model} was not trained with the recipe: {'; '.join(wrong)}")
    events = EventAccumulator(str(model)).Reload().Scalars("total_points")
    iteration = searchForMaxIteration(point_cloud_dir(model))
    return {"flags": flags, "model": str(model),
            "train_seconds": round(events[-1].wall_time - events[0].wall_time, 1),
            "gaussians": ply_vertex_count(point_cloud_path(model, iteration))}


def train_run(work: Path, name: str, source: Path, flags: list[str], log: Path
              ) -> dict[str, Any]:
    """Train one model into ``work/name``; its record. A train.json of the same flags is
    reused (resume), one of other flags is retrained."""
    record_path = work / name / "train.json"
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if record["flags"] == flags:
            return record
    model = work / name
    if model.exists():
        shutil.rmtree(model)
    logger.info("training %s: %s", name, " ".join(flags))
    seconds, _ = run_logged(["train.py", "-s", source, "-m", model, "--eval", "--quiet",
                             "--skip_compress", *flags], log)
    iteration = searchForMaxIteration(point_cloud_dir(model))
    record = {"flags": flags, "train_seconds": round(seconds, 1),
              "gaussians": ply_vertex_count(point_cloud_path(model, iteration))}
    record_path.write_text(json.dumps(record, indent=1))
    return record


def measure_run(work: Path, name: str, model: Path, peers: bool, finetune_iterations: int,
                log: Path) -> dict[str, Any]:
    """bench_peers.py on ``model`` (compact, plus SPZ and SOG when ``peers``), kept as
    ``work/name/peers.json``."""
    record_path = work / name / "peers.json"
    if record_path.is_file():
        return json.loads(record_path.read_text())
    out = work / f"{name}_codecs"
    if out.exists():
        shutil.rmtree(out)
    skip = ["seed", "official"] + ([] if peers else ["spz", "sog"])
    logger.info("measuring %s (skip %s)", name, " ".join(skip))
    _, stdout = run_logged(["benchmarks/bench_peers.py", model, "-o", out, "--quiet",
                            "--finetune_iterations", finetune_iterations, "--skip", *skip], log)
    record = json.loads(stdout)["codecs"]
    record_path.parent.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record, indent=1))
    return record


def summarize(name: str, trained: dict[str, Any], codecs: dict[str, Any]) -> dict[str, Any]:
    """One run's row: training, uncompressed and per-codec bytes / PSNR."""
    return {"run": name, "train_seconds": trained["train_seconds"],
            "gaussians": trained["gaussians"], "flags": " ".join(trained["flags"]),
            "psnr": codecs["uncompressed"]["psnr"], "ply_bytes": codecs["uncompressed"]["bytes"],
            **{codec: {"bytes": row["bytes"], "psnr": row["psnr"]}
               for codec, row in codecs.items() if codec != "uncompressed"}}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scene", help=f"a scene folder named one of {', '.join(RECIPES)}, or "
                                      "that name (looked up in ../shared/data)")
    parser.add_argument("-o", "--output", default=None,
                        help="work folder (default output/bench_e2e/<scene>); reused to resume")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.5, 0.25, 0.125],
                        help="MCMC budgets as fractions of the default's final count")
    parser.add_argument("--default_model", default=None,
                        help="(a): a model folder already trained with the recipe's default "
                             "strategy (read only) instead of training it")
    parser.add_argument("--finetune_iterations", type=int, default=500,
                        help="compact finetune steps (500)")
    parser.add_argument("--skip_peers", action="store_true", help="no SPZ / SOG for (a)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(message)s")
    source = Path(args.scene)
    if not source.is_dir():
        source = REPO.parent / "shared" / "data" / args.scene
    if not source.is_dir() or source.name not in RECIPES:
        raise ValueError(f"{args.scene}: not a scene folder named one of {', '.join(RECIPES)}")
    if any(not 0.0 < f <= 1.0 for f in args.fractions):
        raise ValueError(f"--fractions must be in (0, 1], got {args.fractions}")
    recipe = RECIPES[source.name]
    work = Path(args.output or REPO / "output" / "bench_e2e" / source.name)
    work.mkdir(parents=True, exist_ok=True)
    log = work / "bench.log"
    common = recipe["scene"] + recipe["schedule"]
    mcmc_common = recipe["scene"] + recipe.get("mcmc_schedule", recipe["schedule"])
    rows = []
    if args.default_model:
        default_model = Path(args.default_model)
        default = given_run(default_model, common + recipe["default"])
    else:
        default_model = work / "default"
        default = train_run(work, "default", source, common + recipe["default"], log)
    rows.append(summarize("default", default,
                          measure_run(work, "default", default_model, not args.skip_peers,
                                      args.finetune_iterations, log)))
    start = ply_vertex_count(default_model / "input.ply")
    steps = (_flag(recipe["mcmc"], "--refine_stop_iter") - 1
             - _flag(recipe["mcmc"], "--refine_start_iter")) // _flag(recipe["mcmc"],
                                                                      "--refine_every")
    for fraction in args.fractions:
        cap = max(1, round(fraction * default["gaussians"]))
        needed = refine_steps_to_cap(start, cap)
        if needed > steps:
            raise ValueError(f"cap {cap}: {needed} refinements needed from {start} points, "
                             f"the recipe has {steps}")
        name = f"mcmc_{fraction:g}"
        trained = train_run(work, name, source, mcmc_common + recipe["mcmc"] + [
            "--strategy", "mcmc", "--cap_max", str(cap)], log)
        row = summarize(name, trained, measure_run(work, name, work / name, False,
                                                   args.finetune_iterations, log))
        row.update(cap_max=cap, refinements_to_cap=needed, refinements=steps)
        rows.append(row)
    base = rows[0]["compact"]
    for row in rows[1:]:
        ratio = row["compact"]["bytes"] / base["bytes"]
        drop = base["psnr"] - row["compact"]["psnr"]
        row["goal"] = {"bytes_ratio": round(ratio, 4), "psnr_below_db": round(drop, 3),
                       "met": ratio <= BYTES_GOAL and drop <= PSNR_MARGIN_DB,
                       "train_seconds_ratio": round(row["train_seconds"]
                                                    / rows[0]["train_seconds"], 3)}
    print(json.dumps({"scene": str(source), "initial_points": start,
                      "finetune_iterations": args.finetune_iterations, "runs": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "bench_end_to_end.py", sys.argv[1:]))
