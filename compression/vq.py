"""Importance-weighted mini-batch k-means for the f_rest rows (official layout, CODEC.md §7).

Seeding: weighted k-means++ (in at most ``SEED_ROUNDS`` rounds) on a random subsample of at
most ``SEED_ROWS_PER_CENTROID·K`` rows.
Each step draws ``batch`` rows (all rows when N <= batch), assigns them to the nearest centroid
(squared distances via chunked matmul) and moves every centroid towards the weighted mean of its
rows with a per-centroid rate 1/(accumulated weight) (Sculley's mini-batch update). Centroids
that never received weight are re-seeded from the batch. Deterministic for a given generator.
"""
from __future__ import annotations

import logging

import torch
from torch import Tensor

__all__ = ["assign", "vq_kmeans"]

logger = logging.getLogger(__name__)

SEED_ROWS_PER_CENTROID = 4
SEED_ROUNDS = 16
ASSIGN_CHUNK_ROWS = 4096


def assign(x: Tensor, codebook: Tensor, chunk: int = ASSIGN_CHUNK_ROWS) -> Tensor:
    """Index of the nearest codebook row for every row of x.

    Args:
        x: [N, F] float rows.
        codebook: [K, F] float centroids.
        chunk: rows per distance matmul.

    Returns:
        [N] int64 indices into the codebook.
    """
    c_sq = (codebook * codebook).sum(1)
    out = []
    for rows in torch.split(x, chunk):
        # |x - c|^2 = |x|^2 - 2 x·c + |c|^2; |x|^2 does not change the argmin.
        out.append(torch.addmm(c_sq[None, :], rows, codebook.t(), alpha=-2.0).argmin(1))
    return torch.cat(out) if out else torch.empty(0, dtype=torch.int64, device=x.device)


def _seed(x: Tensor, weights: Tensor, k: int, generator: torch.Generator | None) -> Tensor:
    """Weighted k-means++ seeding in rounds on a subsample: [K, F].

    Each of at most ``SEED_ROUNDS`` rounds draws ceil(K / rounds) new centroids without
    replacement with probability proportional to weight · squared distance to the nearest
    centroid so far (for K <= SEED_ROUNDS this is exactly k-means++).
    """
    n = x.shape[0]
    m = min(n, SEED_ROWS_PER_CENTROID * k)
    sub = torch.randperm(n, generator=generator, device=x.device)[:m]
    xs = x[sub]
    ws = weights[sub] + torch.finfo(x.dtype).tiny
    dist = torch.full((m,), float("inf"), dtype=x.dtype, device=x.device)
    taken = torch.zeros(m, dtype=torch.bool, device=x.device)
    per_round = -(-k // min(k, SEED_ROUNDS))
    chosen = []
    n_chosen = 0
    while n_chosen < k:
        r = min(per_round, k - n_chosen)
        p = torch.where(torch.isinf(dist), ws, ws * dist)
        # Rows equal to a centroid have p = 0; keep them drawable after all others are taken.
        p = torch.where(taken, torch.zeros_like(p), p + torch.finfo(x.dtype).tiny)
        idx = torch.multinomial(p, r, replacement=False, generator=generator)
        taken[idx] = True
        new = xs[idx]
        new_dist = torch.cdist(xs, new).square().amin(1)
        dist = torch.minimum(dist, new_dist)
        chosen.append(new)
        n_chosen += r
    return torch.cat(chosen)


def vq_kmeans(x: Tensor, weights: Tensor, k: int, steps: int = 100, batch: int = 65536,
              generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Importance-weighted k-means codebook of the rows of x.

    Args:
        x: [N, F] float rows (e.g. f_rest flattened, N >= 1).
        weights: [N] non-negative importance weights.
        k: codebook size K; clamped to max(1, N // 4) with a warning.
        steps: mini-batch iterations.
        batch: rows per iteration (all rows when N <= batch).
        generator: torch.Generator for seeding and batch sampling (on x's device).

    Returns:
        codebook: [K', F] (x's dtype), K' = clamped K.
        indices: [N] int32 nearest-centroid index of every row.
    """
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"x: expected shape [N, F] with N >= 1, got {tuple(x.shape)}")
    n = x.shape[0]
    if weights.shape != (n,):
        raise ValueError(f"weights: expected shape [{n}], got {tuple(weights.shape)}")
    if k < 1 or steps < 0 or batch < 1:
        raise ValueError(f"vq_kmeans: expected k >= 1, steps >= 0, batch >= 1, got {k}, {steps}, {batch}")
    k_max = max(1, n // 4)
    if k > k_max:
        logger.warning("codebook size %d clamped to %d (N // 4 for N = %d)", k, k_max, n)
        k = k_max
    x = x.detach()
    w = weights.detach().to(x.dtype).clamp_min(0)
    codebook = _seed(x, w, k, generator)
    counts = torch.zeros(k, dtype=x.dtype, device=x.device)
    for _ in range(steps):
        if n <= batch:
            rows, rw = x, w
        else:
            pick = torch.randint(n, (batch,), generator=generator, device=x.device)
            rows, rw = x[pick], w[pick]
        idx = assign(rows, codebook)
        w_sum = torch.zeros_like(counts).index_add_(0, idx, rw)
        x_sum = torch.zeros_like(codebook).index_add_(0, idx, rows * rw[:, None])
        counts += w_sum
        rate = torch.where(counts > 0, w_sum / counts.clamp_min(torch.finfo(x.dtype).tiny),
                           torch.zeros_like(counts))
        batch_mean = x_sum / w_sum.clamp_min(torch.finfo(x.dtype).tiny)[:, None]
        codebook += rate[:, None] * (batch_mean - codebook)
        dead = counts <= 0
        n_dead = int(dead.sum())
        if n_dead:
            refill = torch.randint(rows.shape[0], (n_dead,), generator=generator, device=x.device)
            codebook[dead] = rows[refill]
    return codebook, assign(x, codebook).to(torch.int32)
