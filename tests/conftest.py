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
