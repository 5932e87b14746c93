"""utils/threads: the default CPU thread count, and --threads on every entry point."""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO
from utils import threads
from utils.cli import run_main


@pytest.fixture
def keep_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_default_leaves_one_cpu_free(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    for cpus, expected in ((1, 1), (2, 1), (16, 15)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, n=cpus: set(range(n)))
        assert threads.available_cpus() == cpus
        assert threads.default_threads() == expected
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's explicit choice wins
    assert threads.default_threads() == 3


def test_set_threads(keep_torch_threads, monkeypatch: pytest.MonkeyPatch) -> None:
    assert threads.set_threads(2) == 2 and torch.get_num_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.set_threads() == 1 and torch.get_num_threads() == 1
    with pytest.raises(ValueError, match="--threads must be at least 1, got 0"):
        threads.set_threads(0)
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize("script, args", [
    ("train.py", []),
    ("render.py", []),
    ("metrics.py", ["-m", "{empty}"]),
    ("scripts/make_report.py", ["-m", "{empty}"]),
    ("scripts/rd_sweep.py", ["-m", "{empty}"]),
])
@pytest.mark.slow
def test_entry_points_apply_threads(script: str, args: list[str], tmp_path: Path,
                                    keep_torch_threads, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each entry point refuses 0 in one line, and applies a valid count before it stops on
    the missing scene / models."""
    args = [a.format(empty=tmp_path) for a in args]
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    refused = subprocess.run([sys.executable, script, *args, "--threads", "0"], cwd=REPO,
                             env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f"{Path(script).name}: error: --threads must be at least 1, got 0"]

    monkeypatch.syspath_prepend(str((REPO / script).parent))
    main = importlib.import_module(Path(script).stem).main
    torch.set_num_threads(1)
    try:
        status = run_main(main, Path(script).name, [*args, "--threads", "2", "--quiet"])
    except SystemExit as stop:  # argparse's own refusal (render.py without -m)
        status = stop.code
    assert status == 2 and torch.get_num_threads() == 2
