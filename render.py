"""Render the train/test views of a trained model, like the original 3DGS render.py.

    python render.py -m <model> [-s <scene>] [--iteration N] [--skip_train] [--skip_test] [--quiet]
    python render.py -m <model> --dec_npz [--layout <layout>] [--iteration k]
    python render.py [-m <model>] --given_ply_path <model file | bins folder | bins.zip | .gsc>
                     [--export_ply P] [--export P.{ply,compressed.ply,spz,sog,html}]
                     [--web_format {gsc,sog}]

Flags saved in ``<model>/cfg_args`` at training time are reused; flags given here win. Images
go to ``<model>/<train|test>/ours_<N>/{renders,gt}/00000.png ...``; from the bitstream alone
(``--dec_npz``: latest k of the layout) to ``compressed_<layout>_<k>/``. ``--export_ply``
writes the decoded (or given) model as a standard 3DGS PLY, ``--export`` in the format its
extension names (all but .ply through splat-transform); either renders nothing. An ``.html``
page of a compact bitstream (``--given_ply_path bitstream.gsc``, or ``--dec_npz --layout
compact``) embeds the ``.gsc`` itself, decoded in the browser (``scene/web_page.py``);
``--web_format sog`` asks for splat-transform's SOG page instead (the only page of other
models). A model file is
a 3DGS PLY or a .spz, .sog, .splat, .ksplat or PlayCanvas compressed .ply (told apart by
content where the format has a signature).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch

from arguments import ModelParams, PipelineParams, add_arguments, extract, get_combined_args
from compression.compact_format import is_compact_file
from compression.layouts import LAYOUTS
from gaussian_renderer import render
from scene import Scene
from scene.formats import export_format
from scene.gaussian_model import GaussianModel
from scene.interop import export_model
from scene.web_page import WEB_FORMATS, write_gsc_page
from training.compress import load_for_rendering
from utils.cli import run_main
from utils.output_paths import UNCOMPRESSED_METHOD
from utils.render_utils import default_device, render_sets
from utils.threads import add_threads_argument, set_threads

logger = logging.getLogger("render")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Render the views of a trained 3DGS model.")
    add_arguments(parser, ModelParams, sentinel=True)
    add_arguments(parser, PipelineParams, sentinel=True)
    parser.add_argument("--iteration", type=int, default=-1,
                        help="iteration to render (default: -1, the latest saved)")
    parser.add_argument("--skip_train", action="store_true", help="do not render train views")
    parser.add_argument("--skip_test", action="store_true", help="do not render test views")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
    parser.add_argument("--dec_npz", action="store_true",
                        help="render the compressed model decoded from its bitstream alone "
                             "(bins.zip, or bitstream.gsc for --layout compact)")
    parser.add_argument("--layout", choices=tuple(LAYOUTS), default=None,
                        help="codec layout for --dec_npz (default: the first one saved, in the "
                             f"order {', '.join(LAYOUTS)})")
    parser.add_argument("--given_ply_path", type=str, default=None,
                        help="render this model file (.ply, compressed .ply, .spz, .sog, .splat, "
                             ".ksplat), bins folder, bins.zip or compact .gsc instead")
    parser.add_argument("--export_ply", type=str, default=None,
                        help="write the model as a standard 3DGS PLY and exit")
    parser.add_argument("--export", type=str, default=None,
                        help="write the model as .ply, .compressed.ply, .spz, .sog or .html "
                             "(viewer page), by extension, and exit")
    parser.add_argument("--web_format", choices=WEB_FORMATS, default=None,
                        help="what an --export .html page embeds: gsc (the compact bitstream, "
                             "decoded in the browser; the default for a .gsc model) or sog "
                             "(splat-transform's SOG page; the default for other models)")
    add_threads_argument(parser)
    return parser


def page_bitstream(web_format: Optional[str], source: Optional[Path]) -> Optional[Path]:
    """The compact bitstream an ``.html`` export embeds (the .gsc viewer page), or None for
    splat-transform's SOG page.

    Args:
        web_format: ``--web_format`` (None: gsc when ``source`` is a compact bitstream).
        source: the file the model was decoded from (None: a model folder's PLY).

    Raises:
        ValueError: ``--web_format gsc`` for a model that is no compact bitstream.
    """
    compact = source is not None and is_compact_file(source)
    if web_format == "gsc" and not compact:
        raise ValueError(f"--web_format gsc: {source or 'the model'} is not a compact bitstream;"
                         " give one (--given_ply_path <bitstream.gsc>, or -m <model> --dec_npz "
                         "--layout compact) or use --web_format sog")
    return source if compact and web_format != "sog" else None


def write_exports(gaussians: GaussianModel, cli: argparse.Namespace,
                  source: Optional[Path] = None) -> bool:
    """Write the ``--export_ply`` / ``--export`` files that were asked for; True if any.
    ``source``: the file ``gaussians`` was decoded from (an ``.html`` page may embed it)."""
    if cli.export_ply:
        logger.info("Writing %s (%d Gaussians)", cli.export_ply, gaussians.num_gaussians)
        gaussians.save_ply(cli.export_ply)
    if cli.export:
        logger.info("Writing %s (%d Gaussians)", cli.export, gaussians.num_gaussians)
        bitstream = (page_bitstream(cli.web_format, source)
                     if export_format(cli.export) == "html" else None)
        if bitstream is not None:
            write_gsc_page(bitstream, cli.export)
        else:
            export_model(gaussians, cli.export)
    return bool(cli.export_ply or cli.export)


def main(argv: Optional[Sequence[str]] = None) -> list[Path]:
    parser = build_parser()
    args = get_combined_args(parser, argv)
    # codec flags come from this command line only, never from the training run's cfg_args
    cli = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(message)s")
    set_threads(cli.threads)  # this machine's setting, never the training run's
    dataset, pipe = extract(ModelParams, args), extract(PipelineParams, args)
    if cli.export:
        export_format(cli.export)  # an unknown extension fails before any work
    if cli.web_format and (not cli.export or export_format(cli.export) != "html"):
        parser.error("--web_format applies to an --export .html page only")
    device = default_device()
    gaussians = None
    if cli.given_ply_path is not None or cli.dec_npz:
        gaussians, method, iteration, source = load_for_rendering(
            given_path=cli.given_ply_path, dec_npz=cli.dec_npz, layout=cli.layout,
            iteration=args.iteration, model_path=getattr(args, "model_path", None),
            sh_degree=dataset.sh_degree, device=device)
        if write_exports(gaussians, cli, source):
            return []
    if not getattr(args, "model_path", None):
        parser.error("-m/--model_path is required")
    if not Path(args.model_path).is_dir():
        parser.error(f"-m/--model_path {args.model_path}: model folder not found")
    if gaussians is None:
        gaussians = GaussianModel(dataset.sh_degree)
        scene = Scene(dataset, gaussians, load_iteration=args.iteration, shuffle=False)
        method, iteration = UNCOMPRESSED_METHOD, scene.loaded_iter
        gaussians.to(device)
        if write_exports(gaussians, cli):
            return []
    else:
        scene = Scene(dataset, None, shuffle=False)
    background = torch.full((3,), float(dataset.white_background), device=device)

    def render_fn(view):
        return render(view.to(device), gaussians, pipe, background)["render"]

    return render_sets(scene, render_fn, iteration, skip_train=args.skip_train,
                       skip_test=args.skip_test, method=method, quiet=args.quiet)


if __name__ == "__main__":
    sys.exit(run_main(main, "render.py", sys.argv[1:]))
