"""Other tools' codecs beside ours: the camera ring (scene/camera_ring.py), the peers runner
(training/peers.py), ``scripts/rd_sweep.py --peers`` with the HTML report, and
``benchmarks/bench_peers.py`` (a small real run: SPZ and the seed layout).

Real data: the shared pretrained PLY (9,080 Gaussians, SH degree 3) for the ring and the
fidelity measure; the bundled lego sample (its test photographs, random-init Gaussians at 25 px)
for the scene measure. Every number a table or report shows is checked against the file it
comes from (the .spz, peer.json, report.json, metrics.py's results.json).
"""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from arguments import ModelParams, PipelineParams
from gaussian_renderer import render
from scene import Scene
from scene.camera_ring import ring_cameras, ring_poses
from scene.gaussian_model import GaussianModel
from utils.cli import EXIT_BAD_INPUT, run_main
from utils.splat_transform import splat_transform_available

REPO = Path(__file__).resolve().parents[1]
needs_tool = pytest.mark.skipif(not splat_transform_available(),
                                reason="splat-transform needs Node.js and npm (not found)")
SCENE_RESOLUTION = 8       # the lego sample's 200 px photographs at 25 px
RANDOM_POINTS = 600


@pytest.fixture(scope="module")
def shared_ply(shared_data: Path) -> Path:
    return shared_data / "pretrained_ply" / "small_3dgs_sh3.ply"


@pytest.fixture(scope="module")
def shared_model(shared_ply: Path) -> GaussianModel:
    model = GaussianModel(3)
    model.load_ply(shared_ply)
    return model


@pytest.fixture(scope="module")
def lego_model(tmp_path_factory: pytest.TempPathFactory, sample_scene: Path) -> Path:
    """A model folder of the lego sample: random-init Gaussians saved as iteration 1, cfg_args
    naming the scene (--eval, 25 px, white background)."""
    model = tmp_path_factory.mktemp("peers") / "lego"
    params = ModelParams(source_path=str(sample_scene), model_path=str(model), eval=True,
                         resolution=SCENE_RESOLUTION, white_background=True,
                         num_random_points=RANDOM_POINTS)
    scene = Scene(params, GaussianModel(3), shuffle=False)
    scene.write_model_files()
    scene.save(1)
    return model


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


# ------------------------------------------------------------------------------ camera ring

def test_ring_cameras_look_at_the_model(shared_model: GaussianModel) -> None:
    count, size = 6, 64
    cameras = ring_cameras(shared_model.get_xyz, count=count, size=size)
    xyz = shared_model.get_xyz.detach().double()
    centre = torch.from_numpy(np.median(xyz.numpy(), axis=0))
    assert [c.image_name for c in cameras] == [f"ring_{i:03d}" for i in range(count)]
    distances, renders = [], []
    for camera in cameras:
        assert (camera.width, camera.height) == (size, size)
        rotation = camera.world_to_cam[:3, :3].double()
        translation = camera.world_to_cam[:3, 3].double()
        points = xyz @ rotation.T + translation
        # the model's centre lands on the principal point
        middle = rotation @ centre + translation
        assert middle[2] > 0
        assert float(camera.fx * middle[0] / middle[2] + camera.cx) == pytest.approx(size / 2,
                                                                                     abs=1e-3)
        assert float(camera.fy * middle[1] / middle[2] + camera.cy) == pytest.approx(size / 2,
                                                                                     abs=1e-3)
        # the bulk of the model is in front of the camera and inside the frame
        front = points[:, 2] > 0
        u = camera.fx * points[:, 0] / points[:, 2] + camera.cx
        v = camera.fy * points[:, 1] / points[:, 2] + camera.cy
        inside = front & (u >= 0) & (u < size) & (v >= 0) & (v < size)
        assert float(front.double().mean()) >= 0.9
        assert float(inside.double().mean()) >= 0.85
        distances.append(float(torch.linalg.norm(camera.camera_center.double() - centre)))
        with torch.no_grad():
            out = render(camera, shared_model, PipelineParams(backend="torch"), torch.zeros(3))
        # not blank: the model covers a good part of the image, with structure in it
        assert float((out["alpha"] > 0.5).float().mean()) > 0.2
        assert float(out["render"].std()) > 0.05
        renders.append(out["render"])
    # one ring: every camera at the same distance, equal steps between neighbours
    assert max(distances) == pytest.approx(min(distances), rel=1e-5)
    centres = torch.stack([c.camera_center.double() for c in cameras])
    steps = torch.linalg.norm(centres - centres.roll(1, 0), dim=1)
    assert float(steps.max()) == pytest.approx(float(steps.min()), rel=1e-5)
    assert float(steps.min()) > 0.5 * distances[0]  # 6 views 60° apart, not one view repeated
    # the views see different sides of the model
    for a, b in zip(renders, renders[1:]):
        assert float((a - b).abs().mean()) > 0.02
    # the same ring again with ground-truth images: same poses, those images
    again = ring_cameras(shared_model.get_xyz, count=count, size=size, images=renders)
    for camera, pose_camera, image in zip(again, cameras, renders):
        assert torch.equal(camera.world_to_cam, pose_camera.world_to_cam)
        assert torch.equal(camera.original_image, image)


