"""Every file and folder name of a model folder, in one place (README "Output folder").

::

    <model>/
      cfg_args  cameras.json  input.ply                        (scene and training setup)
      point_cloud/iteration_<N>/point_cloud.ply                (trained model)
      chkpnt<N>.pth                                            (checkpoints)
      compression/
        results.csv                                            (one row per saved bitstream)
        <layout>/                                              (TensorBoard events of the finetune)
        <layout>/iteration_<k>/{bins/, bins.zip, report.json}  (the layout's container names it:
                                                               compact: bitstream.gsc)
        sweep/<layout>_<k>_b<bits>/{bins/, bins.zip, report.json}   (bit-depth sweep)
        sweep/<layout>_q<quality>/{bitstream.gsc, report.json}      (quality sweep)
        peers/<codec>/{model.<ext>, peer.json}                 (another tool's codec: spz, sog)
      <train|test>/<method>_<suffix>/{renders,gt}/00000.png    (ours_<N>, compressed_<layout>_<k>)
      test/peer_<codec>/{renders,gt}/00000.png                 (decoded from another tool's file)
      results.json  per_view.json  report.html                 (metrics.py, make_report.py)
      viewer/<method>.html                                     (3D viewer pages of the report)

A sweep folder (``sweep.py``; each step folder is a model folder as above)::

    <sweep>/
      sweep.csv  sweep_averages.md  sweep.html                 (one row per job, averages, page)
      <scene>/trained/{scene.log, sweep_step.json}             (the scene step: train, score)
      <scene>/<layout>/<setting>/{job.log, sweep_step.json}    (one job: compress, render, score)

Writers and readers (training, the codec runner, render.py, metrics.py, the HTML report, the
RD sweep, sweep.py) build their paths here; nothing here imports anything of the project.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

PathLike = str | os.PathLike

CFG_ARGS = "cfg_args"
CAMERAS_JSON = "cameras.json"
INPUT_PLY = "input.ply"
POINT_CLOUD_DIR = "point_cloud"
POINT_CLOUD_PLY = "point_cloud.ply"
ITERATION_PREFIX = "iteration_"

COMPRESSION_DIR = "compression"
SWEEP_DIR = "sweep"
#: other tools' codecs run on the trained model (rd_sweep.py --peers, bench_peers.py)
PEERS_DIR = "peers"
PEER_JSON = "peer.json"
#: the bins container's files (a folder of .npz files and the same files zipped)
BINS_DIR = "bins"
BINS_ZIP = "bins.zip"
#: the compact container's single file (docs/COMPACT_FORMAT.md)
COMPACT_FILE = "bitstream.gsc"
REPORT_JSON = "report.json"
RESULTS_CSV = "results.csv"
RESULTS_HEADER = ("Submethod", "PSNR", "SSIM", "LPIPS", "Size [Bytes]", "#Gaussians")

TRAIN_SPLIT, TEST_SPLIT = "train", "test"
#: render-folder methods: the trained model, a decoded bitstream, and a file given to render.py
UNCOMPRESSED_METHOD = "ours"
COMPRESSED_METHOD = "compressed"
PEER_METHOD = "peer"
GIVEN_SUFFIX = "given"
RESULTS_JSON = "results.json"
PER_VIEW_JSON = "per_view.json"
REPORT_HTML = "report.html"
VIEWER_DIR = "viewer"

#: sweep.py's files: the sweep folder's tables and page, each step folder's log and record
SWEEP_CSV = "sweep.csv"
SWEEP_AVERAGES_MD = "sweep_averages.md"
SWEEP_HTML = "sweep.html"
SWEEP_TRAINED_DIR = "trained"
SCENE_LOG = "scene.log"
JOB_LOG = "job.log"
SWEEP_STEP_JSON = "sweep_step.json"

_ITERATION = re.compile(re.escape(ITERATION_PREFIX) + r"(?P<k>\d+)$")
_SWEEP = re.compile(r"(?P<layout>[^_]+)_(?P<k>\d+)_b(?P<bits>\d+)$")
_QUALITY_SWEEP = re.compile(r"(?P<layout>[^_]+)_q(?P<quality>\d+)$")
_COMPRESSED = re.compile(re.escape(COMPRESSED_METHOD) + r"_(?P<layout>.+)_(?P<k>\d+)$")
_PEER = re.compile(re.escape(PEER_METHOD) + r"_(?P<codec>[a-z0-9]+)$")


def iteration_name(iteration: int) -> str:
    """``iteration_<k>``."""
    return f"{ITERATION_PREFIX}{iteration}"


def point_cloud_dir(model_path: PathLike) -> Path:
    """``<model>/point_cloud`` (one ``iteration_<N>`` folder per save)."""
    return Path(model_path) / POINT_CLOUD_DIR


def point_cloud_path(model_path: PathLike, iteration: int) -> Path:
    """``<model>/point_cloud/iteration_<N>/point_cloud.ply``."""
    return point_cloud_dir(model_path) / iteration_name(iteration) / POINT_CLOUD_PLY


def checkpoint_path(model_path: PathLike, iteration: int) -> Path:
    """``<model>/chkpnt<N>.pth`` (the original 3DGS name)."""
    return Path(model_path) / f"chkpnt{iteration}.pth"


def compression_dir(model_path: PathLike) -> Path:
    """``<model>/compression``."""
    return Path(model_path) / COMPRESSION_DIR


def layout_dir(model_path: PathLike, layout: str) -> Path:
    """``<model>/compression/<layout>`` (its iterations and the finetune's TensorBoard events)."""
    return compression_dir(model_path) / layout


def iteration_dir(model_path: PathLike, layout: str, iteration: int) -> Path:
    """``<model>/compression/<layout>/iteration_<k>`` (bitstream and report.json)."""
    return layout_dir(model_path, layout) / iteration_name(iteration)


def parse_iteration_dir(folder: PathLike, model_path: PathLike) -> Optional[tuple[str, int]]:
    """``(layout, k)`` when ``folder`` is ``<model>/compression/<layout>/iteration_<k>``."""
    folder = Path(folder).resolve()
    match = _ITERATION.match(folder.name)
    if match is None or folder.parent.parent != compression_dir(model_path).resolve():
        return None
    return folder.parent.name, int(match["k"])


def saved_reports(model_path: PathLike) -> list[Path]:
    """Every ``compression/<layout>/iteration_<k>/report.json`` of a model, by layout and k."""
    found = [(path.parent.parent.name, int(match["k"]), path) for path in
             compression_dir(model_path).glob(f"*/{ITERATION_PREFIX}*/{REPORT_JSON}")
             if (match := _ITERATION.match(path.parent.name))]
    return [path for _, _, path in sorted(found)]


def results_csv_path(model_path: PathLike) -> Path:
    """``<model>/compression/results.csv``."""
    return compression_dir(model_path) / RESULTS_CSV


def submethod(layout: str, iteration: int) -> str:
    """results.csv name of a saved bitstream: ``<layout>_<k>``."""
    return f"{layout}_{iteration}"


def sweep_submethod(layout: str, iteration: int, bits: int) -> str:
    """results.csv name of an RD-sweep point: ``<layout>_<k>_b<bits>``."""
    return f"{submethod(layout, iteration)}_b{bits}"


def parse_sweep_submethod(name: str) -> Optional[tuple[str, int, int]]:
    """``(layout, k, bits)`` of an RD-sweep Submethod, else None."""
    match = _SWEEP.match(name)
    return None if match is None else (match["layout"], int(match["k"]), int(match["bits"]))


def quality_submethod(layout: str, quality: int) -> str:
    """results.csv name (and sweep folder) of a quality-sweep point: ``<layout>_q<quality>``."""
    return f"{layout}_q{quality}"


def parse_quality_submethod(name: str) -> Optional[tuple[str, int]]:
    """``(layout, quality)`` of a quality-sweep Submethod, else None."""
    match = _QUALITY_SWEEP.match(name)
    return None if match is None else (match["layout"], int(match["quality"]))


def submethod_layout(name: str) -> str:
    """The layout of a results.csv Submethod (its text before the first underscore)."""
    return name.split("_", 1)[0]


def peer_dir(model_path: PathLike, codec: str) -> Path:
    """``<model>/compression/peers/<codec>``: another tool's file of the trained model and its
    ``peer.json``."""
    return compression_dir(model_path) / PEERS_DIR / codec


def saved_peer_reports(model_path: PathLike) -> list[Path]:
    """Every ``compression/peers/<codec>/peer.json`` of a model, by codec."""
    return sorted((compression_dir(model_path) / PEERS_DIR).glob(f"*/{PEER_JSON}"))


def peer_method(codec: str) -> str:
    """Render-folder name of a model decoded from another tool's file: ``peer_<codec>``."""
    return f"{PEER_METHOD}_{codec}"


def parse_peer_method(method: str) -> Optional[str]:
    """The codec of a ``peer_<codec>`` render folder name, else None."""
    match = _PEER.match(method)
    return None if match is None else match["codec"]


def sweep_dir(model_path: PathLike, name: str) -> Path:
    """``<model>/compression/sweep/<name>`` (``<layout>_<k>_b<bits>``, ``<layout>_q<quality>``)."""
    return compression_dir(model_path) / SWEEP_DIR / name


def compressed_method(layout: str) -> str:
    """Render-folder method of a decoded bitstream: ``compressed_<layout>``."""
    return f"{COMPRESSED_METHOD}_{layout}"


def parse_compressed_method(method: str) -> Optional[tuple[str, int]]:
    """``(layout, k)`` of a ``compressed_<layout>_<k>`` render folder name, else None."""
    match = _COMPRESSED.match(method)
    return None if match is None else (match["layout"], int(match["k"]))


def render_name(method: str, suffix: int | str) -> str:
    """Render-folder name ``<method>_<suffix>`` (``ours_<N>``, ``compressed_<layout>_<k>``)."""
    return f"{method}_{suffix}"


def render_dir(model_path: PathLike, split: str, name: str) -> Path:
    """``<model>/<train|test>/<name>`` (holds ``renders/`` and ``gt/``)."""
    return Path(model_path) / split / name


def viewer_page_path(model_path: PathLike, method: str) -> Path:
    """``<model>/viewer/<method>.html``: the 3D viewer page of a report variant (``ours_<N>``,
    ``compressed_<layout>_<k>``)."""
    return Path(model_path) / VIEWER_DIR / f"{method}.html"


def sweep_scene_dir(sweep_path: PathLike, scene: str) -> Path:
    """``<sweep>/<scene>/trained``: the model folder of a sweep's scene step."""
    return Path(sweep_path) / scene / SWEEP_TRAINED_DIR


def sweep_job_dir(sweep_path: PathLike, scene: str, layout: str, setting: str) -> Path:
    """``<sweep>/<scene>/<layout>/<setting>``: the model folder of one sweep job."""
    return Path(sweep_path) / scene / layout / setting
