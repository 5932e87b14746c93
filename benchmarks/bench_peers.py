"""Our layouts against SPZ and SOG on one trained model: one JSON table of size, rate and quality.

    python benchmarks/bench_peers.py <model folder | model.ply> [-s <scene>] [-r R] [-w]
        [-o <work folder>] [--finetune_iterations 500] [--layout_flags LAYOUT="FLAGS" ...]
        [--skip sog official ...] [--ring] [--ring_views 8] [--ring_size 256]
        [--lpips_weights W] [--seed 0] [--quiet]

The input is a trained model folder (its latest ``point_cloud/iteration_<N>/point_cloud.ply``
and the scene named by its cfg_args, or ``-s``) or a bare 3DGS PLY. Everything is written into
a work folder (``-o``, new or empty; default a new temporary folder), never into the model
folder; the work folder is itself a model folder (``scripts/make_report.py -m`` reports it).

Every codec gets the same treatment:

* SPZ and SOG (``training.peers.PEER_CODECS``): the PLY written by PlayCanvas's
  ``splat-transform`` (``utils/splat_transform.py``; SOG with ``-g cpu``), read back to a PLY by
  the same tool, rendered like render.py renders; encode / decode seconds are the tool's wall
  time (Node.js start included).
* each layout of ``compression.layouts.LAYOUTS``: ``train.py --given_ply_path <PLY> --layout
  <layout> --finetune_iterations <F>`` (plus that layout's ``--layout_flags``), then ``render.py
  --dec_npz``; encode / decode seconds are the codec's own (report.json: writing the bitstream
  from the finetuned state, reading and decoding it), ``command_seconds`` the whole train.py run
  (loading, importance, pruning, voxelization, VQ, finetune, evaluation, save).
* scores: metrics.py on the rendered PNGs. With a scene: the held-out test views (the
  uncompressed model is rendered by render.py too, and ΔPSNR is against it). Without a scene
  (a bare PLY, or ``--ring``): the fidelity measure, PSNR of the decoded model's renders against
  the uncompressed model's renders from a ring of cameras around it (``scene.camera_ring``);
  without a scene the layouts run without finetune.

Rates: ``bytes`` is the size of the file the decoder reads (the .spz, the .sog bundle, the
layout's bitstream file, the PLY), ``bits_per_input_gaussian`` is 8 · bytes over the model's
Gaussians (whatever a codec prunes or merges). Prints one JSON object; the per-codec rows are
under ``codecs``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from arguments import (ModelParams, PipelineParams, extract, read_cfg_args,  # noqa: E402
                       write_cfg_args)
from compression.layouts import LAYOUTS  # noqa: E402
from gaussian_renderer import render  # noqa: E402
from scene import Scene  # noqa: E402
from scene.camera_ring import ring_cameras  # noqa: E402
from scene.gaussian_model import GaussianModel  # noqa: E402
from scene.ply import read_ply  # noqa: E402
from sweep import train_flags  # noqa: E402
from sweeps.steps import error_line  # noqa: E402
from training.compress import load_for_rendering  # noqa: E402
from training.peers import PEER_CODECS, run_peer  # noqa: E402
from utils.cli import run_main  # noqa: E402
from utils.output_paths import (CFG_ARGS, PEER_JSON, REPORT_JSON, RESULTS_JSON,  # noqa: E402
                                TEST_SPLIT, UNCOMPRESSED_METHOD, compressed_method,
                                iteration_dir, layout_dir, peer_dir, peer_method,
                                point_cloud_dir, point_cloud_path, render_dir, render_name)
from utils.render_utils import default_device, render_views  # noqa: E402
from utils.result_files import read_json, read_peer_report, read_report  # noqa: E402
from utils.sh_utils import sh_degree_of  # noqa: E402
from utils.system_utils import searchForMaxIteration  # noqa: E402

logger = logging.getLogger("bench_peers")
LOG_NAME = "bench.log"


@dataclass(frozen=True)
class BenchInput:
    """The model measured and how its quality is measured.

    Attributes:
        ply: its standard 3DGS PLY.
        iteration: the training iteration of the PLY (0 for a bare PLY).
        gaussians: its number of Gaussians (the denominator of every rate).
        sh_degree: its SH degree.
        scene: ModelParams values of its scene (test views), or None: the camera ring.
    """

    ply: Path
    iteration: int
    gaussians: int
    sh_degree: int
    scene: Optional[dict[str, Any]]


@dataclass(frozen=True)
class LayoutRun:
    """One layout's train.py run: its finetune iterations and wall seconds."""

    layout: str
    finetune_iterations: int
    command_seconds: float