def test_ring_rejects_bad_input(shared_model: GaussianModel) -> None:
    xyz = shared_model.get_xyz.detach()
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        ring_poses(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="non-finite"):
        ring_poses(torch.cat([xyz, torch.full((1, 3), math.nan)]))
    with pytest.raises(ValueError, match="count"):
        ring_poses(xyz, count=0)
    with pytest.raises(ValueError, match="images"):
        ring_cameras(xyz, count=2, size=8, images=[torch.zeros(3, 8, 8)])
    # a model at a single point still gets a ring (unit radius), all cameras distinct
    poses = ring_poses(np.ones((5, 3)), count=4)
    assert len({tuple(np.round(p[:3, 3], 6)) for p in poses}) == 4


# ------------------------------------------------------------------------------ peers

@pytest.mark.slow
@needs_tool
def test_bench_ring_mode_spz_and_seed(shared_ply: Path, shared_model: GaussianModel,
                                      tmp_path: Path) -> None:
    """The fidelity measure without a scene: SPZ and the seed layout against the uncompressed
    model's renders from the ring, scored by metrics.py's code, tabled from the files."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import bench_peers
    from utils.metrics_utils import evaluate_model

    bench = bench_peers.resolve_input(shared_ply, None, None, False, ring=False)
    assert bench.scene is None and bench.gaussians == 9080 and bench.sh_degree == 3
    work = bench_peers.work_folder(str(tmp_path / "work"))
    runs = bench_peers.measure_on_ring(bench, work, ["spz"], {"seed": ["--n_block", "8"]},
                                       views=4, size=64, seed=0, quiet=True)
    evaluate_model(work, progress=False)
    table = bench_peers.build_table(work, bench, ["spz"], runs)
    assert list(table) == ["uncompressed", "spz", "seed"]
    spz_file = work / "compression" / "peers" / "spz" / "model.spz"
    peer = json.loads((spz_file.parent / "peer.json").read_text())
    results = json.loads((work / "results.json").read_text())
    spz = table["spz"]
    assert spz["bytes"] == peer["size_bytes"] == spz_file.stat().st_size
    assert spz["bits_per_input_gaussian"] == pytest.approx(8 * spz_file.stat().st_size / 9080)
    assert spz["decoded_gaussians"] == 9080 and spz["psnr"] == results["peer_spz"]["PSNR"]
    assert spz["psnr"] == pytest.approx(peer["psnr"], abs=1e-9)  # one measure, one number
    assert "delta_psnr" not in spz  # no photographs: the fidelity is the measure itself
    # SPZ keeps a model within its quantization: close to the uncompressed renders
    assert 30.0 < spz["psnr"] < 80.0
    assert table["uncompressed"]["bytes"] == shared_ply.stat().st_size
    seed = table["seed"]
    report = json.loads(next((work / "compression" / "seed").glob("iteration_*/report.json"))
                        .read_text())
    assert seed["bytes"] == report["size_bytes"] and seed["finetune_iterations"] == 0
    assert seed["coded_gaussians"] == report["num_gaussians"] < 9080  # pruned and merged
    assert seed["psnr"] == results["compressed_seed_0"]["PSNR"] > 25.0
    assert len(list((work / "test" / "compressed_seed_0" / "renders").glob("*.png"))) == 4


@pytest.fixture(scope="module")
def bench_run(lego_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``bench_peers.py`` on the lego model folder: SPZ, the seed and the compact layout (2
    finetune steps)."""
    if not splat_transform_available():
        pytest.skip("splat-transform needs Node.js and npm (not found)")
    before = _files(lego_model)
    work = tmp_path_factory.mktemp("bench") / "work"
    command = [sys.executable, str(REPO / "benchmarks" / "bench_peers.py"), str(lego_model),
               "-o", str(work), "--skip", "sog", "official", "--finetune_iterations", "2",
               "--layout_flags", "seed=--n_block 4", "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return {"table": json.loads(done.stdout), "work": work, "before": before,
            "command": command}


