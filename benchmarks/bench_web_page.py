"""The .gsc viewer page: decode time of a 1M-Gaussian .gsc in headless Chromium beside Node.js
and Python, and the page's bytes against the SOG page splat-transform writes; prints JSON.

Decode: bench_web_decode's 1,000,000 synthetic Gaussians at --quality 9 (or --gsc FILE), the
page (no scene embedded) and the file served from a local HTTP server, opened as
``viewer.html?url=<file>`` in headless Chromium on software GL (tests/_browser.py's flags); the
page's ``data-decode-ms`` is the time from the downloaded bytes to the decoded arrays back from
its worker (worker start and transfers included), best of --repeat page loads. Node.js and
Python times, and ``node web/gsc2ply.mjs`` against ``render.py --export_ply``, as
bench_web_decode.py measures them (same functions, same file).

Pages: for each ``--model NAME=FILE.gsc`` and the shared PLY compressed at --quality 8 without
cameras, ``render.py --given_ply_path FILE --export page.html`` (the .gsc page) and
``... --web_format sog`` (splat-transform's SOG page of the same decoded model).

    .venv/bin/python benchmarks/bench_web_page.py [--gsc FILE] [--repeat 3]
        [--model lego_sample=.../bitstream.gsc --model lego_200=.../bitstream.gsc] [--skip_decode]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_web_decode import (add_decode_arguments, decode_report,  # noqa: E402
                              node_decode_seconds, python_decode_seconds)
from compression.bitstream import read_bitstream, save  # noqa: E402
from compression.settings import CompressionParams, codec_settings, resolve_settings  # noqa: E402
from scene.gaussian_model import GaussianModel  # noqa: E402
from scene.web_page import gsc_page  # noqa: E402
from tests._browser import Browser, chromium_executable, served  # noqa: E402

SHARED_PLY = REPO.parent / "shared" / "data" / "pretrained_ply" / "small_3dgs_sh3.ply"
PAGE_TIMEOUT_S = 600


def _renderer_cpu_seconds(browser: Browser) -> float:
    """CPU seconds (user + system) used so far by the browser's renderer processes (where the
    page and its worker run; forked by its zygote), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents, used, renderers = {}, {}, set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            if b"--type=renderer" in (proc / "cmdline").read_bytes():
                renderers.add(int(proc.name))
        except OSError:  # a process that ended meanwhile
            continue
        parents[int(proc.name)] = int(fields[1])
        used[int(proc.name)] = (int(fields[11]) + int(fields[12])) / ticks

    def of_this_browser(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == browser.process.pid:
                return True
        return False

    return sum(used[pid] for pid in renderers if of_this_browser(pid))


class _CpuSampler:
    """The browser's renderer CPU time sampled every 10 ms in a thread: (monotonic s, CPU s)."""

    def __init__(self, browser: Browser) -> None:
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(browser,), daemon=True)
        self._thread.start()

    def _run(self, browser: Browser) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), _renderer_cpu_seconds(browser)))
            self._stop.wait(0.01)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def at(self, moment: float) -> float:
        """CPU seconds at ``moment`` (linear between the samples around it)."""
        times, cpu = zip(*self.samples)
        return float(np.interp(moment, times, cpu))


