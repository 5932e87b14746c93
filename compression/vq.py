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
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import Tensor

__all__ = ["assign", "vq_kmeans"]

logger = logging.getLogger(__name__)

SEED_ROWS_PER_CENTROID = 4
SEED_ROUNDS = 16
#: rows per distance matmul: [chunk, K] float32 distances (256 MB at K = 4096), one buffer
#: reused for every chunk (a fresh one per chunk costs a page fault per 4 KiB)
ASSIGN_CHUNK_ROWS = 16384
#: fewest rows per worker thread of :func:`assign`: a smaller part runs on the calling thread
#: (each part repeats the pivot set-up, about 0.04 s at K = 4,096)
PARALLEL_MIN_ROWS = 65536
#: codebooks of at least this many rows are searched through pivots (:func:`assign`)
PIVOT_MIN_CODEBOOK = 1024
#: one pivot per this many codebook rows
CODEBOOK_ROWS_PER_PIVOT = 8
#: rows of one pivot searched together (a smaller group has a tighter radius bound)
PIVOT_GROUP_ROWS = 256
#: fewest candidate columns and rows of one matmul: MKL computes an entry the same in any
#: product of at least 4 rows and 16 columns (measured; smaller products take other kernels,
#: whose last bit may differ)
MIN_CANDIDATES = 64
MIN_GROUP_ROWS = 16
#: bound on the float32 error of one distance |c|^2 - 2 x·c, relative to |c|^2 + 2 |x| |c|
#: (a 45-term dot product errs by at most about 3e-6 of that; taken 30 times wider)
DISTANCE_ERROR = 1e-4


def _row_argmin(distances: Tensor, out: Tensor) -> None:
    """``out`` [R] = the first index of each row's smallest value in ``distances`` [R, C].
    On the CPU through numpy, whose row argmin is 4× faster than torch's (the same index)."""
    if distances.device.type == "cpu":
        np.argmin(distances.detach().numpy(), axis=1, out=out.numpy())
    else:
        torch.argmin(distances, 1, out=out)


def _distances_argmin(x: Tensor, codebook: Tensor, c_sq: Tensor, chunk: int) -> Tensor:
    """Index of the smallest |c|^2 - 2 x·c per row of x, the rows in chunks of ``chunk``
    through one reused [chunk, K] buffer."""
    n = x.shape[0]
    out = torch.empty(n, dtype=torch.int64, device=x.device)
    buffer = x.new_empty((min(chunk, n), codebook.shape[0]))
    for start in range(0, n, chunk):
        rows = x[start:start + chunk]
        distances = buffer[:rows.shape[0]]
        # |x - c|^2 = |x|^2 - 2 x·c + |c|^2; |x|^2 does not change the argmin.
        torch.addmm(c_sq[None, :], rows, codebook.t(), alpha=-2.0, out=distances)
        _row_argmin(distances, out[start:start + rows.shape[0]])
    return out