@pytest.mark.slow
def test_bench_scene_mode_table_equals_its_sources(bench_run: dict, lego_model: Path) -> None:
    table, work = bench_run["table"], bench_run["work"]
    assert table["fidelity"]["measure"].startswith("test views")
    assert table["model"]["gaussians"] == RANDOM_POINTS
    assert table["work_folder"] == str(work)
    rows = table["codecs"]
    assert list(rows) == ["uncompressed", "spz", "seed", "compact"]
    results = json.loads((work / "results.json").read_text())
    plain = rows["uncompressed"]
    assert plain["psnr"] == results["ours_1"]["PSNR"] and plain["delta_psnr"] == 0.0
    assert plain["bytes"] == (lego_model / "point_cloud" / "iteration_1"
                              / "point_cloud.ply").stat().st_size
    spz_file = work / "compression" / "peers" / "spz" / "model.spz"
    spz = rows["spz"]
    assert spz["bytes"] == spz_file.stat().st_size == results["peer_spz"]["Size [Bytes]"]
    assert spz["bits_per_input_gaussian"] == pytest.approx(8 * spz["bytes"] / RANDOM_POINTS)
    assert spz["psnr"] == results["peer_spz"]["PSNR"]
    assert spz["delta_psnr"] == pytest.approx(spz["psnr"] - plain["psnr"])
    assert abs(spz["delta_psnr"]) < 0.5  # SPZ's quantization barely shows at 25 px
    assert spz["encode_seconds"] > 0 and spz["decode_seconds"] > 0
    seed = rows["seed"]
    folder = work / "compression" / "seed" / "iteration_2"
    report = json.loads((folder / "report.json").read_text())
    assert seed["bytes"] == (folder / "bins.zip").stat().st_size == report["size_bytes"]
    assert seed["finetune_iterations"] == 2 and report["settings"]["n_block"] == 4
    assert seed["psnr"] == results["compressed_seed_2"]["PSNR"]
    assert seed["delta_psnr"] == pytest.approx(seed["psnr"] - plain["psnr"])
    assert seed["encode_seconds"] == report["encode_seconds"]
    assert seed["command_seconds"] > seed["finetune_seconds"] > 0
    compact = rows["compact"]
    folder = work / "compression" / "compact" / "iteration_2"
    report = json.loads((folder / "report.json").read_text())
    assert compact["bytes"] == (folder / "bitstream.gsc").stat().st_size == report["size_bytes"]
    assert compact["bits_per_input_gaussian"] == pytest.approx(8 * compact["bytes"] / RANDOM_POINTS)
    assert compact["coded_gaussians"] == report["num_gaussians"] < RANDOM_POINTS  # pruned
    assert compact["psnr"] == results["compressed_compact_2"]["PSNR"]
    assert len(list((work / "test" / "peer_spz" / "renders").glob("*.png"))) == 8


