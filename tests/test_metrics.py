"""PSNR / SSIM / LPIPS utilities and metrics.py end to end on real lego images."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

import metrics
from utils.cli import EXIT_BAD_INPUT, run_main
from utils.image_utils import load_image, psnr, save_png
from utils.loss_utils import l1_loss, ssim
import utils.lpips as lpips_module
from utils.lpips import LINEAR_HEADS, load_lpips
from utils.metrics_utils import compression_report, evaluate_model

REPO = Path(__file__).resolve().parents[1]
CROP = (slice(68, 132), slice(68, 132))  # 64×64 centre of the 200 px lego views


def slow_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Reference SSIM in float64: [C, H, W] images, 11×11 Gaussian σ 1.5, zero padding."""
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5 ** 2))
    kernel = np.outer(g, g) / np.outer(g, g).sum()

    def blur(x: np.ndarray) -> np.ndarray:
        return np.stack([ndimage.correlate(ch, kernel, mode="constant", cval=0.0) for ch in x])

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    return float((((2 * mu_a * mu_b + c1) * (2 * cov + c2))
                  / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))).mean())


def png_as_float64(path: Path) -> np.ndarray:
    """[3, H, W] float64 in [0, 1], read with PIL directly (independent of load_image)."""
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64).transpose(2, 0, 1) / 255


