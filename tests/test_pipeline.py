"""The codec end to end on the real pretrained PLY: prepare → simulate / encode → save → decode."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from arguments import CompressionParams
from compression.bitstream import BitstreamError, read_bitstream
from compression.importance import compute_importance, prune_mask
from compression.octree import codes_to_keys, decode_positions, keys_to_codes, voxelize
from compression.pipeline import (CodecState, append_results_csv, decode, export_ply,
                                  iteration_dir, prepare, standard_ply_size_bytes, write_report)
from compression.quantization import split_length
from scene.cameras import Camera
from scene.gaussian_model import GaussianModel

PLY_NAME = "small_3dgs_sh3.ply"
SEED_COLUMNS = 55


def _load(shared_data: Path, first: int | None = None) -> GaussianModel:
    """The pretrained model (9,080 Gaussians), or only its ``first`` rows (faster tests)."""
    model = GaussianModel(3)
    model.load_ply(shared_data / "pretrained_ply" / PLY_NAME)
    if first is not None:
        model.set_params({k: v.detach()[:first] for k, v in model.params.items()})
    return model


def _decoded_activated(model: GaussianModel) -> dict[str, torch.Tensor]:
    return {"means": model.get_xyz, "quats": model.params["rotation"], "scales": model.get_scaling,
            "opacities": model.get_opacity.reshape(-1), "shs": model.get_features}


def _assert_decode_equals_eval_simulate(state: CodecState, model: GaussianModel,
                                        decoded: GaussianModel) -> None:
    state.eval()
    with torch.no_grad():
        simulated = state.simulate(model)
    for name, value in _decoded_activated(decoded).items():
        assert value.shape == simulated[name].shape, name
        torch.testing.assert_close(value, simulated[name], rtol=0, atol=1e-5, msg=name)


def _column_error_bound(scale: np.ndarray, n: int) -> np.ndarray:
    """Per column: ‖x̂ - x‖₂ bound for an orthonormal transform with |error| ≤ scale/2 per
    AC coefficient (block j of column c holds split_length(N-1, B)[j] coefficients)."""
    sizes = np.array(split_length(n - 1, scale.shape[1]))
    return np.sqrt(((scale / 2) ** 2 * sizes).sum(axis=1))


@pytest.fixture(scope="module")
def seed_run(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The pretrained PLY through prepare (seed layout, no cameras) and one save."""
    original = _load(shared_data)
    model = _load(shared_data)
    cfg = CompressionParams()
    state = prepare(model, None, cfg, torch.Generator().manual_seed(0))
    state.eval()
    out = tmp_path_factory.mktemp("seed")
    info = state.save(model, out)
    return {"original": original, "model": model, "state": state, "cfg": cfg, "out": out,
            "info": info}


def test_prepare_prunes_merges_sorts_and_freezes(seed_run: dict) -> None:
    original, model, state, cfg = (seed_run[k] for k in ("original", "model", "state", "cfg"))
    # Recompute stages 1-3 from the original model with the stage modules directly.
    scores = compute_importance(original.get_xyz, original.params["rotation"],
                                original.get_scaling, original.get_opacity, None,
                                beta=cfg.imp_beta)
    keep = prune_mask(scores, cfg.percent)
    assert int(keep.sum()) == 9080 - math.floor(0.2 * 9080)
    codes, bbox = voxelize(original.get_xyz.detach()[keep], cfg.depth)
    expected_keys = torch.unique(codes_to_keys(codes, cfg.depth))
    assert torch.equal(state.keys, expected_keys)
    assert bool((state.keys[1:] > state.keys[:-1]).all())
    assert model.num_gaussians == state.num_gaussians == expected_keys.numel()
    centres = decode_positions(keys_to_codes(state.keys, cfg.depth), bbox, cfg.depth)
    torch.testing.assert_close(model.get_xyz, centres.float(), rtol=0, atol=0)
    assert not model.params["xyz"].requires_grad
    assert all(model.params[k].requires_grad for k in ("f_dc", "f_rest", "opacity", "scaling",
                                                       "rotation"))
    assert model.codec is state and model.active_sh_degree == 3
    # init_qas: 55·57 calibrated quantizers whose ranges contain 0.
    quantizer = state.quantizer
    assert len(quantizer) == SEED_COLUMNS * cfg.n_block == 3135
    assert bool(quantizer.initialized)
    assert bool((quantizer.min_val <= 0).all() and (quantizer.max_val >= 0).all())
    assert bool((quantizer.scale > 0).all())