@pytest.mark.slow
def test_bench_leaves_the_model_alone_and_refuses_bad_input(
        bench_run: dict, lego_model: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert _files(lego_model) == bench_run["before"]
    sys.path.insert(0, str(REPO / "benchmarks"))
    import bench_peers

    for argv, message in (
            ([str(lego_model), "-o", str(bench_run["work"])], "must be new or empty"),
            ([str(tmp_path / "absent")], "no such model folder or PLY"),
            ([str(lego_model), "--layout_flags", "seed=--no_such_flag"], "unknown flag"),
            ([str(lego_model), "--layout_flags", "nolayout=--n_block 4"], "LAYOUT=FLAGS"),
            ([str(lego_model), "-s", str(tmp_path / "noscene")], "scene folder not found")):
        capsys.readouterr()
        assert run_main(bench_peers.main, "bench_peers.py", [*argv, "--quiet"]) \
            == EXIT_BAD_INPUT
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("bench_peers.py: error: ")
        assert message in lines[0]
    assert not (tmp_path / "absent").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no work folder was left


# ------------------------------------------------------------------------------ rd_sweep + report

@pytest.mark.slow
@needs_tool
def test_rd_sweep_peers_feed_the_report(lego_model: Path, tmp_path: Path) -> None:
    import render as render_cli
    from reporting.collect import collect_report
    from reporting.page import build_html
    from reporting.table import table_rows
    from utils.metrics_utils import evaluate_method, evaluate_model

    sys.path.insert(0, str(REPO / "scripts"))
    import rd_sweep

    model = tmp_path / "model"
    shutil.copytree(lego_model, model)
    render_cli.main(["-m", str(model), "--skip_train", "--quiet", "--backend", "torch"])
    evaluate_model(model, progress=False)
    # nothing saved and no --peers: nothing to do, one line
    assert run_main(rd_sweep.main, "rd_sweep.py", ["-m", str(model), "--quiet"]) \
        == EXIT_BAD_INPUT
    page = build_html(collect_report(model))
    assert "No SPZ / SOG points" in page and "rd_sweep.py -m" in page

    assert run_main(rd_sweep.main, "rd_sweep.py", ["-m", str(model), "--peers", "spz",
                                                   "--quiet"]) == 0
    folder = model / "compression" / "peers" / "spz"
    peer = json.loads((folder / "peer.json").read_text())
    size = (folder / "model.spz").stat().st_size
    assert peer["size_bytes"] == size and peer["input_gaussians"] == RANDOM_POINTS
    assert peer["num_gaussians"] == RANDOM_POINTS and peer["views"] == 8
    assert peer["tool"].startswith("splat-transform ")
    measured = evaluate_method(model / "test" / "peer_spz", progress=False)
    assert peer["psnr"] == pytest.approx(np.mean(list(measured["PSNR"].values())), abs=1e-9)
    assert peer["ssim"] == pytest.approx(np.mean(list(measured["SSIM"].values())), abs=1e-9)

    # the report: from peer.json until metrics.py has scored the renders, then from metrics.py
    data = collect_report(model)
    spz = next(v for v in data.variants if v.codec == "spz")
    assert spz.quality_source == "peer.json" and spz.psnr == peer["psnr"]
    assert spz.source == folder / "model.spz" and spz.size_bytes == size
    results = evaluate_model(model, progress=False)
    assert results["peer_spz"]["Size [Bytes]"] == size
    data = collect_report(model)
    spz = next(v for v in data.variants if v.codec == "spz")
    assert spz.quality_source == "metrics.py" and spz.psnr == results["peer_spz"]["PSNR"]
    rows = {row[0]: dict(zip(table_rows(data)[0], row)) for row in table_rows(data)[1:]}
    row = rows[peer["label"]]
    assert float(row["bits/input Gaussian"]) == pytest.approx(8 * size / RANDOM_POINTS, abs=0.05)
    assert float(row["PSNR"]) == pytest.approx(results["peer_spz"]["PSNR"], abs=0.005)
    page = build_html(data)
    assert "No SPZ / SOG points" not in page and peer["tool"] in page
    # each test view shows the SPZ render and its error heat map
    assert page.count(f"<figcaption>|error| {peer['label']}</figcaption>") == len(data.views)
