"""Scene loading speed on the shared scenes: COLMAP binary vs text parsing and Scene
construction (decode + resize) per resolution. Prints JSON.

    .venv/bin/python benchmarks/bench_scene_loading.py
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from arguments import ModelParams  # noqa: E402
from scene import Scene  # noqa: E402
from scene.colmap_loader import read_colmap_model  # noqa: E402

DATA = REPO.parent / "shared" / "data"


def _best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    results = {}
    for name in ("statuette", "sacre_coeur"):
        for form in ("sparse", "sparse_txt"):
            seconds = _best_of(lambda: read_colmap_model(DATA / name / form / "0"))
            results[f"{name}/{form}_read_ms"] = round(seconds * 1e3, 2)
    for name, resolution in (("statuette", -1), ("statuette", 2), ("lego_200", -1)):
        args = ModelParams(source_path=str(DATA / name), resolution=resolution, eval=True,
                           num_random_points=100_000)
        start = time.perf_counter()
        scene = Scene(args, shuffle=False)
        scene.load_images()  # cameras decode on first use; time the decoding as before
        seconds = time.perf_counter() - start
        views = len(scene.getTrainCameras()) + len(scene.getTestCameras())
        results[f"{name}/r{resolution}_scene_s"] = round(seconds, 3)
        results[f"{name}/r{resolution}_ms_per_view"] = round(seconds / views * 1e3, 2)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
