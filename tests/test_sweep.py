"""sweep.py end to end on local Ray (2 CPUs) and serially, plus its planning and tables.

The end-to-end sweep: the bundled sample, the shared statuette scene and a corrupt scene, two
grid settings, a tiny schedule. It is interrupted (SIGINT) after its first finished job, run
again to completion (the finished job is skipped), and a third time (everything skipped).
"""
from __future__ import annotations

import ast
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from statistics import fmean

import pytest

import render as render_cli
import sweep as sweep_cli
from arguments import read_cfg_args
from compression.layouts import LAYOUTS, PAPER_LAYOUT
from scene.formats import ply_vertex_count
from sweeps.engine import _sigint_flag
from sweeps.plan import (build_plan, config_settings, find_scenes, flag_tokens, grid_settings,
                         split_grid, training_points, with_training_points)
from sweeps.published import DATASETS, PUBLISHED
from sweeps.engine import Executor
from sweeps.steps import JobResult, run_scene
from sweeps.table import COLUMNS, PAPER_METHOD, dataset_averages
from utils.cli import run_main
from utils.splat_transform import splat_transform_available
from utils.output_paths import (CFG_ARGS, REPORT_JSON, RESULTS_JSON, SWEEP_AVERAGES_MD,
                                SWEEP_CSV, SWEEP_HTML, SWEEP_STEP_JSON, iteration_dir,
                                point_cloud_path, sweep_scene_dir)

REPO = Path(__file__).resolve().parents[1]
PUBLISHED_MD = REPO.parent / "shared" / "docs" / "PUBLISHED.md"
TINY = ["-r", "32", "--eval", "--sh_degree", "1", "--backend", "torch",
        "--num_random_points", "300", "--iterations", "60", "--sh_increase_interval", "20",
        "--test_iterations", "60", "--save_iterations", "60", "--vq_steps", "10",
        "--finetune_iterations", "5", "--finetune_test_iterations", "5"]
GRID = ["--grid", "n_block=8,16"]


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore"}
    env.pop("LPIPS_WEIGHTS", None)
    return env


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / SWEEP_CSV).open(newline="") as handle:
        return list(csv.DictReader(handle))


