"""Importance-weighted k-means for the f_rest rows."""
from __future__ import annotations

import logging

import pytest
import torch

from compression import vq
from compression.vq import _distances_argmin, _pivot_argmin, assign, vq_kmeans


def _clusters(n_clusters: int, n: int, dim: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_clusters, dim, generator=g) * 4
    labels = torch.randint(0, n_clusters, (n,), generator=g)
    return centres, labels, centres[labels] + 0.05 * torch.randn(n, dim, generator=g)


@pytest.mark.parametrize("batch", [10_000, 512])  # full batch and mini-batches
def test_recovers_clusters(batch):
    centres, labels, x = _clusters(8, 3000, 45, 0)
    codebook, indices = vq_kmeans(x, torch.ones(3000), 8, steps=30, batch=batch,
                                  generator=torch.Generator().manual_seed(1))
    assert codebook.shape == (8, 45) and indices.dtype == torch.int32
    distance = torch.cdist(centres, codebook)
    assert float(distance.min(1).values.max()) < 0.05
    # One centroid per cluster, and the assignment follows the clusters.
    match = distance.argmin(1)
    assert len(set(match.tolist())) == 8
    assert torch.equal(indices.long(), match[labels])


def test_weights_pull_centroid():
    x = torch.tensor([[0.0], [1.0], [10.0], [11.0]] * 10)
    weights = torch.tensor([1.0, 9.0, 1.0, 1.0] * 10)
    codebook, _ = vq_kmeans(x, weights, 2, steps=20, batch=100,
                            generator=torch.Generator().manual_seed(0))
    centroids = sorted(codebook[:, 0].tolist())
    assert centroids[0] == pytest.approx(0.9, abs=1e-5)
    assert centroids[1] == pytest.approx(10.5, abs=1e-5)


def test_seeded_determinism():
    _, _, x = _clusters(5, 2000, 6, 2)
    w = torch.rand(2000, generator=torch.Generator().manual_seed(3))
    runs = [vq_kmeans(x, w, 16, steps=5, batch=256, generator=torch.Generator().manual_seed(s))
            for s in (7, 7, 8)]
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    assert not torch.equal(runs[0][0], runs[2][0])


def test_codebook_clamped_with_warning(caplog):
    x = torch.randn(40, 3)
    with caplog.at_level(logging.WARNING, logger="compression.vq"):
        codebook, indices = vq_kmeans(x, torch.ones(40), 4096, steps=2, batch=100,
                                      generator=torch.Generator().manual_seed(0))
    assert codebook.shape == (10, 3)
    assert int(indices.max()) < 10
    assert any("clamped to 10" in r.message for r in caplog.records)


def test_assign_is_nearest():
    g = torch.Generator().manual_seed(4)
    x, codebook = torch.randn(500, 7, generator=g), torch.randn(30, 7, generator=g)
    assert torch.equal(assign(x, codebook, chunk=64), torch.cdist(x, codebook).argmin(1))


def test_invalid_arguments():
    with pytest.raises(ValueError, match="weights"):
        vq_kmeans(torch.randn(10, 3), torch.ones(9), 2)
    with pytest.raises(ValueError, match="x"):
        vq_kmeans(torch.randn(0, 3), torch.ones(0), 2)


def test_assign_does_not_depend_on_the_chunk_the_pivots_or_the_workers(shared_data,
                                                                       monkeypatch):
    """Real f_rest rows (the shared trained PLY, 9,080 × 45) against a 1,024-entry codebook
    k-means made of them: the pivot search (groups of 40 rows, the last of each pivot shorter
    and padded; pivot pass 100 rows at a time) and the plain search in chunks of 100 (a last
    partial one) give the one-chunk plain search's indices, which are the nearest rows up to
    float32 rounding; so do three threads searching a third of the rows each (both searches)."""
    from scene.ply import read_ply

    rows = torch.from_numpy(read_ply(shared_data / "pretrained_ply" / "small_3dgs_sh3.ply")
                            ["f_rest"]).reshape(-1, 45)
    codebook, _ = vq_kmeans(rows, torch.ones(rows.shape[0]), 1024, steps=3, batch=2048,
                            generator=torch.Generator().manual_seed(0))
    c_sq = (codebook * codebook).sum(1)
    whole = _distances_argmin(rows, codebook, c_sq, chunk=rows.shape[0])
    assert torch.equal(_distances_argmin(rows, codebook, c_sq, chunk=100), whole)
    assert torch.equal(_pivot_argmin(rows, codebook, c_sq, chunk=100, group=40), whole)
    assert torch.equal(assign(rows, codebook), whole)  # the pivot search at its defaults
    monkeypatch.setattr(vq, "PARALLEL_MIN_ROWS", 1000)  # three threads, parts of 3,026 rows
    assert torch.equal(assign(rows, codebook, workers=3), whole)
    assert torch.equal(assign(rows, codebook[:100], workers=3),  # the plain search
                       _distances_argmin(rows, codebook[:100], c_sq[:100], chunk=rows.shape[0]))
    chosen = (rows - codebook[whole]).square().sum(1)
    assert float((chosen - torch.cdist(rows, codebook).square().amin(1)).abs().max()) < 1e-5
