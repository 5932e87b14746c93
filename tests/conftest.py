"""Session fixtures shared by the whole suite: where the data lives, skips when it is absent."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SHARED_DATA = SHARED / "data"
REFERENCE = SHARED / "reference"
SAMPLE_SCENE = REPO / "data" / "lego_sample"

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared is only beside CI and developer checkouts)")
    return path


@pytest.fixture(scope="session", autouse=True)
def no_weight_downloads(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``$TORCH_HOME`` (inherited by the scripts tests run) is a folder where torch.hub cannot
    make its cache (``hub/checkpoints`` is a file), so that no test reads the user's cached
    VGG16 or downloads it for LPIPS: evaluations skip LPIPS unless a test supplies weights
    (tests/test_lpips_reference.py writes its own cache)."""
    home = tmp_path_factory.mktemp("torch_home")
    (home / "hub").mkdir()
    (home / "hub" / "checkpoints").write_text("not a folder: no downloads in tests\n")
    previous = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("TORCH_HOME", None)
    else:
        os.environ["TORCH_HOME"] = previous


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; skips the test when the folder is absent (a user's fresh clone)."""
    return _require(SHARED_DATA)


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """``../shared/reference`` test vectors; skips when absent."""
    return _require(REFERENCE)


@pytest.fixture(scope="session")
def sample_scene() -> Path:
    """The bundled Blender-layout sample scene (always present in the repository)."""
    return SAMPLE_SCENE


@pytest.fixture(scope="session")
def lpips_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An LPIPS weights file in the documented layout: random VGG convs, positive linear heads
    (real VGG weights are not bundled; the numbers are not perceptual, the plumbing is real)."""
    import torch

    from utils.lpips import LPIPS

    gen = torch.Generator().manual_seed(3)
    state = {k: torch.randn(v.shape, generator=gen) * (0.05 if k.startswith("features") else 1)
             for k, v in LPIPS().state_dict().items()}
    state.update({k: v.abs() for k, v in state.items() if k.startswith("lin")})
    path = tmp_path_factory.mktemp("lpips") / "lpips_vgg.pth"
    torch.save(state, path)
    return path