# ------------------------------------------------------------------------------ input

def resolve_input(model: Path, source_path: Optional[str], resolution: Optional[int],
                  white_background: bool, ring: bool) -> BenchInput:
    """The PLY of ``model`` (a model folder or a PLY) and the scene that measures it.

    The scene is ``source_path``, else the model folder's cfg_args scene; scene flags come from
    cfg_args, then from ``resolution`` / ``white_background`` when given. ``ring`` (or no
    scene at all) selects the camera ring.

    Raises:
        FileNotFoundError: no such model, PLY or scene folder.
        ValueError: an unreadable PLY or cfg_args.
    """
    cfg: dict[str, Any] = {}
    if model.is_dir():
        iteration = searchForMaxIteration(point_cloud_dir(model))
        ply = point_cloud_path(model, iteration)
        if (model / CFG_ARGS).is_file():
            cfg = read_cfg_args(model / CFG_ARGS)
    elif model.is_file():
        ply, iteration = model, 0
    else:
        raise FileNotFoundError(f"{model}: no such model folder or PLY")
    arrays = read_ply(ply)
    sh_degree = sh_degree_of(arrays["f_rest"].shape[1] + 1)
    scene = None
    source = source_path or cfg.get("source_path")
    if source and not ring:
        if not Path(source).is_dir():
            raise FileNotFoundError(f"{source}: scene folder not found (give -s <scene>, or "
                                    f"--ring to measure {ply} without a scene)")
        fields = {f.name for f in dataclasses.fields(ModelParams)}
        scene = {**dataclasses.asdict(ModelParams()),
                 **{k: v for k, v in cfg.items() if k in fields},
                 "source_path": str(Path(source).resolve()), "eval": True,
                 "sh_degree": sh_degree}
        if resolution is not None:
            scene["resolution"] = resolution
        if white_background:
            scene["white_background"] = True
    return BenchInput(ply.resolve(), iteration, len(arrays["xyz"]), sh_degree, scene)


def work_folder(output: Optional[str]) -> Path:
    """``output`` (created; it must be new or empty) or a new temporary folder.

    Raises:
        ValueError: ``output`` holds files already.
    """
    if output is None:
        return Path(tempfile.mkdtemp(prefix="bench_peers_"))
    folder = Path(output)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ValueError(f"{folder}: the work folder must be new or empty")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def layout_commands(layout_flags: Sequence[str]) -> dict[str, list[str]]:
    """``LAYOUT=FLAGS`` items as {layout: train.py tokens}, each checked by train.py's parser.

    Raises:
        ValueError: an unknown layout, a malformed item or a flag train.py does not know.
    """
    commands: dict[str, list[str]] = {}
    for item in layout_flags:
        layout, sep, flags = item.partition("=")
        if not sep or layout not in LAYOUTS:
            raise ValueError(f"--layout_flags {item!r}: expected LAYOUT=FLAGS with LAYOUT one "
                             f"of {', '.join(LAYOUTS)}")
        tokens = shlex.split(flags)
        try:
            train_flags(tokens)
        except ValueError as exc:
            raise ValueError(f"--layout_flags {item!r}: {exc}") from None
        commands[layout] = commands.get(layout, []) + tokens
    return commands


