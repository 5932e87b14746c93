"""The .gsc viewer page (``render.py --export scene.html`` of a compact bitstream) in headless
Chromium on software GL: the page decodes the embedded bundled-scene bitstream in its worker,
reports the file's Gaussian count and up vector and draws a canvas that is not blank; the same
page shows another file hosted beside it (``?url=``, over a local HTTP server), and refuses a
damaged one with the JavaScript decoder's error message. Also render.py's flag checks."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import torch
from PIL import Image

import render as render_cli
from arguments import ModelParams
from compression.bitstream import save
from compression.compact_format import CompactFormatError, read_compact
from compression.layouts import LAYOUTS
from compression.settings import CompressionParams
from scene import Scene
from scene.gaussian_model import GaussianModel
from tests._browser import Browser, chromium_executable, served
from tests._codec import prepare
from utils.cli import EXIT_BAD_INPUT
from utils.web_renderer import RendererUnavailable, renderer_module

REPO = Path(__file__).resolve().parents[1]
HARNESS = REPO / "tests" / "web" / "harness.mjs"
WIDTH, HEIGHT = 640, 480
#: the canvas above the page's status bar
CANVAS_BOX = (0, 0, WIDTH, HEIGHT - 40)
DECODE_TIMEOUT_S = 120


def _browser_missing() -> Optional[str]:
    """Why the page cannot be opened here, or None."""
    try:
        renderer_module(install=False)
    except (RendererUnavailable, FileNotFoundError):
        return ("the viewer page's renderer (npm playcanvas, the version web/package.json "
                "pins) is not installed: run `make tools`")
    if chromium_executable() is None:
        return "no chromium / google-chrome on PATH (.ci/run installs Debian's chromium)"
    if shutil.which("node") is None:
        return "no Node.js (the damaged file's expected message comes from web/gsc.mjs in Node)"
    return None


needs_browser = pytest.mark.skipif(_browser_missing() is not None,
                                   reason=str(_browser_missing()))


def _compact(folder: Path, points: int, quality: int) -> Path:
    """Random initial Gaussians of the bundled lego scene compressed with its training
    cameras (whose mean up vector, the scene's +z, goes into the format-3 file)."""
    params = ModelParams(source_path=str(REPO / "data" / "lego_sample"),
                         model_path=str(folder / "model"), eval=True, resolution=8,
                         white_background=True, num_random_points=points)
    gaussians = GaussianModel(3)
    scene = Scene(params, gaussians, shuffle=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the importance renders of tiny views: threads only contend
    try:
        state, coded = prepare({k: v.detach().clone() for k, v in gaussians.params.items()},
                               scene.getTrainCameras(),
                               CompressionParams(layout="compact", quality=quality),
                               torch.Generator().manual_seed(0))
    finally:
        torch.set_num_threads(threads)
    state.eval()
    return Path(save(state, coded, folder / "compact")["path"])


@pytest.fixture(scope="module")
def lego_gsc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _compact(tmp_path_factory.mktemp("lego_gsc"), 2000, 5)


@pytest.fixture(scope="module")
def page(lego_gsc: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The page render.py exports for the bitstream (the default page of a .gsc model)."""
    try:
        renderer_module(install=False)
    except (RendererUnavailable, FileNotFoundError) as missing:
        pytest.skip(f"the viewer page's renderer is not installed ({missing})")
    out = tmp_path_factory.mktemp("page") / "lego.html"
    assert render_cli.main(["--given_ply_path", str(lego_gsc), "--export", str(out),
                            "--quiet"]) == []
    return out


def _settled(browser: Browser, url: str) -> dict:
    """Open ``url`` and return the page's <body> data once it is ready or has refused."""
    browser.open(url, WIDTH, HEIGHT)
    browser.wait_until("['ready', 'error'].includes(document.body.dataset.state)",
                       DECODE_TIMEOUT_S)
    return browser.evaluate("({...document.body.dataset, "
                            "error: document.getElementById('error').textContent})")


def _canvas_std(browser: Browser, path: Path) -> float:
    """Standard deviation of the canvas's pixels once the renderer has drawn a few frames."""
    browser.evaluate("new Promise((done) => { let frames = 10; const next = () => "
                     "--frames ? requestAnimationFrame(next) : done(true); next(); })")
    with Image.open(browser.screenshot(path)) as shot:
        return float(np.asarray(shot.convert("RGB").crop(CANVAS_BOX), np.float32).std())


def test_page_embeds_the_file_and_the_code(page: Path, lego_gsc: Path) -> None:
    text = page.read_text()
    assert text.startswith("<!doctype html>")
    assert 'src="http' not in text and "<!--gsc:payload-->" not in text
    for element in ("gsc-renderer", "gsc-viewer", "gsc-worker", "gsc-scene"):
        assert f'id="{element}"' in text
    # one page is the size of its renderer and viewer plus the .gsc in base64
    assert page.stat().st_size < 1_100_000 + 4 / 3 * lego_gsc.stat().st_size


@pytest.mark.slow
@needs_browser
def test_exported_page_shows_the_scene_upright(page: Path, lego_gsc: Path,
                                               tmp_path: Path) -> None:
    """The embedded file decodes in the page to its Gaussian count, is shown with the up
    vector it carries (the lego's +z, from its cameras), and the canvas is drawn."""
    stream = read_compact(lego_gsc, LAYOUTS["compact"])
    with Browser(chromium_executable(), tmp_path / "profile", software_gl=True,
                 timeout_s=DECODE_TIMEOUT_S) as browser:
        data = _settled(browser, page.as_uri())
        assert data["state"] == "ready", data["error"]
        std = _canvas_std(browser, tmp_path / "page.png")
    assert int(data["gaussians"]) == stream.num_gaussians
    up = np.array([float(v) for v in data["up"].split()])
    np.testing.assert_array_equal(up.astype(np.float32), stream.up)
    assert up[2] > 0.9  # Blender scenes are z-up
    assert std > 8, f"the canvas is blank (pixel std {std:.1f})"


def _js_error(path: Path) -> dict:
    """What web/gsc.mjs in Node says of ``path``: {name, message} of its error."""
    done = subprocess.run(["node", str(HARNESS), "gsc", str(path.parent), str(path)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["error"]


@pytest.mark.slow
@needs_browser
def test_page_shows_a_hosted_file_and_refuses_a_damaged_one(page: Path, lego_gsc: Path,
                                                            tmp_path: Path) -> None:
    """``?url=`` replaces the embedded scene by a file served beside the page; a file with one
    byte changed (CRC not recomputed) is refused in the page with the decoder's message, as
    the Python reader refuses it; a missing file is reported with its HTTP status."""
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(page, site / "viewer.html")
    hosted = _compact(tmp_path / "hosted", 1000, 3)
    shutil.copy(hosted, site / "hosted.gsc")
    damaged = bytearray(hosted.read_bytes())
    damaged[len(damaged) // 2] ^= 0x10
    (site / "damaged.gsc").write_bytes(bytes(damaged))
    with pytest.raises(CompactFormatError):
        read_compact(site / "damaged.gsc", LAYOUTS["compact"])
    expected = _js_error(site / "damaged.gsc")
    assert expected["name"] == "GscFormatError"
    with served(site) as base, Browser(chromium_executable(), tmp_path / "profile",
                                        software_gl=True, timeout_s=DECODE_TIMEOUT_S) as browser:
        shown = _settled(browser, f"{base}/viewer.html?url=hosted.gsc")
        std = _canvas_std(browser, tmp_path / "hosted.png")
        refused = _settled(browser, f"{base}/viewer.html?url=damaged.gsc")
        missing = _settled(browser, f"{base}/viewer.html?url=absent.gsc")
    counts = [read_compact(path, LAYOUTS["compact"]).num_gaussians for path in (hosted, lego_gsc)]
    assert shown["state"] == "ready", shown["error"]
    assert int(shown["gaussians"]) == counts[0] != counts[1]
    assert std > 8, f"the canvas is blank (pixel std {std:.1f})"
    assert refused["state"] == "error" and "gaussians" not in refused
    assert refused["error"] == expected["message"]
    assert missing["state"] == "error" and missing["error"].endswith("HTTP 404")


# ------------------------------------------------------------------ render.py's flags

@pytest.mark.slow
def test_web_format_gsc_needs_a_compact_bitstream(tmp_path: Path, shared_data: Path) -> None:
    """``--web_format gsc`` of a PLY: one error line, exit status 2, no page; ``--web_format``
    with an export that is no page: a usage error."""
    ply = shared_data / "pretrained_ply" / "small_3dgs_sh3.ply"
    out = tmp_path / "page.html"
    done = subprocess.run([sys.executable, str(REPO / "render.py"), "--given_ply_path", str(ply),
                           "--export", str(out), "--web_format", "gsc", "--quiet"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == EXIT_BAD_INPUT and not out.exists()
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(ply) in lines[0] and "not a compact bitstream" in lines[0]
    with pytest.raises(SystemExit):
        render_cli.main(["--given_ply_path", str(ply), "--export", str(tmp_path / "m.ply"),
                         "--web_format", "sog", "--quiet"])
    assert not (tmp_path / "m.ply").exists()
