"""benchmarks/bench_end_to_end.py: a default model trained elsewhere is reused as run (a) only
when its cfg_args match the recipe."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_end_to_end import given_run  # noqa: E402
from scene.formats import ply_vertex_count  # noqa: E402

#: a few iterations of the bundled scene, the recipe that run (a) is checked against
RECIPE = ["-r", "8", "--white_background", "--num_random_points", "500", "--iterations", "20",
          "--test_iterations", "20", "--save_iterations", "20", "--densify_from_iter", "5",
          "--densification_interval", "5", "--densify_until_iter", "15"]


@pytest.mark.slow
def test_a_default_model_is_reused_only_with_its_recipe(sample_scene, tmp_path):
    model = tmp_path / "default"
    subprocess.run([sys.executable, "train.py", "-s", str(sample_scene), "-m", str(model),
                    "--eval", "--skip_compress", "--quiet", *RECIPE], cwd=REPO, check=True,
                   timeout=600)
    record = given_run(model, RECIPE)
    ply = model / "point_cloud" / "iteration_20" / "point_cloud.ply"
    assert record["gaussians"] == ply_vertex_count(ply)
    assert record["train_seconds"] >= 0 and record["model"] == str(model)
    # Another schedule, or the MCMC strategy's flags: not the model's recipe.
    other = RECIPE[:-1] + ["10"]
    with pytest.raises(ValueError, match="densify_until_iter: 10 != 15"):
        given_run(model, other)
    with pytest.raises(ValueError, match="cap_max"):
        given_run(model, RECIPE + ["--strategy", "mcmc", "--cap_max", "400"])