def _pivot_argmin(x: Tensor, codebook: Tensor, c_sq: Tensor, chunk: int,
                  group: int = PIVOT_GROUP_ROWS) -> Tensor:
    """:func:`_distances_argmin`'s result, computed for each row against the few codebook rows
    that can win for it.

    Every ``CODEBOOK_ROWS_PER_PIVOT``-th codebook row is a pivot; each row of x goes to its
    nearest pivot p at distance r. For rows of one pivot with r <= R, a codebook row c can only
    be the computed argmin (or tie with it) if |p - c| <= R + sqrt((R + d_p)^2 + 2e), d_p the
    pivot's distance to its nearest codebook row and e the bound on a computed distance's
    error (triangle inequality; the computed winner is within 2e of the true nearest). Those
    candidates, in index order and never fewer than ``MIN_CANDIDATES``, go through the same
    matmul (with other rows added up to ``MIN_GROUP_ROWS``), which gives each entry the same
    value as the full one, so the argmin is the same index. The rows of one pivot are taken in
    increasing r, ``group`` at a time; ``chunk`` is the pivot search's.
    """
    n, k = x.shape[0], codebook.shape[0]
    pivots = codebook[::CODEBOOK_ROWS_PER_PIVOT]
    nearest = _distances_argmin(x, pivots, c_sq[::CODEBOOK_ROWS_PER_PIVOT], chunk)
    codebook64 = codebook.to(torch.float64)
    pivots64 = codebook64[::CODEBOOK_ROWS_PER_PIVOT]
    radius = torch.empty(n, dtype=torch.float64, device=x.device)
    x_norm = 0.0
    for start in range(0, n, chunk):  # float64 a chunk at a time: no [N, F] float64 copy
        rows = x[start:start + chunk].to(torch.float64)
        radius[start:start + chunk] = (rows - pivots64[nearest[start:start + chunk]]).norm(dim=1)
        x_norm = max(x_norm, float(rows.norm(dim=1).max()))
    c_norm = float(codebook64.norm(dim=1).max())
    error = DISTANCE_ERROR * c_norm * (c_norm + 2 * x_norm)
    to_codebook = torch.cdist(pivots64, codebook64)  # [P, K]
    floor = to_codebook.kthvalue(min(MIN_CANDIDATES, k), dim=1).values
    closest = to_codebook.min(dim=1).values
    # rows by pivot, then by radius: each group's last radius bounds all of its rows
    order = torch.argsort(nearest * (radius.max() + 1) + radius)
    out = torch.empty(n, dtype=torch.int64, device=x.device)
    counts = torch.bincount(nearest, minlength=pivots.shape[0]).tolist()
    start = 0
    for pivot, count in enumerate(counts):
        for first in range(start, start + count, group):
            rows = order[first:min(first + group, start + count)]
            reach = float(radius[rows[-1]])
            reach += math.sqrt((reach + float(closest[pivot])) ** 2 + 2 * error)
            limit = max(reach * (1 + 1e-9), float(floor[pivot]))
            candidates = torch.nonzero(to_codebook[pivot] <= limit).squeeze(1)
            padded = (rows if rows.shape[0] >= MIN_GROUP_ROWS else
                      torch.cat([rows, order[:MIN_GROUP_ROWS - rows.shape[0]]]))
            distances = torch.addmm(c_sq[candidates][None, :], x[padded],
                                    codebook[candidates].t(), alpha=-2.0)
            best = torch.empty(padded.shape[0], dtype=torch.int64, device=x.device)
            _row_argmin(distances, best)
            out[rows] = candidates[best[:rows.shape[0]]]
        start += count
    return out


def assign(x: Tensor, codebook: Tensor, chunk: int = ASSIGN_CHUNK_ROWS,
           workers: int = 1) -> Tensor:
    """Index of the nearest codebook row for every row of x: the argmin of the float32
    |c|^2 - 2 x·c (first index on ties), whatever the chunking and the workers.

    On a CPU with MKL (whose products the pivot search was measured on), codebooks of at least
    ``PIVOT_MIN_CODEBOOK`` rows (all but a small model's) are searched through pivots
    (:func:`_pivot_argmin`: the same indices for a fraction of the work); memory stays at one
    [chunk, K] buffer per worker whatever N.

    Args:
        x: [N, F] float rows.
        codebook: [K, F] float centroids.
        chunk: rows per distance matmul.
        workers: threads that search consecutive parts of x at once (at least
            ``PARALLEL_MIN_ROWS`` rows each, else fewer threads); torch releases the GIL in its
            kernels, and each row's index does not depend on the part it is searched in.

    Returns:
        [N] int64 indices into the codebook.
    """
    c_sq = (codebook * codebook).sum(1)
    search = (_pivot_argmin if (codebook.shape[0] >= PIVOT_MIN_CODEBOOK
                                and x.shape[0] >= codebook.shape[0] and x.device.type == "cpu"
                                and torch.backends.mkl.is_available())
              else _distances_argmin)
    parts = torch.tensor_split(x, max(1, min(workers, x.shape[0] // PARALLEL_MIN_ROWS)))
    if len(parts) == 1:
        return search(x, codebook, c_sq, chunk)
    with ThreadPoolExecutor(len(parts)) as pool:
        return torch.cat(list(pool.map(lambda part: search(part, codebook, c_sq, chunk),
                                       parts)))


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
              generator: torch.Generator | None = None, workers: int = 1
              ) -> tuple[Tensor, Tensor]:
    """Importance-weighted k-means codebook of the rows of x.

    Args:
        x: [N, F] float rows (e.g. f_rest flattened, N >= 1).
        weights: [N] non-negative importance weights.
        k: codebook size K; clamped to max(1, N // 4) with a warning.
        steps: mini-batch iterations.
        batch: rows per iteration (all rows when N <= batch).
        generator: torch.Generator for seeding and batch sampling (on x's device).
        workers: threads of the final assignment of every row (:func:`assign`; the same
            indices for any count).

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
    return codebook, assign(x, codebook, workers=workers).to(torch.int32)
