"""Session fixtures shared by the whole suite: where the data lives, skips when it is absent."""
from __future__ import annotations

import sys
from pathlib import Path

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