# ------------------------------------------------------------------------------ running

def run_script(script: str, arguments: Sequence[str], work: Path) -> float:
    """Run one of the project's scripts with this interpreter, output appended to the work
    folder's log; returns its wall seconds.

    Raises:
        ValueError: the script failed: ``<script> exited with status <n>: <its error line>``.
    """
    log = work / LOG_NAME
    with log.open("a") as out:
        out.write(f"$ {shlex.join([script, *map(str, arguments)])}\n")
        out.flush()
        start = time.perf_counter()
        status = subprocess.run([sys.executable, str(REPO / script), *map(str, arguments)],
                                cwd=REPO, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT).returncode
    if status != 0:
        raise ValueError(f"{script} exited with status {status}: {error_line(log)} "
                         f"(log: {log})")
    return time.perf_counter() - start


def scene_flags(scene: dict[str, Any]) -> list[str]:
    """train.py flags naming the scene and how its images are read."""
    flags = ["-s", scene["source_path"], "-i", scene["images"], "-r", str(scene["resolution"]),
             "--sh_degree", str(scene["sh_degree"]), "--num_random_points",
             str(scene["num_random_points"]), "--eval"]
    return flags + (["-w"] if scene["white_background"] else [])


def train_layout(bench: BenchInput, work: Path, layout: str, extra: Sequence[str],
                 finetune_iterations: int, seed: int) -> LayoutRun:
    """``train.py --given_ply_path`` with ``layout`` into ``work`` (finetuned with a scene)."""
    iterations = train_flags(extra).get("finetune_iterations", finetune_iterations) \
        if bench.scene is not None else 0
    scene = scene_flags(bench.scene) if bench.scene is not None else \
        ["--sh_degree", str(bench.sh_degree)]
    seconds = run_script("train.py", [
        *scene, "-m", work, "--given_ply_path", bench.ply, "--layout", layout,
        "--finetune_iterations", iterations, "--finetune_test_iterations", iterations,
        "--seed", seed, "--quiet", *extra], work)
    return LayoutRun(layout, iterations, seconds)


def measure_on_scene(bench: BenchInput, work: Path, codecs: Sequence[str],
                     layouts: dict[str, list[str]], finetune_iterations: int, seed: int,
                     quiet: bool) -> list[LayoutRun]:
    """Render and compress on the scene's test views (module docstring); metrics.py follows."""
    write_cfg_args(work, {**bench.scene, "model_path": str(work)})
    link = point_cloud_path(work, bench.iteration)
    link.parent.mkdir(parents=True)
    link.symlink_to(bench.ply)
    run_script("render.py", ["-m", work, "--skip_train", "--quiet"], work)
    dataset = extract(ModelParams, {**bench.scene, "model_path": str(work)})
    device = default_device()
    views = [view.to(device) for view in Scene(dataset, None, shuffle=False).getTestCameras()]
    background = torch.full((3,), float(dataset.white_background), device=device)
    for codec in codecs:
        run_peer(work, codec, bench.ply, views, sh_degree=bench.sh_degree,
                 pipe=PipelineParams(), background=background, quiet=quiet)
    runs = []
    for layout, extra in layouts.items():
        runs.append(train_layout(bench, work, layout, extra, finetune_iterations, seed))
        run_script("render.py", ["-m", work, "--skip_train", "--dec_npz", "--layout", layout,
                                 "--quiet"], work)
    return runs