def chromium_decode_seconds(path: Path, repeat: int) -> dict[str, float]:
    """Best decode time of the page's worker in headless Chromium (the file served beside
    the page, ``?url=``): the page's own wall time (``data-decode-ms``), and the renderer
    processes' CPU time over that span, from the moment the page is seen ``decoding`` (polled
    every 20 ms: the span may start up to ~20 ms late). The page builds the renderer's data
    right after, in the same task, so the CPU is read from samples taken meanwhile, not after."""
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        site.mkdir()
        (site / "viewer.html").write_text(gsc_page(None), encoding="utf-8")
        shutil.copy(path, site / "scene.gsc")
        wall, cpu = [], []
        with served(site) as base, Browser(chromium_executable(), Path(tmp) / "profile",
                                            software_gl=True, timeout_s=PAGE_TIMEOUT_S) as browser:
            for _ in range(repeat):
                sampler = _CpuSampler(browser)
                try:
                    browser.open(f"{base}/viewer.html?url=scene.gsc", 1280, 720)
                    browser.wait_until("document.body.dataset.state !== 'loading'",
                                       PAGE_TIMEOUT_S, poll_s=0.02)
                    start = time.monotonic()
                    browser.wait_until("document.body.dataset.decodeMs || "
                                       "document.body.dataset.state === 'error'", PAGE_TIMEOUT_S,
                                       poll_s=0.02)
                finally:
                    sampler.stop()
                data = browser.evaluate("({...document.body.dataset, "
                                        "error: document.getElementById('error').textContent})")
                if "decodeMs" not in data:
                    raise RuntimeError(f"{path}: the page refused it: {data['error']}")
                wall.append(float(data["decodeMs"]) / 1000)
                cpu.append(sampler.at(start + wall[-1]) - sampler.at(start))
    return {"wall": min(wall), "cpu": min(cpu)}


def shared_ply_gsc(folder: Path) -> Path:
    """The shared PLY compressed with --layout compact at --quality 8 (no cameras)."""
    model = GaussianModel(3)
    model.load_ply(SHARED_PLY)
    settings = codec_settings(resolve_settings(CompressionParams(layout="compact", quality=8)))
    state, coded = settings.layout.codec.prepare(
        {k: v.detach().clone() for k, v in model.params.items()}, None, settings,
        torch.Generator().manual_seed(0))
    state.eval()
    return Path(save(state, coded, folder, measure_decode=False)["path"])


def page_sizes(name: str, gsc: Path, folder: Path) -> dict[str, object]:
    """Bytes of the .gsc, its page, and the SOG page of the same decoded model."""
    pages = {}
    for web_format in ("gsc", "sog"):
        page = folder / f"{name}.{web_format}.html"
        subprocess.run([sys.executable, "render.py", "--given_ply_path", str(gsc), "--export",
                        str(page), "--web_format", web_format, "--quiet"], cwd=REPO, check=True,
                       capture_output=True)
        pages[web_format] = page.stat().st_size
    return {"num_gaussians": read_bitstream(gsc).num_gaussians, "gsc_bytes": gsc.stat().st_size,
            "gsc_page_bytes": pages["gsc"], "sog_page_bytes": pages["sog"],
            "gsc_page_over_sog_page": round(pages["gsc"] / pages["sog"], 3)}


def _named_file(text: str) -> tuple[str, Path]:
    name, _, path = text.partition("=")
    if not path:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=FILE.gsc")
    return name, Path(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_decode_arguments(parser)
    parser.add_argument("--model", type=_named_file, action="append", default=[],
                        help="NAME=FILE.gsc whose page sizes to measure (repeatable)")
    parser.add_argument("--skip_decode", action="store_true", help="page sizes only")
    args = parser.parse_args()
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if chromium_executable() is None:
        missing.append("chromium")
    if missing:
        sys.exit(f"bench_web_page.py: error: not installed: {', '.join(missing)}")
    torch.set_num_threads(2)
    result: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if not args.skip_decode:
            result["decode"] = decode_report(args, folder, {"node": node_decode_seconds,
                                                            "chromium": chromium_decode_seconds,
                                                            "python": python_decode_seconds})
        models = [*args.model, ("shared_ply_q8", shared_ply_gsc(folder / "shared"))]
        result["pages"] = {name: page_sizes(name, gsc, folder) for name, gsc in models}
        result["page_without_scene_bytes"] = len(gsc_page(None).encode())
    result.update({
        "chromium": subprocess.run([chromium_executable(), "--version"], capture_output=True,
                                   text=True).stdout.strip(),
        "node_version": subprocess.run(["node", "--version"], capture_output=True,
                                       text=True).stdout.strip(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "note": "decode_seconds: best of --repeat, wall and CPU time; chromium: the page's "
                "data-decode-ms and its renderer processes' CPU time over the decode (headless, "
                "software GL); node / python: the process",
    })
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
