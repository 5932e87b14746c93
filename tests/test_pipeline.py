"""The codec core end to end on the real pretrained PLY, over plain parameter dicts:
prepare → simulate / encode → save → decode (no GaussianModel involved but to load the PLY)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from compression.bins_format import BitstreamError
from compression.bitstream import read_bitstream, save
from compression.codec import CodecState
from compression.importance import compute_importance, prune_mask
from compression.octree import codes_to_keys, decode_positions, keys_to_codes, voxelize
from compression.quantization import split_length
from compression.settings import CompressionParams, resolve_settings
from scene.cameras import Camera
from scene.gaussian_model import GaussianModel
from scene.ply import standard_ply_size_bytes
from tests._codec import decode, encode, prepare, simulate

PLY_NAME = "small_3dgs_sh3.ply"
SEED_COLUMNS = 55
CODED = ("f_dc", "f_rest", "opacity", "scaling", "rotation")


def _load(shared_data: Path, first: int | None = None) -> dict[str, torch.Tensor]:
    """Raw parameters of the pretrained model (9,080 Gaussians), or of its ``first`` rows."""
    model = GaussianModel(3)
    model.load_ply(shared_data / "pretrained_ply" / PLY_NAME)
    return {k: v.detach()[:first].clone() for k, v in model.params.items()}


def _activated(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {"means": params["xyz"], "quats": params["rotation"],
            "scales": torch.exp(params["scaling"]),
            "opacities": torch.sigmoid(params["opacity"]).reshape(-1),
            "shs": torch.cat([params["f_dc"], params["f_rest"]], dim=1)}


def _assert_decode_equals_eval_simulate(state: CodecState, params: dict[str, torch.Tensor],
                                        decoded: dict[str, torch.Tensor]) -> None:
    state.eval()
    with torch.no_grad():
        simulated = simulate(state, params)
    for name, value in _activated(decoded).items():
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
    cfg = CompressionParams()
    state, params = prepare(original, None, cfg, torch.Generator().manual_seed(0))
    state.eval()
    out = tmp_path_factory.mktemp("seed")
    info = save(state, params, out)
    return {"original": original, "params": params, "state": state, "cfg": cfg, "out": out,
            "info": info}


def test_prepare_prunes_merges_sorts_and_leaves_its_input(seed_run: dict,
                                                          shared_data: Path) -> None:
    original, params, state = (seed_run[k] for k in ("original", "params", "state"))
    cfg = resolve_settings(seed_run["cfg"])  # the seed layout's defaults
    # Recompute stages 1-3 from the original parameters with the stage modules directly.
    scores = compute_importance(original["xyz"], original["rotation"],
                                torch.exp(original["scaling"]), torch.sigmoid(original["opacity"]),
                                None, beta=cfg.imp_beta)
    keep = prune_mask(scores, cfg.percent)
    assert int(keep.sum()) == 9080 - math.floor(0.2 * 9080)
    codes, bbox = voxelize(original["xyz"][keep], cfg.depth)
    expected_keys = torch.unique(codes_to_keys(codes, cfg.depth))
    assert torch.equal(state.keys, expected_keys)
    assert bool((state.keys[1:] > state.keys[:-1]).all())
    assert all(p.shape[0] == state.num_gaussians == expected_keys.numel()
               for p in params.values())
    centres = decode_positions(keys_to_codes(state.keys, cfg.depth), bbox, cfg.depth)
    torch.testing.assert_close(params["xyz"], centres.float(), rtol=0, atol=0)
    # prepare returns new parameters and leaves its input as it was
    for name, value in _load(shared_data).items():
        assert torch.equal(original[name], value), name
    # init_qas: 55·57 calibrated quantizers whose ranges contain 0.
    quantizer = state.quantizer
    assert len(quantizer) == SEED_COLUMNS * cfg.n_block == 3135
    assert bool(quantizer.initialized)
    assert bool((quantizer.min_val <= 0).all() and (quantizer.max_val >= 0).all())
    assert bool((quantizer.scale > 0).all())


def test_seed_round_trip(seed_run: dict, shared_data: Path) -> None:
    params, state, out, info = (seed_run[k] for k in ("params", "state", "out", "info"))
    n = state.num_gaussians
    archive = out / "bins.zip"
    assert info["size_bytes"] == archive.stat().st_size
    assert info["num_gaussians"] == n
    assert info["bits_per_gaussian"] == pytest.approx(8 * archive.stat().st_size / n)
    encoded = encode(state, params)
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
    _assert_decode_equals_eval_simulate(state, params, decoded)
    # Size: deflate never expands much, so the raw array bytes bound the archive: 55 one-byte
    # codes and an 8-byte key per Gaussian, the DC, and the t table (2 + 2·55·57 float64).
    raw_bytes = n * (SEED_COLUMNS + 8) + 4 * SEED_COLUMNS + 8 * (2 + 2 * SEED_COLUMNS * 57)
    assert info["size_bytes"] <= raw_bytes * 1.001 + 4096
    ply_size = (shared_data / "pretrained_ply" / PLY_NAME).stat().st_size
    assert archive.stat().st_size < ply_size / 4


def test_seed_column_layout_and_error_bound(seed_run: dict) -> None:
    """DC = column sum / √N identifies every column; decoding error obeys the RAHT bound."""
    params, state = seed_run["params"], seed_run["state"]
    bitstream = encode(state, params)
    n = state.num_gaussians
    p = {k: v.double() for k, v in params.items()}
    f_rest = p["f_rest"]  # [N, 15, 3]: coefficient-major in memory
    columns = {0: p["opacity"][:, 0], 4: p["f_dc"][:, 0, 0], 6: p["f_dc"][:, 0, 2],
               7: f_rest[:, 0, 0], 8: f_rest[:, 0, 1], 10: f_rest[:, 1, 0],
               51: f_rest[:, 14, 2], 52: p["scaling"][:, 0], 54: p["scaling"][:, 2]}
    for c, values in columns.items():
        assert bitstream.dc[c] == pytest.approx(values.sum().item() / math.sqrt(n), rel=1e-4), c
    d = {k: v.double() for k, v in decode(bitstream).items()}
    bound = _column_error_bound(bitstream.scale, n) + 1e-3
    errors = {0: d["opacity"][:, 0] - p["opacity"][:, 0],
              4: d["f_dc"][:, 0, 0] - p["f_dc"][:, 0, 0],
              8: d["f_rest"][:, 0, 1] - f_rest[:, 0, 1],
              53: d["scaling"][:, 1] - p["scaling"][:, 1]}
    for c, error in errors.items():
        assert error.norm().item() <= bound[c], c


def test_official_round_trip(shared_data: Path, tmp_path: Path) -> None:
    cfg = CompressionParams(layout="official", codebook_size=256, vq_steps=5, n_block=16)
    state, params = prepare(_load(shared_data), None, cfg, torch.Generator().manual_seed(0))
    state.eval()
    info = save(state, params, tmp_path)
    stored = read_bitstream(tmp_path / "bins.zip")
    n = state.num_gaussians
    assert len(state.quantizer) + len(state.direct_quantizer) == 10 * 16
    with np.load(tmp_path / "bins" / "t.npz", allow_pickle=False) as trans:
        assert trans["t"].shape == (2 + 2 * 10 * 16,)
    assert stored.codes.shape == (7, n - 1) and stored.direct_codes.shape == (3, n)
    assert stored.codebook.shape == (256, 45) and stored.vq_indices.dtype == np.int32
    decoded = decode(stored)
    _assert_decode_equals_eval_simulate(state, params, decoded)
    torch.testing.assert_close(decoded["f_rest"],
                               state.codebook.detach()[state.vq_indices].reshape(-1, 15, 3),
                               rtol=0, atol=0)
    # Log-scales are quantized directly: |error| <= scale / 2 per element, block by block.
    blocks = np.repeat(np.arange(16), split_length(n, 16))
    half_step = stored.direct_scale.T[blocks] / 2  # [N, 3]
    error = (decoded["scaling"] - params["scaling"]).abs().numpy()
    assert np.all(error <= half_step * (1 + 1e-5) + 1e-6)
    # Raw bytes bound the archive: 7 + 3 one-byte codes, an 8-byte key and a 4-byte VQ index
    # per Gaussian, the DC, the t table and the float32 codebook.
    raw_bytes = n * (7 + 3 + 8 + 4) + 4 * 7 + 8 * (2 + 2 * 10 * 16) + 4 * 256 * 45
    assert info["size_bytes"] <= raw_bytes * 1.001 + 4096


def test_same_input_gives_byte_identical_archive(seed_run: dict, shared_data: Path,
                                                 tmp_path: Path) -> None:
    state, params = prepare(_load(shared_data), None, seed_run["cfg"],
                            torch.Generator().manual_seed(0))
    save(state, params, tmp_path, measure_decode=False)
    assert (tmp_path / "bins.zip").read_bytes() == (seed_run["out"] / "bins.zip").read_bytes()


def test_ranges_move_only_in_training(shared_data: Path) -> None:
    state, params = prepare(_load(shared_data), None, CompressionParams(depth=12, n_block=8),
                            torch.Generator().manual_seed(0))
    snapshot = {k: v.clone() for k, v in state.quantizer.state_dict().items()}
    params["f_dc"][:5] += 50.0  # coefficients far outside the calibrated ranges
    state.eval()
    with torch.no_grad():
        simulate(state, params)
    encode(state, params)
    for key, value in state.quantizer.state_dict().items():
        assert torch.equal(value, snapshot[key]), key
    state.train()
    for name in CODED:
        params[name].requires_grad_(True)
    out = simulate(state, params)
    assert bool((state.quantizer.max_val >= snapshot["max_val"]).all())
    assert bool((state.quantizer.max_val > snapshot["max_val"]).any())
    # Gradients reach every coded attribute (straight-through), never the voxel centres.
    (out["shs"].sum() + out["opacities"].sum() + out["scales"].sum() + out["quats"][:, 1].sum()
     ).backward()
    for name in CODED:
        assert params[name].grad is not None and params[name].grad.abs().sum() > 0
    assert out["means"] is state.means and not out["means"].requires_grad


def test_decoded_model_exports_a_standard_ply(seed_run: dict, tmp_path: Path) -> None:
    decoded = GaussianModel.from_params(decode(read_bitstream(seed_run["out"] / "bins")))
    assert decoded.max_sh_degree == decoded.active_sh_degree == 3
    ply = tmp_path / "decoded.ply"
    decoded.save_ply(ply)
    reloaded = GaussianModel(3)
    reloaded.load_ply(ply)
    for name, value in decoded.params.items():
        assert torch.equal(reloaded.params[name], value), name
    assert ply.stat().st_size == standard_ply_size_bytes(decoded.num_gaussians, 3)
    broken = tmp_path / "broken.zip"
    broken.write_bytes((seed_run["out"] / "bins.zip").read_bytes()[:-100])
    with pytest.raises(BitstreamError, match="broken.zip"):
        read_bitstream(broken)


def test_prepare_rejects_bad_settings(shared_data: Path) -> None:
    params = _load(shared_data)
    with pytest.raises(ValueError, match="n_block"):
        prepare(params, None, CompressionParams(n_block=20_000))
    with pytest.raises(ValueError, match="layout"):
        prepare(params, None, CompressionParams(layout="zip"))
    with pytest.raises(ValueError, match="percent"):
        prepare(params, None, CompressionParams(percent=1.5))


@pytest.mark.parametrize("layout, quantizer, bits", [("seed", "vanilla", 12), ("official", "lsq", 6),
                                                     ("seed", "vanilla", 1)])
def test_round_trip_quantizer_variants(shared_data: Path, tmp_path: Path, layout: str,
                                       quantizer: str, bits: int) -> None:
    cfg = CompressionParams(layout=layout, quantizer=quantizer, num_bits=bits, depth=12,
                            n_block=8, codebook_size=64, vq_steps=3)
    state, params = prepare(_load(shared_data, first=3000), None, cfg,
                            torch.Generator().manual_seed(1))
    state.eval()
    save(state, params, tmp_path, measure_decode=False)
    stored = read_bitstream(tmp_path / "bins.zip")
    assert stored.codes.dtype == (np.uint8 if bits <= 8 else np.uint16)
    assert stored.quantizer == quantizer and stored.num_bits == bits
    assert int(stored.codes.max()) <= 2 ** bits - 1
    np.testing.assert_array_equal(stored.codes, encode(state, params).codes)
    _assert_decode_equals_eval_simulate(state, params, decode(stored))


def test_prepare_with_cameras_prunes_unseen(shared_data: Path) -> None:
    """Importance from renders: Gaussians no camera sees are pruned before the percentile."""
    params = _load(shared_data, first=2000)
    xyz = params["xyz"]
    centre = xyz.median(dim=0).values.double()
    world_to_cam = torch.eye(4, dtype=torch.float64)
    world_to_cam[:3, 3] = -centre + torch.tensor([0.0, 0.0, 2.0], dtype=torch.float64)
    cameras = [Camera(0, "front", world_to_cam.numpy(), 30.0, 30.0, 20.0, 15.0,
                      torch.zeros(3, 30, 40))]
    scores = compute_importance(xyz, params["rotation"], torch.exp(params["scaling"]),
                                torch.sigmoid(params["opacity"]), cameras, backend="torch")
    unseen = int((scores == 0).sum())
    assert 0 < unseen < 2000 - 100
    keep = prune_mask(scores, 0.05)
    assert int(keep.sum()) == 2000 - unseen - math.floor(0.05 * 2000)
    cfg = CompressionParams(percent=0.05, depth=14, n_block=4)
    codes, _ = voxelize(xyz[keep], cfg.depth)
    state, _ = prepare(params, cameras, cfg, backend="torch")
    assert torch.equal(state.keys, torch.unique(codes_to_keys(codes, cfg.depth)))