def measure_on_ring(bench: BenchInput, work: Path, codecs: Sequence[str],
                    layouts: dict[str, list[str]], views: int, size: int, seed: int,
                    quiet: bool) -> list[LayoutRun]:
    """Render every decoded model from the camera ring, the uncompressed renders as reference."""
    device = default_device()
    pipe, background = PipelineParams(), torch.zeros(3, device=device)
    model = GaussianModel(bench.sh_degree)
    model.load_ply(bench.ply)
    model.to(device)
    ring = ring_cameras(model.get_xyz, count=views, size=size, device=device)
    with torch.no_grad():
        references = [render(view, model, pipe, background)["render"].clamp(0.0, 1.0)
                      for view in ring]
    ring = ring_cameras(model.get_xyz, count=views, size=size, images=references, device=device)
    for codec in codecs:
        run_peer(work, codec, bench.ply, ring, sh_degree=bench.sh_degree, pipe=pipe,
                 background=background, quiet=quiet)
    runs = []
    for layout, extra in layouts.items():
        runs.append(train_layout(bench, work, layout, extra, 0, seed))
        decoded, method, suffix, _ = load_for_rendering(
            given_path=None, dec_npz=True, layout=layout, iteration=-1, model_path=str(work),
            sh_degree=bench.sh_degree, device=device)
        render_views(ring, lambda view: render(view, decoded, pipe, background)["render"],
                     render_dir(work, TEST_SPLIT, render_name(method, suffix)), quiet=quiet)
    return runs


# ------------------------------------------------------------------------------ the table

def _scores(results: dict[str, Any], method: str, reference: Optional[float]
            ) -> dict[str, Any]:
    """metrics.py's PSNR / SSIM (/ LPIPS) of ``method`` and its PSNR change."""
    if method not in results:
        raise ValueError(f"results.json has no entry for {method} (metrics.py did not score it)")
    entry = results[method]
    scores = {"psnr": entry["PSNR"], "ssim": entry["SSIM"]}
    if "LPIPS" in entry:
        scores["lpips"] = entry["LPIPS"]
    if reference is not None:
        scores["delta_psnr"] = entry["PSNR"] - reference
    return scores


def build_table(work: Path, bench: BenchInput, codecs: Sequence[str],
                runs: Sequence[LayoutRun]) -> dict[str, dict[str, Any]]:
    """One row per codec (uncompressed first) from what the runs wrote into ``work``:
    metrics.py's results.json, each peer.json and each layout's report.json (whose
    ``bits_per_input_gaussian`` count the bits over the Gaussians of the PLY they encoded).

    Raises:
        FileNotFoundError, ValueError: a missing or incomplete result file.
    """
    results = read_json(work / RESULTS_JSON)
    ply_bytes = bench.ply.stat().st_size
    rows: dict[str, dict[str, Any]] = {"uncompressed": {
        "bytes": ply_bytes, "bits_per_input_gaussian": 8.0 * ply_bytes / bench.gaussians}}
    reference = None
    if bench.scene is not None:
        plain = _scores(results, render_name(UNCOMPRESSED_METHOD, bench.iteration), None)
        reference = plain["psnr"]
        rows["uncompressed"].update(plain, delta_psnr=0.0)
    rows["uncompressed"].update(encode_seconds=None, decode_seconds=None)
    for codec in codecs:
        peer = read_peer_report(peer_dir(work, codec) / PEER_JSON)
        rows[codec] = {"bytes": peer["size_bytes"],
                       "bits_per_input_gaussian": peer["bits_per_input_gaussian"],
                       **_scores(results, peer_method(codec), reference),
                       "encode_seconds": peer["encode_seconds"],
                       "decode_seconds": peer["decode_seconds"],
                       "decoded_gaussians": peer["num_gaussians"], "tool": peer["tool"]}
    for run in runs:
        k = searchForMaxIteration(layout_dir(work, run.layout))
        report = read_report(iteration_dir(work, run.layout, k) / REPORT_JSON)
        rows[run.layout] = {
            "bytes": report["size_bytes"],
            "bits_per_input_gaussian": report["bits_per_input_gaussian"],
            **_scores(results, render_name(compressed_method(run.layout), k), reference),
            "encode_seconds": report["encode_seconds"],
            "decode_seconds": report["decode_seconds"],
            "coded_gaussians": report["num_gaussians"], "finetune_iterations": k,
            "finetune_seconds": report["finetune_seconds"],
            "command_seconds": run.command_seconds,
            "file": LAYOUTS[run.layout].codec.container.file_name}
    return rows


