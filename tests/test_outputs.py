"""One home for output names (utils/output_paths.py) and the codec's result files
(reporting/codec_results.py): report.json, results.csv written and read back."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from compression.bitstream import save
from compression.settings import CompressionParams, codec_settings, resolve_settings
from reporting.codec_results import ResultsRow, append_results, read_results_csv, write_report
from scene.gaussian_model import GaussianModel
from training.compress import latest_bitstream, method_for_bitstream
from utils import output_paths as paths


def test_names_of_a_model_folder(tmp_path: Path) -> None:
    model = tmp_path / "m"
    assert paths.iteration_dir(model, "seed", 5) == model / "compression" / "seed" / "iteration_5"
    assert paths.point_cloud_path(model, 7) == model / "point_cloud" / "iteration_7" \
        / "point_cloud.ply"
    assert paths.checkpoint_path(model, 3) == model / "chkpnt3.pth"
    assert paths.results_csv_path(model) == model / "compression" / "results.csv"
    name = paths.sweep_submethod("official", 200, 6)
    assert name == "official_200_b6"
    assert paths.sweep_dir(model, name) == model / "compression" / "sweep" / "official_200_b6"
    assert paths.parse_sweep_submethod(name) == ("official", 200, 6)
    assert paths.parse_sweep_submethod(paths.submethod("seed", 0)) is None
    assert paths.submethod_layout(name) == "official"
    method = paths.render_name(paths.compressed_method("seed"), 40)
    assert paths.render_dir(model, paths.TEST_SPLIT, method) == model / "test" / "compressed_seed_40"
    assert paths.parse_compressed_method(method) == ("seed", 40)
    assert paths.parse_compressed_method("ours_30000") is None
    assert paths.viewer_page_path(model, method) == model / "viewer" / "compressed_seed_40.html"
    assert paths.parse_iteration_dir(paths.iteration_dir(model, "seed", 5), model) == ("seed", 5)
    assert paths.parse_iteration_dir(tmp_path / "iteration_5", model) is None


def test_reports_and_bitstreams_are_found_by_their_names(shared_data: Path,
                                                         tmp_path: Path) -> None:
    """A real save under iteration_dir: render.py finds it, the report lists it."""
    model = GaussianModel(3)
    model.load_ply(shared_data / "pretrained_ply" / "small_3dgs_sh3.ply")
    params = {k: v.detach()[:600] for k, v in model.params.items()}
    cfg = resolve_settings(CompressionParams(depth=12, n_block=4))
    settings = codec_settings(cfg)
    state, coded = settings.layout.codec.prepare(params, None, settings,
                                                 torch.Generator().manual_seed(0))
    saved = {}
    for k in (0, 20, 3):
        out = paths.iteration_dir(tmp_path, cfg.layout, k)
        saved[k] = save(state, coded, out, measure_decode=False)
        write_report(out, layout=cfg.layout, iteration=k, save_info=saved[k], psnr=20.0 + k,
                     ssim=0.5, lpips=None, ply_size_bytes=1000, settings=cfg)
    assert latest_bitstream(tmp_path) == (Path(saved[20]["path"]), "seed", 20)
    assert latest_bitstream(tmp_path, "seed", 3)[0] == Path(saved[3]["path"])
    assert method_for_bitstream(saved[3]["path"], tmp_path) == ("compressed_seed", "3")
    assert method_for_bitstream(saved[3]["path"], None) == ("compressed", "given")
    reports = paths.saved_reports(tmp_path)
    assert [json.loads(p.read_text())["iteration"] for p in reports] == [0, 3, 20]
    report = json.loads(reports[-1].read_text())
    assert report["size_bytes"] == Path(saved[20]["path"]).stat().st_size
    assert report["settings"]["n_block"] == 4 and report["settings"]["num_bits"] == 8
    assert report["lpips"] is None and report["psnr"] == 40.0
    with pytest.raises(FileNotFoundError, match="iteration 9"):
        latest_bitstream(tmp_path, "seed", 9)
    with pytest.raises(ValueError, match="layout"):
        latest_bitstream(tmp_path, "zip")


def test_results_csv_round_trip(tmp_path: Path) -> None:
    rows = [ResultsRow("seed_0", None, None, None, 1000, 10),
            ResultsRow("seed_0_b6", 25.5, 0.75, None, 800, 10),
            ResultsRow("official_5", 26.25, 0.8, 0.125, 600, 9)]
    path = append_results(tmp_path, rows[:1])
    append_results(tmp_path, rows[1:])
    assert path == paths.results_csv_path(tmp_path)
    lines = list(csv.reader(path.open()))
    assert tuple(lines[0]) == paths.RESULTS_HEADER
    assert lines[1] == ["seed_0", "", "", "", "1000", "10"]
    assert lines[3] == ["official_5", "26.250000", "0.800000", "0.125000", "600", "9"]
    assert read_results_csv(path) == rows
    assert [row.layout for row in rows] == ["seed", "seed", "official"]
    append_results(tmp_path, [ResultsRow("seed_0", 21.0, 0.5, None, 999, 10)])
    assert read_results_csv(path)[0].psnr == 21.0  # a rerun: the last row wins
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="expected header"):
        read_results_csv(path)
