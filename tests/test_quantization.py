"""Block quantization: reference vectors, a slow per-quantizer reference, bit widths, LSQ."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from compression.quantization import (BlockQuantizer, LsqQuan, VanillaQuan, block_ids,
                                      split_length, storage_dtype)


class SlowVanillaQuan:
    """One quantizer, scalar float32 state, CODEC.md §6 step by step (training forward)."""

    def __init__(self, bits: int) -> None:
        self.bits = bits
        self.min_val = self.max_val = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        q_max = 2 ** self.bits - 1
        if x.numel():
            bmin, bmax = x.min(), x.max()
            self.max_val = bmax if self.max_val is None else torch.maximum(self.max_val, bmax)
            self.min_val = bmin if self.min_val is None else torch.minimum(self.min_val, bmin)
        zero = torch.tensor(0.0)
        self.max_val = torch.maximum(zero if self.max_val is None else self.max_val, zero)
        self.min_val = torch.minimum(zero if self.min_val is None else self.min_val, zero)
        self.scale = (self.max_val - self.min_val) / q_max
        if self.scale == 0:
            self.zero_point = torch.tensor(float(q_max))
            return torch.zeros_like(x)
        self.zero_point = torch.round(torch.clamp(q_max - self.max_val / self.scale, 0, q_max))
        q = torch.round(torch.clamp(self.zero_point + x / self.scale, 0, q_max))
        return self.scale * (q - self.zero_point)


@pytest.fixture(scope="module")
def vectors(reference_dir):
    return np.load(reference_dir / "quant_vectors.npz")


def test_reference_vectors_call_by_call(vectors):
    quan = VanillaQuan(bit=8)
    for k in range(4):
        out = quan(torch.from_numpy(vectors[f"call{k}/x"]))
        np.testing.assert_array_equal(out.numpy(), vectors[f"call{k}/dequant"])
        for name in ("scale", "zero_point", "min_val", "max_val"):
            np.testing.assert_array_equal(getattr(quan, name).reshape(1).numpy(),
                                          vectors[f"call{k}/{name}"], err_msg=f"call{k}/{name}")


def test_split_length_reference(vectors):
    for key in vectors.files:
        if key.startswith("split/"):
            length, n_block = map(int, key.split("/")[1].split("_"))
            assert split_length(length, n_block) == vectors[key].tolist()
            ids = block_ids(length, n_block)
            assert torch.bincount(ids, minlength=n_block).tolist() == vectors[key].tolist()
            assert bool((ids[1:] >= ids[:-1]).all())


def test_split_length_slow_rule():
    for length in (0, 1, 5, 56, 57, 58, 1000):
        for n_block in (1, 3, 57):
            sizes = split_length(length, n_block)
            assert sum(sizes) == length and len(sizes) == n_block
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def _blocks(length: int, n_block: int) -> list[slice]:
    bounds = np.concatenate([[0], np.cumsum(split_length(length, n_block))])
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


@pytest.mark.parametrize("length", [230, 9])  # 9 < B: some blocks are empty
def test_block_quantizer_equals_loop_of_quantizers(length):
    n_columns, n_block = 4, 13
    g = torch.Generator().manual_seed(0)
    fast = BlockQuantizer(n_columns, n_block, bits=8).train()
    slow = [SlowVanillaQuan(8) for _ in range(n_columns * n_block)]
    blocks = _blocks(length, n_block)
    for call in range(3):
        ac = torch.randn(length, n_columns, generator=g) * (call + 1)
        ac[:, 2] = ac[:, 2].abs()  # a column with no negatives
        out = fast(ac)
        expected = torch.zeros_like(ac)
        for c in range(n_columns):
            for j, rows in enumerate(blocks):
                quan = slow[c * n_block + j]
                expected[rows, c] = quan(ac[rows, c])
                view = fast[c * n_block + j]
                assert (view.column, view.block) == (c, j)
                assert view.scale == quan.scale and view.zero_point == quan.zero_point
                assert view.min_val == quan.min_val and view.max_val == quan.max_val
        torch.testing.assert_close(out, expected, atol=0, rtol=0)


def test_seed_indexing():
    quan = BlockQuantizer(55, 57)
    assert len(quan) == 3135
    quan.scale.copy_(torch.arange(3135, dtype=torch.float32).reshape(55, 57))
    for c, j in ((0, 0), (1, 0), (3, 17), (54, 56)):
        assert quan[c * 57 + j].scale.item() == c * 57 + j
    assert quan[-1].scale.item() == 3134
    with pytest.raises(IndexError):
        quan[3135]


@pytest.mark.parametrize("bits", [1, 4, 8, 12, 16])
def test_error_bound_vanilla(bits):
    g = torch.Generator().manual_seed(bits)
    ac = torch.randn(1000, 3, generator=g) * torch.tensor([1.0, 10.0, 0.01])
    quan = BlockQuantizer(3, 7, bits=bits).train()
    out = quan(ac)
    scale = quan.scale.t()[block_ids(1000, 7)]
    assert bool(((out - ac).abs() <= scale / 2 * (1 + 1e-5) + 1e-7).all())
    codes, s, z = quan.quantize(ac)
    assert int(codes.max()) <= 2 ** bits - 1 and int(codes.min()) >= 0
    assert storage_dtype(bits) == (np.uint8 if bits <= 8 else np.uint16)


@pytest.mark.parametrize("bits", [2, 4, 8, 12, 16])
def test_error_bound_lsq_inside_range(bits):
    g = torch.Generator().manual_seed(bits)
    ac = torch.randn(1000, 3, generator=g)
    quan = BlockQuantizer(3, 5, bits=bits, kind="lsq")
    quan.calibrate(ac)
    quan.eval()
    out = quan(ac)
    per_row = lambda state: state.t()[block_ids(1000, 5)]  # noqa: E731
    inside = (ac >= per_row(quan.min_val)) & (ac <= per_row(quan.max_val))
    assert inside.any()
    err = (out - ac).abs()[inside]
    assert bool((err <= per_row(quan.scale)[inside] / 2 * (1 + 1e-5)).all())
    assert bool((out < 0).any())  # signed range keeps negatives
    codes, s, z = quan.quantize(ac)
    torch.testing.assert_close(quan.dequantize(codes, s, z), out, atol=1e-6, rtol=0)


def test_zero_block_gives_zero_not_nan():
    ac = torch.randn(100, 2)
    ac[:50, 1] = 0.0  # first of two blocks of column 1 is all zeros
    for kind in ("vanilla", "lsq"):
        quan = BlockQuantizer(2, 2, kind=kind).train()
        out = quan(ac)
        assert torch.isfinite(out).all()
        assert bool((out[:50, 1] == 0).all())
        codes, s, z = quan.quantize(ac)
        assert bool((quan.dequantize(codes, s, z)[:50, 1] == 0).all())
    single = VanillaQuan(8)
    assert bool((single(torch.zeros(10)) == 0).all()) and single.scale.item() == 0


def test_eval_does_not_move_ranges_and_matches_quantize():
    g = torch.Generator().manual_seed(3)
    quan = BlockQuantizer(5, 4).train()
    quan(torch.randn(200, 5, generator=g))
    state = {k: v.clone() for k, v in quan.state_dict().items()}
    quan.eval()
    big = torch.randn(200, 5, generator=g) * 10
    out = quan(big)
    for k, v in quan.state_dict().items():
        assert torch.equal(v, state[k]), k
    codes, s, z = quan.quantize(big)
    assert codes.dtype == torch.uint8
    torch.testing.assert_close(quan.dequantize(codes, s, z), out, atol=0, rtol=0)


def test_forward_coeffs_skips_dc_and_matches_forward():
    g = torch.Generator().manual_seed(4)
    coeffs = torch.randn(301, 3, generator=g, requires_grad=True)
    a, b = BlockQuantizer(3, 7).train(), BlockQuantizer(3, 7).train()
    out = a.forward_coeffs(coeffs)
    assert torch.equal(out[0], coeffs[0].detach())
    assert torch.equal(out[1:], b(coeffs[1:]).detach())
    out.sum().backward()
    assert torch.equal(coeffs.grad, torch.ones_like(coeffs))  # straight-through


def test_straight_through_gradient():
    ac = torch.randn(64, 2, requires_grad=True)
    BlockQuantizer(2, 4).train()(ac).mul(torch.arange(2.0)).sum().backward()
    assert torch.equal(ac.grad, torch.arange(2.0).expand(64, 2))


def test_state_dict_round_trip():
    quan = BlockQuantizer(3, 4, bits=12).train()
    quan(torch.randn(50, 3))
    other = BlockQuantizer(3, 4, bits=12)
    other.load_state_dict(quan.state_dict())
    other.eval()
    x = torch.randn(50, 3)
    torch.testing.assert_close(other(x), quan.eval()(x), atol=0, rtol=0)
    codes, _, _ = other.quantize(x)
    assert codes.dtype == torch.int32 and int(codes.max()) < 2 ** 12


def test_lsq_learns_step():
    """A too-small initial step grows under Adam on the reconstruction loss."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2000, 1, generator=g)
    quan = LsqQuan(bit=3).train()
    quan(x)
    with torch.no_grad():
        quan.step.mul_(0.2)  # far too fine for 3 bits: heavy clipping
    start = quan.step.item()
    loss_start = (quan(x) - x).square().mean().item()
    opt = torch.optim.Adam(quan.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        loss = (quan(x) - x).square().mean()
        loss.backward()
        opt.step()
    assert quan.step.item() > 2 * start
    assert loss.item() < 0.5 * loss_start
    assert bool((quan(x) < 0).any())


def test_invalid_arguments():
    with pytest.raises(ValueError, match="bits"):
        BlockQuantizer(2, 2, bits=1, kind="lsq")
    with pytest.raises(ValueError, match="bits"):
        BlockQuantizer(2, 2, bits=17)
    with pytest.raises(ValueError, match="kind"):
        BlockQuantizer(2, 2, kind="log")
    with pytest.raises(ValueError, match=r"\[L, 2\]"):
        BlockQuantizer(2, 2)(torch.zeros(5, 3))
    with pytest.raises(RuntimeError, match="calibrate"):
        BlockQuantizer(2, 2).quantize(torch.zeros(5, 2))
