"""How many CPU threads torch runs on: one default for every entry point, and ``--threads``.

torch's default is one OpenMP thread per CPU. Each parallel operation then ends at a barrier
that waits for all of them, so when another busy process takes one CPU, every operation waits
until the thread that shares that CPU gets its turn from the scheduler; a training step runs
thousands of small operations, and the whole step slows by an order of magnitude
(``benchmarks/bench_threads.py``). Leaving one CPU free keeps the step near its idle speed
under such load, for a small cost when the machine is idle.
"""
from __future__ import annotations

import argparse
import logging
import os

import torch

logger = logging.getLogger(__name__)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, else ``os.cpu_count()``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_threads() -> int:
    """Threads when ``--threads`` is not given: ``OMP_NUM_THREADS`` when the environment sets
    it (the user's choice), else one fewer than the available CPUs, and at least one."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        return int(os.environ["OMP_NUM_THREADS"])
    return max(1, available_cpus() - 1)


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--threads N`` (default: :func:`default_threads`)."""
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads for torch (default: $OMP_NUM_THREADS, else one fewer "
                             "than the CPUs available, at least 1)")


def set_threads(threads: int | None = None) -> int:
    """Make torch use ``threads`` CPU threads (None: :func:`default_threads`); returns the count.

    Raises:
        ValueError: ``threads`` is below 1.
    """
    count = default_threads() if threads is None else threads
    if count < 1:
        raise ValueError(f"--threads must be at least 1, got {threads}")
    torch.set_num_threads(count)
    # debug, not info: bad input must stay one line on stderr (utils.cli.run_main)
    logger.debug("torch runs on %d CPU thread(s)", count)
    return count