# ------------------------------------------------------------------------------ main

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="trained model folder, or a 3DGS PLY")
    parser.add_argument("-s", "--source_path", default=None,
                        help="scene of the test views (default: the model's cfg_args)")
    parser.add_argument("-r", "--resolution", type=int, default=None,
                        help="train.py's -r for the scene (default: the model's cfg_args)")
    parser.add_argument("-w", "--white_background", action="store_true",
                        help="white background (default: the model's cfg_args)")
    parser.add_argument("-o", "--output", default=None,
                        help="work folder, new or empty (default: a new temporary folder)")
    parser.add_argument("--finetune_iterations", type=int, default=500,
                        help="finetune steps of every layout with a scene (default: 500)")
    parser.add_argument("--layout_flags", action="append", default=[], metavar="LAYOUT=FLAGS",
                        help="extra train.py flags of one layout, e.g. "
                             "official=\"--codebook_size 256\" (repeatable)")
    parser.add_argument("--skip", nargs="+", default=[], choices=(*PEER_CODECS, *LAYOUTS),
                        help="codecs or layouts not to run (SOG is slow on a CPU)")
    parser.add_argument("--ring", action="store_true",
                        help="measure fidelity on the camera ring even with a scene")
    parser.add_argument("--ring_views", type=int, default=8, help="cameras of the ring (8)")
    parser.add_argument("--ring_size", type=int, default=256, help="ring image size (256 px)")
    parser.add_argument("--lpips_weights", default=None, help="LPIPS weights for metrics.py")
    parser.add_argument("--seed", type=int, default=0, help="train.py's --seed (0)")
    parser.add_argument("--quiet", action="store_true", help="no progress or log lines")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(message)s")
    if args.finetune_iterations < 0:
        raise ValueError(f"--finetune_iterations must be >= 0, got {args.finetune_iterations}")
    extra = layout_commands(args.layout_flags)
    bench = resolve_input(Path(args.model), args.source_path, args.resolution,
                          args.white_background, args.ring)
    codecs = [codec for codec in PEER_CODECS if codec not in args.skip]
    layouts = {layout: extra.get(layout, []) for layout in LAYOUTS if layout not in args.skip}
    work = work_folder(args.output)
    logger.info("bench_peers: %s (%d Gaussians) in %s", bench.ply, bench.gaussians, work)
    if bench.scene is not None:
        runs = measure_on_scene(bench, work, codecs, layouts, args.finetune_iterations,
                                args.seed, args.quiet)
    else:
        runs = measure_on_ring(bench, work, codecs, layouts, args.ring_views, args.ring_size,
                               args.seed, args.quiet)
    run_script("metrics.py", ["-m", work, "--quiet", *(["--lpips_weights", args.lpips_weights]
                                                       if args.lpips_weights else [])], work)
    fidelity = ({"measure": "test views against their photographs",
                 "scene": bench.scene["source_path"], "resolution": bench.scene["resolution"]}
                if bench.scene is not None else
                {"measure": "camera ring against the uncompressed model's renders",
                 "views": args.ring_views, "size": args.ring_size})
    print(json.dumps({
        "model": {"ply": str(bench.ply), "gaussians": bench.gaussians,
                  "sh_degree": bench.sh_degree, "ply_bytes": bench.ply.stat().st_size},
        "fidelity": fidelity,
        "finetune_iterations": args.finetune_iterations if bench.scene is not None else 0,
        "layout_flags": {layout: shlex.join(flags) for layout, flags in layouts.items()},
        "seed": args.seed, "codecs": build_table(work, bench, codecs, runs),
        "work_folder": str(work)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "bench_peers.py", sys.argv[1:]))