@pytest.fixture(scope="module")
def lego_pairs(shared_data: Path) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(ground truth, blurred) [3, 64, 64] pairs from three lego test views."""
    pairs = []
    for i, sigma in ((0, 1.0), (7, 2.0), (42, 0.6)):
        gt = load_image(shared_data / "lego_200" / "test" / f"r_{i}.png")[:3, CROP[0], CROP[1]]
        blurred = ndimage.gaussian_filter(gt.numpy(), sigma=(0, sigma, sigma))
        pairs.append((gt, torch.from_numpy(blurred)))
    return pairs


def test_psnr_known_value_and_batches(lego_pairs):
    zeros = torch.zeros(3, 8, 8, dtype=torch.float64)
    assert psnr(zeros, zeros + 0.1).item() == pytest.approx(20.0, abs=1e-9)  # MSE 0.01
    gts = torch.stack([p[0] for p in lego_pairs])
    blurred = torch.stack([p[1] for p in lego_pairs])
    values = psnr(blurred, gts)
    assert values.shape == (3,)
    for value, (gt, blur) in zip(values, lego_pairs):
        mse = ((gt.double().numpy() - blur.double().numpy()) ** 2).mean()
        assert value.item() == pytest.approx(10 * np.log10(1 / mse), abs=1e-4)
        assert psnr(blur, gt).item() == pytest.approx(value.item(), abs=1e-5)
    with pytest.raises(ValueError, match="psnr"):
        psnr(gts, blurred[:2])


def test_ssim_matches_slow_reference(lego_pairs):
    for gt, blur in lego_pairs:
        expected = slow_ssim(blur.double().numpy(), gt.double().numpy())
        assert 0.3 < expected < 0.999
        assert ssim(blur, gt).item() == pytest.approx(expected, abs=2e-5)
        assert ssim(blur.double(), gt.double()).item() == pytest.approx(expected, abs=1e-10)
    gts = torch.stack([p[0] for p in lego_pairs])
    blurred = torch.stack([p[1] for p in lego_pairs])
    per_image = [ssim(b, g).item() for g, b in lego_pairs]
    assert ssim(blurred, gts).item() == pytest.approx(np.mean(per_image), abs=1e-6)
    assert ssim(gts[0], gts[0]).item() == pytest.approx(1.0, abs=1e-6)
    assert l1_loss(blurred, gts).item() == pytest.approx(
        np.abs(blurred.double().numpy() - gts.double().numpy()).mean(), rel=1e-5)


def test_ssim_gradient_is_exact(lego_pairs):
    gt, blur = lego_pairs[0]
    a = blur[:, 20:44, 20:44].double().clone().requires_grad_(True)
    b = gt[:, 20:44, 20:44].double()
    # fast_mode: analytic vs numerical directional derivatives along random directions.
    assert torch.autograd.gradcheck(lambda x: ssim(x, b), (a,), fast_mode=True)


def test_image_io_round_trip(lego_pairs, tmp_path: Path):
    _, blur = lego_pairs[1]
    path = save_png(blur, tmp_path / "sub" / "00000.png")
    loaded = load_image(path)
    assert loaded.shape == (3, 64, 64) and loaded.dtype == torch.float32
    np.testing.assert_array_equal(loaded.numpy() * 255,
                                  np.floor(blur.clamp(0, 1).numpy() * 255 + 0.5))
    assert sorted(p.name for p in path.parent.iterdir()) == ["00000.png"]
    with pytest.raises(FileNotFoundError, match="absent.png"):
        load_image(tmp_path / "absent.png")


def test_lpips_network_structure(lpips_weights: Path, lego_pairs, tmp_path: Path):
    net = load_lpips(lpips_weights)
    names = set(torch.load(lpips_weights, weights_only=True))
    assert {f"features.{i}.weight" for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)} <= names
    assert tuple(net.lin4.model[1].weight.shape) == (1, 512, 1, 1)
    gts = torch.stack([p[0] for p in lego_pairs])[:, :, 16:48, 16:48]
    blurred = torch.stack([p[1] for p in lego_pairs])[:, :, 16:48, 16:48]
    with torch.no_grad():
        dist = net(blurred, gts)
        assert dist.shape == (3,) and (dist > 0).all()
        assert (net(gts, gts) == 0).all()
        assert net(blurred[1], gts[1]).item() == pytest.approx(dist[1].item(), rel=1e-5)

        # The lpips package's own naming (net.slice<j>.<i>, scaling_layer) loads to the same net.
        state = torch.load(lpips_weights, weights_only=True)
        slices = {0: 1, 2: 1, 5: 2, 7: 2, 10: 3, 12: 3, 14: 3, 17: 4, 19: 4, 21: 4, 24: 5, 26: 5, 28: 5}
        renamed = {(f"net.slice{slices[int(k.split('.')[1])]}.{k.split('.', 1)[1]}"
                    if k.startswith("features") else k): v for k, v in state.items()}
        renamed["scaling_layer.shift"] = torch.zeros(1, 3, 1, 1)
        torch.save(renamed, tmp_path / "lpips_pkg.pth")
        assert torch.equal(load_lpips(tmp_path / "lpips_pkg.pth")(blurred, gts), dist)

    del state["lin3.model.1.weight"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="partial.pth: LPIPS weights do not match.*lin3"):
        load_lpips(tmp_path / "partial.pth")
    (tmp_path / "junk.pth").write_text("not torch")
    with pytest.raises(ValueError, match="junk.pth: not a torch state dict"):
        load_lpips(tmp_path / "junk.pth")


@pytest.fixture()
def fake_model(lego_pairs, tmp_path: Path) -> Path:
    """A model folder with two rendered methods (ours_30000, compressed_seed_0) and a report."""
    model = tmp_path / "model"
    for method, pairs in (("ours_30000", lego_pairs[:2]), ("compressed_seed_0", lego_pairs[1:])):
        for idx, (gt, blur) in enumerate(pairs):
            save_png(gt, model / "test" / method / "gt" / f"{idx:05d}.png")
            save_png(blur, model / "test" / method / "renders" / f"{idx:05d}.png")
    report = model / "compression" / "seed" / "iteration_0" / "report.json"
    report.parent.mkdir(parents=True)
    report.write_text(json.dumps({"layout": "seed", "iteration": 0, "size_bytes": 123456,
                                  "num_gaussians": 9080, "bits_per_gaussian": 123456 * 8 / 9080,
                                  "encode_seconds": 1.5, "decode_seconds": 0.25,
                                  "ply_size_bytes": 2_000_000, "other": 1}))
    return model


@pytest.mark.slow
def test_metrics_cli_end_to_end(fake_model: Path, lpips_weights: Path):
    done = subprocess.run([sys.executable, "metrics.py", "-m", str(fake_model), "--lpips_weights",
                           str(lpips_weights)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "ours_30000" in done.stdout and "Bits/Gaussian" in done.stdout
    results = json.loads((fake_model / "results.json").read_text())
    per_view = json.loads((fake_model / "per_view.json").read_text())
    assert sorted(results) == ["compressed_seed_0", "ours_30000"]
    assert results["compressed_seed_0"]["Size [Bytes]"] == 123456
    assert results["compressed_seed_0"]["#Gaussians"] == 9080
    assert results["compressed_seed_0"]["Bits/Gaussian"] == pytest.approx(123456 * 8 / 9080)
    assert set(results["ours_30000"]) == {"SSIM", "PSNR", "LPIPS"}

    net = load_lpips(lpips_weights)
    for method, views in per_view.items():
        assert set(views) == {"SSIM", "PSNR", "LPIPS"} and sorted(views["PSNR"]) == ["00000.png", "00001.png"]
        for name in views["PSNR"]:
            render = png_as_float64(fake_model / "test" / method / "renders" / name)
            gt = png_as_float64(fake_model / "test" / method / "gt" / name)
            assert views["PSNR"][name] == pytest.approx(10 * np.log10(1 / ((render - gt) ** 2).mean()),
                                                        abs=1e-4)
            assert views["SSIM"][name] == pytest.approx(slow_ssim(render, gt), abs=2e-5)
        with torch.no_grad():  # LPIPS wiring, checked on the last view (VGG is slow on CPU)
            lp = net(torch.from_numpy(render).float(), torch.from_numpy(gt).float()).item()
        assert views["LPIPS"][name] == pytest.approx(lp, rel=1e-5)
        for metric, values in views.items():
            assert results[method][metric] == pytest.approx(np.mean(list(values.values())))


def _torch_cache(monkeypatch, torch_home: Path) -> Path:
    """torch.hub caching under ``torch_home``; VGG16 fetched from a local URL that does not
    exist (offline without network). Returns the cache file's path."""
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.delenv("LPIPS_WEIGHTS", raising=False)
    monkeypatch.setattr(lpips_module, "VGG16_URL",
                        (torch_home / "offline" / "vgg16-397923af.pth").as_uri())
    return torch_home / "hub" / "checkpoints" / "vgg16-397923af.pth"