def test_seed_round_trip(seed_run: dict, shared_data: Path) -> None:
    model, state, out, info = (seed_run[k] for k in ("model", "state", "out", "info"))
    n = model.num_gaussians
    archive = out / "bins.zip"
    assert info["size_bytes"] == archive.stat().st_size
    assert info["num_gaussians"] == n
    assert info["bits_per_gaussian"] == pytest.approx(8 * archive.stat().st_size / n)
    encoded = state.encode(model)
    for path in (archive, out / "bins"):
        stored = read_bitstream(path)
        np.testing.assert_array_equal(stored.codes, encoded.codes)
        np.testing.assert_array_equal(stored.keys, state.keys.numpy())
        np.testing.assert_array_equal(stored.dc, encoded.dc)
        np.testing.assert_array_equal(stored.scale, state.quantizer.scale.double().numpy())
    assert stored.codes.shape == (SEED_COLUMNS, n - 1) and stored.codes.dtype == np.uint8
    with np.load(out / "bins" / "t.npz", allow_pickle=False) as trans:
        assert trans["t"].shape == (2 + 2 * SEED_COLUMNS * 57,)
    decoded = decode(stored)
    _assert_decode_equals_eval_simulate(state, model, decoded)
    # Size: deflate never expands much, so the raw array bytes bound the archive: 55 one-byte
    # codes and an 8-byte key per Gaussian, the DC, and the t table (2 + 2·55·57 float64).
    raw_bytes = n * (SEED_COLUMNS + 8) + 4 * SEED_COLUMNS + 8 * (2 + 2 * SEED_COLUMNS * 57)
    assert info["size_bytes"] <= raw_bytes * 1.001 + 4096
    ply_size = (shared_data / "pretrained_ply" / PLY_NAME).stat().st_size
    assert archive.stat().st_size < ply_size / 4


def test_seed_column_layout_and_error_bound(seed_run: dict) -> None:
    """DC = column sum / √N identifies every column; decoding error obeys the RAHT bound."""
    model, state = seed_run["model"], seed_run["state"]
    bitstream = state.encode(model)
    n = model.num_gaussians
    p = {k: v.detach().double() for k, v in model.params.items()}
    f_rest = p["f_rest"]  # [N, 15, 3]: coefficient-major in memory
    columns = {0: p["opacity"][:, 0], 4: p["f_dc"][:, 0, 0], 6: p["f_dc"][:, 0, 2],
               7: f_rest[:, 0, 0], 8: f_rest[:, 0, 1], 10: f_rest[:, 1, 0],
               51: f_rest[:, 14, 2], 52: p["scaling"][:, 0], 54: p["scaling"][:, 2]}
    for c, values in columns.items():
        assert bitstream.dc[c] == pytest.approx(values.sum().item() / math.sqrt(n), rel=1e-4), c
    decoded = decode(bitstream)
    d = {k: v.detach().double() for k, v in decoded.params.items()}
    bound = _column_error_bound(bitstream.scale, n) + 1e-3
    errors = {0: d["opacity"][:, 0] - p["opacity"][:, 0],
              4: d["f_dc"][:, 0, 0] - p["f_dc"][:, 0, 0],
              8: d["f_rest"][:, 0, 1] - f_rest[:, 0, 1],
              53: d["scaling"][:, 1] - p["scaling"][:, 1]}
    for c, error in errors.items():
        assert error.norm().item() <= bound[c], c


