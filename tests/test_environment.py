"""The declared environments: requirements floors that hold, a valid conda environment.yml."""
from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement
from packaging.version import Version

yaml = pytest.importorskip("yaml", reason="PyYAML comes with requirements-test.txt (make venv)")

REPO = Path(__file__).resolve().parents[1]
#: first torch release whose torch.accelerator.current_accelerator takes check_available
#: (docs.pytorch.org/docs/2.7 has it, docs/2.6 does not); utils/render_utils needs it
TORCH_WITH_CHECK_AVAILABLE = Version("2.7")


def requirements(path: Path) -> dict[str, Requirement]:
    """Requirement lines of a pip requirements file by package name (options skipped)."""
    lines = (line.split(" #")[0].strip() for line in path.read_text().splitlines())
    found = [Requirement(line) for line in lines if line and not line.startswith(("#", "-"))]
    return {req.name.lower(): req for req in found}


def test_torch_floor_is_true() -> None:
    torch_req = requirements(REPO / "requirements.txt")["torch"]
    floors = [Version(spec.version) for spec in torch_req.specifier if spec.operator == ">="]
    assert floors and floors[0] >= TORCH_WITH_CHECK_AVAILABLE, torch_req
    assert Version(torch.__version__.split("+")[0]) in torch_req.specifier
    current_accelerator = torch.accelerator.current_accelerator
    assert "check_available" in inspect.signature(current_accelerator).parameters


def test_environment_yml_takes_torch_from_pip() -> None:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert env["name"] == "gs-compress"
    assert "pytorch" not in env["channels"] and "nvidia" not in env["channels"]
    conda_packages = [dep for dep in env["dependencies"] if isinstance(dep, str)]
    assert not [dep for dep in conda_packages if dep.startswith(("pytorch", "torch"))]
    assert "pip" in conda_packages
    pip_lines = next(dep["pip"] for dep in env["dependencies"] if isinstance(dep, dict))
    assert "-r requirements.txt" in pip_lines  # torch and its floor come from there
    assert any(Requirement(line).name == "gsplat" for line in pip_lines if line[0] != "-")