def test_metrics_lpips_from_torch_cache(fake_model: Path, lpips_weights: Path, monkeypatch,
                                        tmp_path: Path):
    """Without --lpips_weights, metrics.py takes torchvision's VGG16 from torch's cache (here
    the fixture's convolutions under torchvision's names) with the shipped linear heads."""
    cache = _torch_cache(monkeypatch, tmp_path)
    cache.parent.mkdir(parents=True)
    features = {k: v for k, v in torch.load(lpips_weights, weights_only=True).items()
                if k.startswith("features.")}
    torch.save(features, cache)
    torch.save({**features, **torch.load(LINEAR_HEADS, weights_only=True)}, tmp_path / "same.pth")
    assert metrics.main(["-m", str(fake_model), "--quiet"]) == 0
    per_view = json.loads((fake_model / "per_view.json").read_text())
    net = load_lpips(tmp_path / "same.pth")
    views = fake_model / "test" / "ours_30000"
    with torch.no_grad():
        expected = net(load_image(views / "renders" / "00000.png")[:3],
                       load_image(views / "gt" / "00000.png")[:3]).item()
    assert per_view["ours_30000"]["LPIPS"]["00000.png"] == pytest.approx(expected, rel=1e-6)


def test_metrics_without_lpips_and_errors(fake_model: Path, monkeypatch, caplog, capsys,
                                          tmp_path: Path):
    cache = _torch_cache(monkeypatch, tmp_path / "torch_home")  # offline, nothing cached
    caplog.set_level(logging.INFO)
    assert metrics.main(["-m", str(fake_model), "--quiet"]) == 0
    lines = [r.getMessage() for r in caplog.records if "LPIPS" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("LPIPS skipped: ") and str(cache) in lines[0]
    results = json.loads((fake_model / "results.json").read_text())
    assert all("LPIPS" not in row and {"SSIM", "PSNR"} <= set(row) for row in results.values())

    # bad input: one line on stderr and the entry points' documented exit code
    capsys.readouterr()
    assert run_main(metrics.main, "metrics.py",
                    ["-m", str(tmp_path / "nowhere"), "--quiet"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("metrics.py: error: ")
    assert "nowhere" in err[0] and "no rendered test methods" in err[0]
    assert run_main(metrics.main, "metrics.py", ["-m", str(fake_model), "--lpips_weights",
                                                 str(tmp_path / "x.pth")]) == EXIT_BAD_INPUT
    assert "x.pth: LPIPS weights file not found" in capsys.readouterr().err

    (fake_model / "test" / "ours_30000" / "gt" / "00001.png").unlink()
    with pytest.raises(ValueError, match="ours_30000: renders/ and gt/ hold different files"):
        evaluate_model(fake_model, progress=False)
    (fake_model / "test" / "ours_30000" / "renders" / "00001.png").unlink()
    report = fake_model / "compression" / "seed" / "iteration_0" / "report.json"
    content = json.loads(report.read_text())
    del content["encode_seconds"]  # read by the one report.json reader, which checks its keys
    report.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=r"report.json: missing keys \['encode_seconds'\]"):
        compression_report(fake_model, "compressed_seed_0")
    report.unlink()
    caplog.clear()
    results = evaluate_model(fake_model, progress=False)
    assert "Size [Bytes]" not in results["compressed_seed_0"]
    assert any("report.json" in r.getMessage() for r in caplog.records)