def test_official_round_trip(shared_data: Path, tmp_path: Path) -> None:
    model = _load(shared_data)
    cfg = CompressionParams(layout="official", codebook_size=256, vq_steps=5, n_block=16)
    state = prepare(model, None, cfg, torch.Generator().manual_seed(0))
    state.eval()
    info = state.save(model, tmp_path)
    stored = read_bitstream(tmp_path / "bins.zip")
    n = model.num_gaussians
    assert len(state.quantizer) + len(state.scale_quantizer) == 10 * 16
    with np.load(tmp_path / "bins" / "t.npz", allow_pickle=False) as trans:
        assert trans["t"].shape == (2 + 2 * 10 * 16,)
    assert stored.codes.shape == (7, n - 1) and stored.scale_codes.shape == (3, n)
    assert stored.codebook.shape == (256, 45) and stored.vq_indices.dtype == np.int32
    decoded = decode(stored)
    _assert_decode_equals_eval_simulate(state, model, decoded)
    torch.testing.assert_close(decoded.params["f_rest"],
                               state.codebook.detach()[state.vq_indices].reshape(-1, 15, 3),
                               rtol=0, atol=0)
    # Log-scales are quantized directly: |error| <= scale / 2 per element, block by block.
    blocks = np.repeat(np.arange(16), split_length(n, 16))
    half_step = stored.scale_scale.T[blocks] / 2  # [N, 3]
    error = (decoded.params["scaling"] - model.params["scaling"]).detach().abs().numpy()
    assert np.all(error <= half_step * (1 + 1e-5) + 1e-6)
    # Raw bytes bound the archive: 7 + 3 one-byte codes, an 8-byte key and a 4-byte VQ index
    # per Gaussian, the DC, the t table and the float32 codebook.
    raw_bytes = n * (7 + 3 + 8 + 4) + 4 * 7 + 8 * (2 + 2 * 10 * 16) + 4 * 256 * 45
    assert info["size_bytes"] <= raw_bytes * 1.001 + 4096


def test_same_input_gives_byte_identical_archive(seed_run: dict, shared_data: Path,
                                                 tmp_path: Path) -> None:
    model = _load(shared_data)
    state = prepare(model, None, seed_run["cfg"], torch.Generator().manual_seed(0))
    state.save(model, tmp_path, measure_decode=False)
    assert (tmp_path / "bins.zip").read_bytes() == (seed_run["out"] / "bins.zip").read_bytes()


def test_ranges_move_only_in_training(shared_data: Path) -> None:
    model = _load(shared_data)
    state = prepare(model, None, CompressionParams(depth=12, n_block=8),
                    torch.Generator().manual_seed(0))
    snapshot = {k: v.clone() for k, v in state.quantizer.state_dict().items()}
    with torch.no_grad():
        model.params["f_dc"][:5] += 50.0  # coefficients far outside the calibrated ranges
    state.eval()
    with torch.no_grad():
        state.simulate(model)
    state.encode(model)
    for key, value in state.quantizer.state_dict().items():
        assert torch.equal(value, snapshot[key]), key
    state.train()
    out = state.simulate(model)
    assert bool((state.quantizer.max_val >= snapshot["max_val"]).all())
    assert bool((state.quantizer.max_val > snapshot["max_val"]).any())
    # Gradients reach every coded attribute (straight-through), never the frozen positions.
    (out["shs"].sum() + out["opacities"].sum() + out["scales"].sum() + out["quats"][:, 1].sum()
     ).backward()
    for name in ("f_dc", "f_rest", "opacity", "scaling", "rotation"):
        assert model.params[name].grad is not None and model.params[name].grad.abs().sum() > 0
    assert model.params["xyz"].grad is None


def test_export_ply(seed_run: dict, tmp_path: Path) -> None:
    ply = export_ply(seed_run["out"] / "bins.zip", tmp_path / "decoded.ply")
    reloaded = GaussianModel(3)
    reloaded.load_ply(ply)
    decoded = decode(read_bitstream(seed_run["out"] / "bins"))
    for name, value in decoded.params.items():
        assert torch.equal(reloaded.params[name], value), name
    assert ply.stat().st_size == standard_ply_size_bytes(decoded.num_gaussians, 3)
    broken = tmp_path / "broken.zip"
    broken.write_bytes((seed_run["out"] / "bins.zip").read_bytes()[:-100])
    with pytest.raises(BitstreamError, match="broken.zip"):
        export_ply(broken, tmp_path / "never.ply")
    assert not (tmp_path / "never.ply").exists()


