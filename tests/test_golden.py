"""Golden bitstreams: the same input and seed give the committed ``bins.zip`` byte for byte.

Each case runs the real command lines (``train.py --given_ply_path`` to compress, ``render.py
--export_ply`` to decode), so the check holds whatever the codec's internals look like:

* ``ply_<layout>``: the first 500 Gaussians of ``../shared/data/pretrained_ply`` (SH degree 3),
  no scene: camera-free importance, no finetune, the save at iteration 0;
* ``scene_<layout>``: the same Gaussians truncated to SH degree 1 and moved into the bundled
  lego sample's unit sphere, compressed with its cameras (-r 8): importance from renders,
  3 finetune steps, the save at iteration 3.

``tests/golden/<case>.bins.zip`` is the expected archive, ``<case>.decoded.npz`` the arrays of
the PLY its decoding exports. Both were written by the codec as it stood before the layouts
became data (``python tests/test_golden.py`` rewrites them: only for a deliberate format
change). The scene cases depend on float results of the CPU rasterizer, whose sums depend on
the number of threads: every command runs with ``--threads 1`` (whatever the default thread
count of the machine) and the scene cases pin this machine's torch 2.13.0 CPU build.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import render as render_cli  # noqa: E402
import train as train_cli  # noqa: E402
from scene.ply import read_ply, write_ply  # noqa: E402
from utils.cli import run_main  # noqa: E402

GOLDEN = REPO / "tests" / "golden"
SHARED_PLY = REPO.parent / "shared" / "data" / "pretrained_ply" / "small_3dgs_sh3.ply"
SAMPLE_SCENE = REPO / "data" / "lego_sample"
GAUSSIANS = 500
FINETUNE_STEPS = 3
PLY_FIELDS = ("xyz", "f_dc", "f_rest", "opacity", "scaling", "rotation")

LAYOUT_FLAGS = {
    "seed": ["--layout", "seed", "--n_block", "8"],
    "official": ["--layout", "official", "--n_block", "8", "--codebook_size", "32",
                 "--vq_steps", "10", "--quantizer", "lsq", "--num_bits", "10",
                 "--oct_merge", "imp"],
}
CASES = [f"{source}_{layout}" for source in ("ply", "scene") for layout in LAYOUT_FLAGS]


def run_one_thread(main: Callable[[Sequence[str]], object], prog: str,
                   args: Sequence[str]) -> int:
    """Run an entry point in this process with ``--threads 1``; the test process keeps its
    own torch thread count."""
    threads = torch.get_num_threads()
    try:
        return run_main(main, prog, [*args, "--threads", "1"])
    finally:
        torch.set_num_threads(threads)


def input_ply(case: str, folder: Path) -> Path:
    """The case's input PLY, derived from the shared pretrained PLY (written into ``folder``)."""
    arrays = {k: v[:GAUSSIANS] for k, v in read_ply(SHARED_PLY).items()}
    if case.startswith("scene_"):
        # Into the sample's unit sphere (its cameras orbit at radius 4), SH degree 1.
        centre = arrays["xyz"].mean(axis=0)
        radius = float(np.abs(arrays["xyz"] - centre).max())
        arrays["xyz"] = (arrays["xyz"] - centre) / radius
        arrays["scaling"] = arrays["scaling"] - np.float32(np.log(radius))
        arrays["f_rest"] = arrays["f_rest"][:, :3]
    return write_ply(folder / f"{case}.ply", arrays)


def compress(case: str, folder: Path) -> Path:
    """Run train.py on the case's input; returns the saved bins.zip."""
    source, layout = case.split("_", 1)
    model = folder / "model"
    args = ["--given_ply_path", str(input_ply(case, folder)), "-m", str(model), "--quiet",
            "--seed", "0", *LAYOUT_FLAGS[layout]]
    iteration = 0
    if source == "scene":
        iteration = FINETUNE_STEPS
        args += ["-s", str(SAMPLE_SCENE), "-r", "8", "--eval", "--sh_degree", "1",
                 "--backend", "torch", "--finetune_iterations", str(FINETUNE_STEPS),
                 "--finetune_test_iterations", str(FINETUNE_STEPS)]
    assert run_one_thread(train_cli.main, "train.py", args) == 0
    return model / "compression" / layout / f"iteration_{iteration}" / "bins.zip"


def decoded_arrays(archive: Path, folder: Path) -> dict[str, np.ndarray]:
    """The arrays of the PLY that ``render.py --export_ply`` writes from ``archive``."""
    exported = folder / "decoded.ply"
    assert run_one_thread(render_cli.main, "render.py",
                          ["--given_ply_path", str(archive), "--export_ply", str(exported),
                           "--quiet"]) == 0
    arrays = read_ply(exported)
    return {name: arrays[name] for name in PLY_FIELDS}


@pytest.fixture(scope="module", autouse=True)
def _shared_ply() -> None:
    if not SHARED_PLY.is_file():
        pytest.skip(f"{SHARED_PLY} is absent (../shared is only beside CI and developer "
                    f"checkouts)")


@pytest.mark.parametrize("case", CASES)
def test_bitstream_matches_golden(case: str, tmp_path: Path) -> None:
    archive = compress(case, tmp_path)
    expected = (GOLDEN / f"{case}.bins.zip").read_bytes()
    assert archive.read_bytes() == expected, f"{case}: bins.zip differs from the golden file"
    decoded = decoded_arrays(archive, tmp_path)
    with np.load(GOLDEN / f"{case}.decoded.npz", allow_pickle=False) as stored:
        assert sorted(stored.files) == sorted(PLY_FIELDS)
        for name in PLY_FIELDS:
            np.testing.assert_array_equal(decoded[name], stored[name], err_msg=f"{case}/{name}")


def _regenerate() -> None:
    """Rewrite every golden file from the current code (a deliberate format change only)."""
    import tempfile

    GOLDEN.mkdir(exist_ok=True)
    for case in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            archive = compress(case, Path(tmp))
            (GOLDEN / f"{case}.bins.zip").write_bytes(archive.read_bytes())
            np.savez_compressed(GOLDEN / f"{case}.decoded.npz",
                                **decoded_arrays(archive, Path(tmp)))
        print(f"{case}: {(GOLDEN / f'{case}.bins.zip').stat().st_size} bytes")


if __name__ == "__main__":
    _regenerate()