def _our_processes(out: Path) -> list[str]:
    """Command lines of live processes that mention the sweep folder (its steps)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(out) in cmdline and "sweep.py" not in cmdline:
                found.append(cmdline)
    return found


@pytest.fixture(scope="module")
def sweep_runs(sample_scene: Path, shared_data: Path, tmp_path_factory: pytest.TempPathFactory
               ) -> dict:
    """Three runs of one sweep (interrupted, resumed, repeated) and what each left behind."""
    root = tmp_path_factory.mktemp("sweep")
    corrupt = root / "scenes" / "corrupt"
    corrupt.mkdir(parents=True)
    (corrupt / "transforms_train.json").write_text("{ not json")
    out = root / "out"
    command = [sys.executable, str(REPO / "sweep.py"), "--scenes", str(sample_scene),
               str(shared_data / "statuette"), str(corrupt), *GRID, "-o", str(out),
               "--num_cpus", "2", "--quiet", "--codebook_size", "64", *TINY]
    runs: dict = {"out": out, "corrupt": corrupt}

    first = subprocess.Popen(command, cwd=root, env=_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and first.poll() is None:
        if (out / SWEEP_CSV).is_file() and any(r["status"] == "ok" for r in _rows(out)):
            break
        time.sleep(0.2)
    # the interrupt must land while jobs still run (else the test measures nothing)
    assert first.poll() is None, "the sweep finished before the interrupt could be sent"
    first.send_signal(signal.SIGINT)
    output, _ = first.communicate(timeout=120)
    time.sleep(2)  # Ray's shutdown reaps its workers
    runs["interrupted"] = {"returncode": first.returncode, "output": output,
                           "rows": _rows(out), "left": _our_processes(out),
                           "records": sorted(p.parent for p in out.rglob(SWEEP_STEP_JSON)),
                           "temporaries": list(out.rglob(".*.tmp*"))}
    for name in ("resumed", "repeated"):
        done = subprocess.run(command, cwd=root, env=_env(), capture_output=True, text=True,
                              timeout=900)
        runs[name] = {"returncode": done.returncode, "stderr": done.stderr, "rows": _rows(out),
                      "record_times": {p: p.stat().st_mtime_ns for p in out.rglob(SWEEP_STEP_JSON)}}
    return runs


@pytest.mark.slow
def test_interrupt_leaves_only_finished_results(sweep_runs: dict) -> None:
    run = sweep_runs["interrupted"]
    out = sweep_runs["out"]
    assert run["returncode"] == 130, run["output"][-2000:]
    assert "sweep.py: interrupted" in run["output"]
    assert run["left"] == [] and run["temporaries"] == []
    ok_rows = [r for r in run["rows"] if r["status"] == "ok"]
    assert 1 <= len(ok_rows) < 4
    # a finished job has its record; the interrupted ones have none (they run again)
    assert {out / r["folder"] for r in ok_rows} <= set(run["records"])
    assert len([p for p in run["records"] if p.name != "trained"]) < 6


def test_sigint_inside_the_ray_loop_sets_a_flag() -> None:
    """While the sweep waits on Ray, SIGINT only sets the loop's flag (Ray cannot swallow it);
    the previous handler comes back after the block."""
    before = signal.getsignal(signal.SIGINT)
    with _sigint_flag() as interrupted:
        assert not interrupted.is_set()
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 5
        while not interrupted.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert interrupted.is_set()
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.slow
def test_every_row_of_the_completed_sweep(sweep_runs: dict) -> None:
    run = sweep_runs["resumed"]
    out = sweep_runs["out"]
    assert run["returncode"] == 1  # the corrupt scene's jobs failed
    rows = run["rows"]
    assert list(rows[0]) == list(COLUMNS)
    assert [(r["scene"], r["setting"], r["layout"]) for r in rows] == [
        (scene, setting, PAPER_LAYOUT) for scene in ("lego_sample", "statuette", "corrupt")
        for setting in ("n_block=8", "n_block=16")]
    recorded = set(sweep_runs["interrupted"]["records"])
    for row in rows[:4]:
        # jobs finished before the interrupt are skipped, the others ran now
        folder = out / row["folder"]
        assert row["status"] == ("skipped" if folder in recorded else "ok"), row
        saved = iteration_dir(folder, PAPER_LAYOUT, 5)
        report = json.loads((saved / REPORT_JSON).read_text())
        metrics = json.loads((folder / RESULTS_JSON).read_text())[
            f"compressed_{PAPER_LAYOUT}_5"]
        bitstream = saved / LAYOUTS[PAPER_LAYOUT].codec.container.file_name
        ply = point_cloud_path(sweep_scene_dir(out, row["scene"]), 60)
        assert report["settings"]["n_block"] == int(row["setting"].split("=")[1])
        assert report["settings"]["layout"] == PAPER_LAYOUT
        assert int(row["size_bytes"]) == bitstream.stat().st_size == report["size_bytes"]
        assert int(row["num_gaussians"]) == report["num_gaussians"]
        assert int(row["input_gaussians"]) == ply_vertex_count(ply) > report["num_gaussians"]
        assert float(row["bits_per_gaussian"]) == pytest.approx(
            8 * int(row["size_bytes"]) / int(row["num_gaussians"]), rel=1e-5)
        assert float(row["psnr"]) == pytest.approx(metrics["PSNR"], rel=1e-5)
        assert float(row["ssim"]) == pytest.approx(metrics["SSIM"], rel=1e-5)
        assert row["lpips"] == "" and row["error"] == ""
        assert int(row["finetune_iterations"]) == 5
        assert float(row["finetune_seconds"]) > 0
        assert float(row["encode_seconds"]) > 0 and float(row["decode_seconds"]) > 0
        assert float(row["job_seconds"]) > float(row["finetune_seconds"])
        commands = [line.split()[1] for line in (out / row["log"]).read_text().splitlines()
                    if line.startswith("$ ")]
        assert commands == ["train.py", "render.py", "metrics.py"]
    for row in rows[4:]:
        assert row["status"] == "failed" and row["psnr"] == "" and row["size_bytes"] == ""
        assert row["error"].startswith("scene step failed: train.py exited with status 2: "
                                       "train.py: error:"), row["error"]
        assert "transforms_train.json" in row["error"]
        assert row["log"] == "corrupt/trained/scene.log" and (out / row["log"]).is_file()
    assert f"sweep.py: job corrupt/{PAPER_LAYOUT}/n_block=8 failed" in run["stderr"]


@pytest.mark.slow
def test_rerun_skips_every_finished_job(sweep_runs: dict) -> None:
    resumed, repeated = sweep_runs["resumed"], sweep_runs["repeated"]
    assert repeated["returncode"] == 1
    for before, after in zip(resumed["rows"], repeated["rows"]):
        if before["status"] == "failed":
            assert after["status"] == "failed" and after["error"] == before["error"]
            continue
        assert after["status"] == "skipped"
        assert {k: v for k, v in after.items() if k != "status"} == \
            {k: v for k, v in before.items() if k != "status"}
    # nothing of the finished scenes and jobs ran again
    for path, mtime in resumed["record_times"].items():
        if "corrupt" not in path.parts:
            assert repeated["record_times"][path] == mtime, path


@pytest.mark.slow
def test_averages_and_html(sweep_runs: dict) -> None:
    out = sweep_runs["out"]
    rows = [r for r in sweep_runs["repeated"]["rows"] if r["status"] != "failed"]
    averages = (out / SWEEP_AVERAGES_MD).read_text()
    for setting in ("n_block=8", "n_block=16"):
        psnr = fmean(float(r["psnr"]) for r in rows if r["setting"] == setting)
        dataset = rows[0]["dataset"]
        assert f"| {dataset} | {setting} | ours ({PAPER_LAYOUT}) | 2 | {psnr:.2f} |" in averages
    assert f"| {PAPER_METHOD} |" not in averages  # no scene of the paper in this sweep
    page = (out / SWEEP_HTML).read_text()
    plots = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,', page)
    assert plots == ["aggregate rate-distortion plot", "rate-distortion plot of lego_sample",
                     "rate-distortion plot of statuette"]
    assert "<h2>Failed jobs</h2>" in page and "corrupt/trained/scene.log" in page


@pytest.mark.slow
def test_paper_configs_serially_on_a_given_ply(sweep_runs: dict, sample_scene: Path,
                                               shared_data: Path, lpips_weights: Path,
                                               tmp_path: Path) -> None:
    """--configs on scenes named like the paper's: per-scene values reach every layout, LPIPS
    is measured with weights, the averages sit beside the published numbers, and a scene the
    paper lacks fails alone. --threads, not --cpus_per_job, is what each step's train.py runs
    on (its cfg_args records the count)."""
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    (scenes / "lego").symlink_to(sample_scene)
    (scenes / "statuette").symlink_to(shared_data / "statuette")
    trained = point_cloud_path(sweep_scene_dir(sweep_runs["out"], "lego_sample"), 60)
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, str(REPO / "sweep.py"), "--scenes", str(scenes), "--configs", "c1",
         "--layouts", "seed", "official", "-o", str(out), "--serial", "--quiet",
         "--cpus_per_job", "2", "--threads", "1", "--given_ply_pattern", str(trained),
         "--lpips_weights", str(lpips_weights), *TINY],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 1, done.stderr[-2000:]
    rows = _rows(out)
    assert [(r["scene"], r["layout"], r["status"]) for r in rows] == [
        ("lego", "seed", "ok"), ("lego", "official", "ok"),
        ("statuette", "seed", "failed"), ("statuette", "official", "failed")]
    for row in rows[:2]:
        settings = json.loads((iteration_dir(out / row["folder"], row["layout"], 5)
                               / REPORT_JSON).read_text())["settings"]
        metrics = json.loads((out / row["folder"] / RESULTS_JSON).read_text())
        assert float(row["lpips"]) == pytest.approx(
            metrics[f"compressed_{row['layout']}_5"]["LPIPS"], rel=1e-5)
        assert (settings["layout"], settings["percent"], settings["n_block"],
                settings["depth"], settings["imp_beta"]) == (row["layout"], 0.1, 66, 14, 0.05)
        assert row["dataset"] == "SyntheticNeRF"
        assert read_cfg_args(out / row["folder"] / CFG_ARGS)["threads"] == 1
    assert "unknown scene 'statuette'" in rows[2]["error"]
    assert not (out / "statuette").exists()  # no step ran for it
    paper = PUBLISHED[("lego", "c1")]
    averages = (out / SWEEP_AVERAGES_MD).read_text()
    assert (f"| SyntheticNeRF | c1 | {PAPER_METHOD} | 1 | {paper.psnr:.2f} | {paper.ssim:.4f} | "
            f"{paper.lpips:.4f} | {paper.size_bytes / 1e6:.3f} |") in averages


@pytest.mark.slow
@pytest.mark.skipif(not splat_transform_available(), reason="splat-transform needs Node.js")
def test_scene_step_takes_another_tools_format(sweep_runs: dict, sample_scene: Path,
                                               tmp_path: Path) -> None:
    """--given_ply_pattern may name any file train.py --given_ply_path reads: the scene step
    of an .spz scores it (render.py's ours_given), sizes the file itself and counts the
    Gaussians of the PLY it converts to."""
    trained = point_cloud_path(sweep_scene_dir(sweep_runs["out"], "lego_sample"), 60)
    spz = tmp_path / "lego_sample.spz"
    render_cli.main(["--given_ply_path", str(trained), "--export", str(spz), "--quiet"])
    # SH degree 3: splat-transform writes the degree-1 model's .spz with degree-3 coefficients
    plan = build_plan(find_scenes([sample_scene]), grid_settings(["n_block=8"]), [PAPER_LAYOUT],
                      tmp_path / "out", {"eval": True, "resolution": 32, "backend": "torch"},
                      given_ply_pattern=str(tmp_path / "<scene>.spz"))
    result = run_scene(plan.scenes[0], threads=1)
    assert result.status == "ok", result.error
    scores = json.loads((plan.scenes[0].folder / RESULTS_JSON).read_text())["ours_given"]
    assert (result.ply, result.ply_bytes) == (str(spz), spz.stat().st_size)
    assert result.input_gaussians == ply_vertex_count(trained)
    assert (result.psnr, result.ssim) == (scores["PSNR"], scores["SSIM"])


# ------------------------------------------------------------------------------ planning

def test_grid_is_a_cartesian_product_of_checked_values() -> None:
    settings = grid_settings(["num_bits=6,8", "--n_block=8,16,32"])
    assert [s.name for s in settings] == [
        "num_bits=6,n_block=8", "num_bits=6,n_block=16", "num_bits=6,n_block=32",
        "num_bits=8,n_block=8", "num_bits=8,n_block=16", "num_bits=8,n_block=32"]
    assert settings[1].codec_flags("any scene") == {"num_bits": "6", "n_block": "16"}
    assert settings[0].fields() == {"num_bits", "n_block"}
    for spec, message in (("num_bits", "expected key=value"), ("layout=seed", "single-valued"),
                          ("finetune_test_iterations=1", "single-valued"),
                          ("bogus=1", "single-valued"), ("num_bits=x", "not an int"),
                          ("quantizer=fancy", "one of vanilla, lsq"),
                          ("percent=0.1/2", "letters, digits")):
        with pytest.raises(ValueError, match=message):
            grid_settings([spec])
    with pytest.raises(ValueError, match="given twice"):
        grid_settings(["num_bits=6", "num_bits=8"])


def test_configs_apply_published_values_per_scene() -> None:
    c3 = config_settings(["c3"])[0]
    assert c3.codec_flags("truck") == {"percent": 0.40, "n_block": 57, "codebook_size": 4096,
                                       "depth": 20, "imp_beta": 0.1}
    assert {"percent", "n_block", "codebook_size", "depth", "imp_beta"} == c3.fields()
    with pytest.raises(ValueError, match="unknown scene 'statuette'"):
        c3.codec_flags("statuette")
    with pytest.raises(ValueError, match="distinct values among c1, c2, c3"):
        config_settings(["c1", "c4"])


def test_find_scenes(sample_scene: Path, shared_data: Path, tmp_path: Path) -> None:
    scenes = find_scenes([shared_data, sample_scene])
    assert [(s.name, s.dataset) for s in scenes] == [
        ("lego_200", "data"), ("sacre_coeur", "data"), ("statuette", "data"),
        ("lego_sample", "data")]
    assert scenes[-1].path == sample_scene.absolute()
    with pytest.raises(ValueError, match="two scenes named 'statuette'"):
        find_scenes([shared_data, shared_data / "statuette"])
    with pytest.raises(ValueError, match="neither a scene"):
        find_scenes([tmp_path])
    with pytest.raises(FileNotFoundError, match="no such scene folder"):
        find_scenes([tmp_path / "missing"])


def test_plan_commands_and_flag_checks(sample_scene: Path, tmp_path: Path) -> None:
    scenes = find_scenes([sample_scene])
    settings = grid_settings(["num_bits=6,8"])
    flags = {"eval": True, "resolution": 8, "finetune_iterations": 20, "test_iterations": [60]}
    plan = build_plan(scenes, settings, ["seed", "official"], tmp_path, flags)
    assert [(j.layout, j.setting) for j in plan.jobs] == [
        ("seed", "num_bits=6"), ("seed", "num_bits=8"), ("official", "num_bits=6"),
        ("official", "num_bits=8")]
    train = plan.scenes[0].commands[0]
    # the scene step gets no codec flag, so a codec change does not retrain the scene
    assert train[:7] == ("train.py", "-s", str(sample_scene.absolute()), "-m",
                         str(tmp_path / "lego_sample" / "trained"), "--skip_compress", "--quiet")
    assert train[7:] == ("--eval", "--resolution", "8", "--test_iterations", "60")
    job = plan.jobs[3]
    assert job.folder == tmp_path / "lego_sample" / "official" / "num_bits=8"
    commands = job.commands(Path("/m.ply"))
    assert commands[0][5:11] == ("--given_ply_path", "/m.ply", "--layout", "official",
                                 "--quiet", "--eval")
    assert ("--num_bits", "8") == commands[0][commands[0].index("--num_bits"):][:2]
    assert ("--finetune_iterations", "20") == commands[0][
        commands[0].index("--finetune_iterations"):][:2]
    assert [c[0] for c in commands] == ["train.py", "render.py", "metrics.py"]
    assert flag_tokens({"b": False, "a": True, "c": [1, 2]}) == ["--a", "--c", "1", "2"]
    for bad, message in (({"eval": True, "model_path": "x"}, "--model_path is set by the sweep"),
                         ({"eval": True, "num_bits": 4}, "--num_bits is also set by --grid"),
                         ({"resolution": 8}, "pass --eval")):
        with pytest.raises(ValueError, match=message):
            build_plan(scenes, settings, ["seed"], tmp_path, bad)
    with pytest.raises(ValueError, match="--layouts takes distinct values"):
        build_plan(scenes, settings, ["tiny"], tmp_path, {"eval": True})
    given = build_plan(scenes, settings, ["seed"], tmp_path, {"eval": True},
                       given_ply_pattern="/models/<scene>/point_cloud.ply").scenes[0]
    assert given.given_ply == Path("/models/lego_sample/point_cloud.ply")
    for command in given.commands[:2]:  # train.py checks it, render.py draws it
        at = command.index("--given_ply_path")
        assert command[at + 1] == "/models/lego_sample/point_cloud.ply"


def test_grid_over_a_training_flag_trains_once_per_value(sample_scene: Path,
                                                         tmp_path: Path) -> None:
    """--grid cap_max=…: one scene step per value, in its own folder, its jobs under it."""
    codec, training = split_grid(["cap_max=100,200", "num_bits=8", "--strategy=mcmc"])
    assert codec == ["num_bits=8"] and training == ["cap_max=100,200", "--strategy=mcmc"]
    points = training_points(training)
    assert points == [(("cap_max", "100"), ("strategy", "mcmc")),
                      (("cap_max", "200"), ("strategy", "mcmc"))]
    scenes = with_training_points(find_scenes([sample_scene]), points)
    plan = build_plan(scenes, grid_settings(codec), ["compact"], tmp_path,
                      {"eval": True, "iterations": 50})
    assert [step.scene.name for step in plan.scenes] == [
        "lego_sample/cap_max=100,strategy=mcmc", "lego_sample/cap_max=200,strategy=mcmc"]
    for step, cap in zip(plan.scenes, ("100", "200")):
        folder = tmp_path / "lego_sample" / f"cap_max={cap},strategy=mcmc"
        assert step.folder == folder / "trained"
        train = step.commands[0]
        assert train[train.index("--cap_max") + 1] == cap
        assert train[train.index("--strategy") + 1] == "mcmc"
        (job,) = [j for j in plan.jobs if j.scene == step.scene]
        assert job.folder == folder / "compact" / "num_bits=8"
        assert "--cap_max" not in job.commands(Path("/m.ply"))[0]
    only_training = grid_settings(split_grid(["cap_max=100"])[0])
    assert [s.name for s in only_training] == ["default"]
    with pytest.raises(ValueError, match="not a single-valued training flag"):
        training_points(["test_iterations=5"])
    with pytest.raises(ValueError, match="--cap_max is also set by --grid"):
        build_plan(scenes, grid_settings(codec), ["compact"], tmp_path,
                   {"eval": True, "cap_max": 5})
    with pytest.raises(ValueError, match="needs training"):
        build_plan(scenes, grid_settings(codec), ["compact"], tmp_path, {"eval": True},
                   given_ply_pattern="/m/<scene>.ply")


def test_layouts_come_from_the_registry(sample_scene: Path, tmp_path: Path) -> None:
    """No code of the sweep names a layout, so a layout added to compression.layouts is swept
    without an edit: --layouts lists the registry, every registered layout plans its jobs."""
    named = [f"{path.name}:{node.lineno}"
             for path in [REPO / "sweep.py", *sorted((REPO / "sweeps").glob("*.py"))]
             for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Constant) and node.value in LAYOUTS]
    assert not named, named
    help_text = " ".join(sweep_cli.build_parser().format_help().split())
    assert f"among {', '.join(LAYOUTS)} (default: {PAPER_LAYOUT})" in help_text
    plan = build_plan(find_scenes([sample_scene]), grid_settings(["num_bits=8"]), list(LAYOUTS),
                      tmp_path, {"eval": True})
    assert [job.layout for job in plan.jobs] == list(LAYOUTS)
    for job in plan.jobs:
        train = job.commands(Path("/m.ply"))[0]
        assert train[train.index("--layout") + 1] == job.layout
        assert job.folder == tmp_path / "lego_sample" / job.layout / "num_bits=8"


def test_step_threads_default_to_the_cpus_declared() -> None:
    assert Executor(cpus_per_job=3).step_threads == 3
    assert Executor(cpus_per_job=3, threads_per_job=1).step_threads == 1


@pytest.mark.parametrize("argv, message", [
    (["--iterations", "5", "--bogus"], "unknown flag(s) --bogus"),
    (["--layout", "seed", "--eval"], "--layout is set by the sweep"),
    (["--iterations", "5"], "pass --eval"),
    (["--eval", "--serial", "--address", "auto"], "--serial runs without Ray"),
    # more than any node offers: refused at once instead of waiting forever
    (["--eval", "--num_cpus", "2", "--cpus_per_job", "3"], "--cpus_per_job 3: no Ray node"),
    (["--eval", "--threads", "0"], "--threads must be at least 1, got 0"),
])
@pytest.mark.slow
def test_cli_bad_input_is_one_line(argv: list[str], message: str, sample_scene: Path,
                                   tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    status = run_main(sweep_cli.main, "sweep.py", ["--scenes", str(sample_scene), *GRID, "-o",
                                                   str(tmp_path / "out"), *argv])
    err = capsys.readouterr().err.strip()
    assert status == 2 and err.startswith("sweep.py: error: ") and message in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ tables

def _published_rows() -> list[list[str]]:
    if not PUBLISHED_MD.is_file():
        pytest.skip(f"{PUBLISHED_MD} is absent")
    text = PUBLISHED_MD.read_text()
    rows = []
    for line in text[text.index("## Published results"):].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 9 and re.fullmatch(r"c\d", cells[2]):
            rows.append(cells)
    return rows


def test_published_numbers_match_the_docs() -> None:
    rows = _published_rows()
    assert len(rows) == len(PUBLISHED) == 42
    for dataset, scene, config, psnr, ssim, lpips, size, count, _ in rows:
        assert scene in DATASETS[dataset]
        assert PUBLISHED[(scene, config)] == (float(psnr), float(ssim), float(lpips), int(size),
                                              int(count))


def test_dataset_averages_reproduce_the_published_averages() -> None:
    """Rows equal to the paper's c3 results average to the paper's own stated averages
    (Mip-NeRF 360 26.99 dB at 25.9 MB, ...), and the paper row beside them is identical."""
    results = [JobResult(scene, dataset, "c3", "official", "ok", psnr=p.psnr, ssim=p.ssim,
                         lpips=p.lpips, size_bytes=p.size_bytes, num_gaussians=p.num_gaussians)
               for dataset, scenes in DATASETS.items() for scene in scenes
               for p in [PUBLISHED[(scene, "c3")]]]
    results.append(JobResult("lego", "SyntheticNeRF", "c3", "official", "failed"))
    rows = dataset_averages(results)
    assert [(r.dataset, r.method) for r in rows] == [
        (d, m) for d in DATASETS for m in ("ours (official)", PAPER_METHOD)]
    for ours, paper in zip(rows[::2], rows[1::2]):
        assert ours.scenes == paper.scenes == len(DATASETS[ours.dataset])
        for field in ("psnr", "ssim", "lpips", "size_bytes", "num_gaussians",
                      "bytes_per_gaussian"):
            assert getattr(ours, field) == pytest.approx(getattr(paper, field)), field
    if not PUBLISHED_MD.is_file():
        pytest.skip(f"{PUBLISHED_MD} is absent")
    text = " ".join(PUBLISHED_MD.read_text().split())
    stated = {"MipNeRF360": "Mip-NeRF 360 {:.2f} dB at {:.1f} MB",
              "TanksAndTemples": "Tanks&Temples {:.2f} dB at {:.1f} MB",
              "DeepBlending": "Deep Blending {:.2f} dB at {:.1f} MB"}
    for row in rows[1::2]:
        if row.dataset in stated:
            assert stated[row.dataset].format(row.psnr, row.size_bytes / 1e6) in text