def test_report_and_results_csv(seed_run: dict, tmp_path: Path) -> None:
    out = iteration_dir(tmp_path, "seed", 0)
    assert out == tmp_path / "compression" / "seed" / "iteration_0"
    info = seed_run["info"]
    path = write_report(out, layout="seed", iteration=0, save_info=info, psnr=25.5, ssim=0.8,
                        lpips=None, ply_size_bytes=2253369, settings=seed_run["cfg"])
    report = json.loads(path.read_text())
    assert set(report) == {"layout", "iteration", "psnr", "ssim", "lpips", "size_bytes",
                           "num_gaussians", "bits_per_gaussian", "encode_seconds",
                           "decode_seconds", "ply_size_bytes", "settings"}
    assert report["lpips"] is None and report["size_bytes"] == info["size_bytes"]
    assert report["settings"]["n_block"] == 57
    for k, psnr in ((0, 25.5), (1000, 26.25)):
        csv_path = append_results_csv(tmp_path, layout="seed", iteration=k, psnr=psnr, ssim=0.8,
                                      lpips=None, size_bytes=info["size_bytes"],
                                      num_gaussians=info["num_gaussians"])
    rows = list(csv.reader(csv_path.open()))
    assert rows[0] == ["Submethod", "PSNR", "SSIM", "LPIPS", "Size [Bytes]", "#Gaussians"]
    assert [r[0] for r in rows[1:]] == ["seed_0", "seed_1000"]
    assert float(rows[2][1]) == 26.25 and rows[2][3] == ""
    assert int(rows[1][4]) == info["size_bytes"]


def test_prepare_rejects_bad_settings(shared_data: Path) -> None:
    model = _load(shared_data)
    with pytest.raises(ValueError, match="n_block"):
        prepare(model, None, CompressionParams(n_block=20_000))
    with pytest.raises(ValueError, match="layout"):
        prepare(model, None, CompressionParams(layout="zip"))
    with pytest.raises(ValueError, match="percent"):
        prepare(model, None, CompressionParams(percent=1.5))


@pytest.mark.parametrize("layout, quantizer, bits", [("seed", "vanilla", 12), ("official", "lsq", 6),
                                                     ("seed", "vanilla", 1)])
def test_round_trip_quantizer_variants(shared_data: Path, tmp_path: Path, layout: str,
                                       quantizer: str, bits: int) -> None:
    model = _load(shared_data, first=3000)
    cfg = CompressionParams(layout=layout, quantizer=quantizer, num_bits=bits, depth=12,
                            n_block=8, codebook_size=64, vq_steps=3)
    state = prepare(model, None, cfg, torch.Generator().manual_seed(1))
    state.eval()
    state.save(model, tmp_path, measure_decode=False)
    stored = read_bitstream(tmp_path / "bins.zip")
    assert stored.codes.dtype == (np.uint8 if bits <= 8 else np.uint16)
    assert stored.quantizer == quantizer and stored.num_bits == bits
    assert int(stored.codes.max()) <= 2 ** bits - 1
    np.testing.assert_array_equal(stored.codes, state.encode(model).codes)
    _assert_decode_equals_eval_simulate(state, model, decode(stored))


def test_prepare_with_cameras_prunes_unseen(shared_data: Path) -> None:
    """Importance from renders: Gaussians no camera sees are pruned before the percentile."""
    model = _load(shared_data, first=2000)
    xyz = model.get_xyz.detach()
    centre = xyz.median(dim=0).values.double()
    world_to_cam = torch.eye(4, dtype=torch.float64)
    world_to_cam[:3, 3] = -centre + torch.tensor([0.0, 0.0, 2.0], dtype=torch.float64)
    cameras = [Camera(0, "front", world_to_cam.numpy(), 30.0, 30.0, 20.0, 15.0,
                      torch.zeros(3, 30, 40))]
    scores = compute_importance(xyz, model.params["rotation"], model.get_scaling,
                                model.get_opacity, cameras, backend="torch")
    unseen = int((scores == 0).sum())
    assert 0 < unseen < model.num_gaussians - 100
    keep = prune_mask(scores, 0.05)
    assert int(keep.sum()) == model.num_gaussians - unseen - math.floor(0.05 * 2000)
    cfg = CompressionParams(percent=0.05, depth=14, n_block=4)
    codes, _ = voxelize(xyz[keep], cfg.depth)
    state = prepare(model, cameras, cfg, backend="torch")
    assert torch.equal(state.keys, torch.unique(codes_to_keys(codes, cfg.depth)))
