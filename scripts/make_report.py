"""Print the summary table of a model folder and write its self-contained ``report.html``.

Usage: python scripts/make_report.py -m <model> [--trainings <model> ...] [--max_views 6]
       [--no_viewers] [--quiet] [--threads N]

``--trainings`` adds the saved bitstreams of other trainings of the same scene (a budgeted MCMC
model: ``train.py --strategy mcmc --cap_max N``, compressed, rendered and measured by
metrics.py in its own folder) as rows and RD points, their rate over this model's Gaussians.

With Node.js available, a 3D viewer page of the uncompressed model and of each decoded
bitstream is written to ``<model>/viewer/`` first and linked from the report; without it, the
report says how to get them.
"""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reporting.collect import collect_report  # noqa: E402
from reporting.page import save_report  # noqa: E402
from reporting.table import format_table  # noqa: E402
from reporting.viewer_pages import write_viewer_pages  # noqa: E402
from utils.cli import run_main  # noqa: E402
from utils.splat_transform import SplatTransformUnavailable  # noqa: E402
from utils.threads import add_threads_argument, set_threads  # noqa: E402

logger = logging.getLogger("make_report")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model_path", required=True, help="model folder")
    parser.add_argument("--trainings", nargs="+", default=[], metavar="MODEL",
                        help="model folders of other trainings of the scene to show beside it")
    parser.add_argument("--max_views", type=int, default=6,
                        help="test views shown as pictures (default: 6)")
    parser.add_argument("--no_viewers", action="store_true",
                        help="write no 3D viewer pages (they need Node.js)")
    parser.add_argument("--quiet", action="store_true", help="print the table only")
    add_threads_argument(parser)
    args = parser.parse_args(argv)
    if args.max_views < 1:
        parser.error(f"--max_views must be >= 1, got {args.max_views}")
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(message)s")
    set_threads(args.threads)  # the viewer pages decode bitstreams with torch
    data = collect_report(args.model_path, max_views=args.max_views, trainings=args.trainings)
    if not args.no_viewers:
        try:
            data = replace(data, viewer_pages=write_viewer_pages(data))
        except SplatTransformUnavailable as exc:
            logger.warning("no 3D viewer pages: %s", exc)
    out = save_report(data)
    print(format_table(data))
    print(f"\nreport: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "make_report.py", sys.argv[1:]))
