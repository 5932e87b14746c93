"""A sweep's plan: which scenes, settings and layouts, and the command line of every step.

Two kinds of step, each a sequence of our own command lines (run by ``sweeps.steps``):

* one scene step per scene (per scene and training point, when ``--grid`` has training-flag
  axes such as ``cap_max=…``): ``train.py --skip_compress`` (or, with ``--given_ply_pattern``,
  ``train.py --given_ply_path <model file> --skip_compress``, which only checks the file (a PLY
  or another tool's format) and writes the model folder), then ``render.py`` and ``metrics.py``
  on the uncompressed model;
* one job per (scene, setting, layout): ``train.py --given_ply_path <the scene's PLY>`` with
  the setting's codec flags, ``render.py --dec_npz`` (test views decoded from the bitstream
  alone) and ``metrics.py``.

Folders, all under the sweep folder (``utils.output_paths.sweep_scene_dir`` /
``sweep_job_dir``)::

    <scene>/trained/               the scene step's model folder and scene.log
    <scene>/<layout>/<setting>/    one job's model folder and job.log

With training-flag axes, ``<scene>`` is ``<scene>/<training point>`` (e.g.
``lego/cap_max=4000``): each training point has its scene step and its jobs under it.

Layouts come from the registry (``compression.layouts.LAYOUTS``), so a new layout is swept
without a change here.
"""
from __future__ import annotations

import dataclasses
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, get_type_hints

from arguments import ModelParams, OptimizationParams, PipelineParams, scalar_type
from compression.layouts import LAYOUTS
from compression.presets import CONFIGS, SCENE_PRESETS, preset_settings
from compression.settings import CompressionParams
from scene.dataset_readers import scene_type
from sweeps.published import SCENE_DATASET
from utils.output_paths import sweep_job_dir, sweep_scene_dir

GIVEN_PLY_SCENE_TOKEN = "<scene>"  # replaced by the scene name in --given_ply_pattern

# train.py flags the sweep sets itself for every step (or that make no sense for many scenes)
_RESERVED_FLAGS = ("source_path", "model_path", "given_ply_path", "layout", "skip_compress",
                   "hyper_config", "scene_name", "start_checkpoint", "quiet", "threads")
_CODEC_FIELDS = {f.name: f for f in dataclasses.fields(CompressionParams)}
_TRAIN_FIELDS = {f.name: (cls, f) for cls in (ModelParams, OptimizationParams, PipelineParams)
                 for f in dataclasses.fields(cls)}
_SAFE_VALUE = re.compile(r"[A-Za-z0-9._+-]+")  # a grid value is also part of a folder name


def _paper_values(config: str, scene_name: str) -> dict[str, Any]:
    """The values ``--hyper_config <config> --scene_name <scene>`` sets, without the paper's
    layout: the sweep applies them to every layout it runs.

    Raises:
        ValueError: an unknown configuration or scene.
    """
    return {name: value for name, value in preset_settings(config, scene_name).items()
            if name != "layout"}


_PRESET_FIELDS = frozenset(_paper_values(CONFIGS[0], next(iter(SCENE_PRESETS))))


@dataclass(frozen=True)
class Setting:
    """One setting of the sweep: a paper configuration or one point of the grid.

    Attributes:
        name: ``c1`` / ``c2`` / ``c3``, or the grid point as ``key=value,key=value``.
        config: the paper configuration (its values depend on the scene), or None.
        values: the grid point's (CompressionParams field, value text) pairs.
    """

    name: str
    config: Optional[str] = None
    values: tuple[tuple[str, str], ...] = ()

    def fields(self) -> frozenset[str]:
        """The CompressionParams fields this setting sets."""
        return _PRESET_FIELDS if self.config else frozenset(key for key, _ in self.values)

    def codec_flags(self, scene_name: str) -> dict[str, Any]:
        """``{field: value}`` for a scene.

        Raises:
            ValueError: a paper configuration for a scene the paper has no settings for.
        """
        if self.config:
            return _paper_values(self.config, scene_name)
        return dict(self.values)


def config_settings(configs: Sequence[str]) -> list[Setting]:
    """One setting per paper configuration (``--configs c1 c2 c3``).

    Raises:
        ValueError: an unknown or repeated configuration.
    """
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown or len(set(configs)) != len(configs):
        raise ValueError(f"--configs takes distinct values among {', '.join(CONFIGS)}, got "
                         f"{' '.join(configs)}")
    return [Setting(name=config, config=config) for config in configs]


def grid_settings(specs: Sequence[str]) -> list[Setting]:
    """The cartesian product of ``key=v1,v2,...`` axes over compression flags (``--grid``).

    Each value is checked against the flag's type and choices here, so that a typo fails the
    sweep before anything runs. Settings are ordered like nested loops, the last axis fastest.
    Without any axis: one setting, ``default`` (the layout's defaults).

    Raises:
        ValueError: a malformed axis, a key that is not a single-valued compression flag (or one
            the sweep sets itself), a repeated key or a value of the wrong type.
    """
    points = _grid_points(specs, _grid_kinds(_CODEC_FIELDS), "compression")
    if not points:
        return [Setting(name="default")]
    return [Setting(name=_point_name(point), values=point) for point in points]


def training_points(specs: Sequence[str]) -> list[tuple[tuple[str, str], ...]]:
    """The cartesian product of ``key=v1,v2,...`` axes over training flags (``--grid
    cap_max=…``): one scene step per point. Empty without such axes.

    Raises:
        ValueError: as :func:`grid_settings`, for single-valued train.py flags.
    """
    return _grid_points(specs, _grid_kinds(_TRAIN_FIELDS), "training")


def split_grid(specs: Sequence[str]) -> tuple[list[str], list[str]]:
    """``--grid`` axes as (compression axes, training axes), by the flag each one names.

    Raises:
        ValueError: an axis naming neither kind of flag.
    """
    codec: list[str] = []
    training: list[str] = []
    for spec in specs:
        key = spec.partition("=")[0].lstrip("-")
        if key in _TRAIN_FIELDS and key not in _RESERVED_FLAGS:
            training.append(spec)
        else:
            codec.append(spec)
    return codec, training


def _point_name(point: Sequence[tuple[str, str]]) -> str:
    return ",".join(f"{key}={value}" for key, value in point)


def _grid_points(specs: Sequence[str], kinds: Mapping[str, type], kind_name: str
                 ) -> list[tuple[tuple[str, str], ...]]:
    axes: list[list[tuple[str, str]]] = []
    for spec in specs:
        key, sep, text = spec.partition("=")
        key = key.lstrip("-")
        if not sep or not key or not text:
            raise ValueError(f"--grid {spec!r}: expected key=value1,value2,...")
        if key not in kinds:
            raise ValueError(f"--grid {key}: not a single-valued {kind_name} flag; one of "
                             f"{', '.join(kinds)}")
        if any(key == axis[0][0] for axis in axes):
            raise ValueError(f"--grid {key}: given twice")
        values = text.split(",")
        for value in values:
            _check_value(key, value, kinds[key])
        axes.append([(key, value) for value in values])
    return list(itertools.product(*axes)) if axes else []


def _grid_kinds(fields: Mapping[str, Any]) -> dict[str, type]:
    """The flags of ``fields`` a grid may sweep (single-valued numbers and words the sweep does
    not set itself), with the type each value is parsed with."""
    kinds = {}
    for name, entry in fields.items():
        cls, field = entry if isinstance(entry, tuple) else (CompressionParams, entry)
        if name in _RESERVED_FLAGS or field.metadata.get("nargs"):
            continue
        kind = scalar_type(get_type_hints(cls)[name])
        if isinstance(kind, type) and issubclass(kind, (int, float, str)) and kind is not bool:
            kinds[name] = kind
    return kinds


def _check_value(key: str, value: str, kind: type) -> None:
    if not _SAFE_VALUE.fullmatch(value):
        raise ValueError(f"--grid {key}={value!r}: values may hold letters, digits and . _ + - "
                         f"only")
    try:
        typed = kind(value)
    except ValueError as exc:
        what = (f"not {'an' if kind is int else 'a'} {kind.__name__}"
                if kind in (int, float, str) else str(exc))
        raise ValueError(f"--grid {key}={value}: {what}") from None
    field = _CODEC_FIELDS[key] if key in _CODEC_FIELDS else _TRAIN_FIELDS[key][1]
    choices = field.metadata.get("choices")
    if choices and typed not in choices:
        raise ValueError(f"--grid {key}={value}: one of {', '.join(map(str, choices))}")


# ------------------------------------------------------------------------------ scenes

@dataclass(frozen=True)
class SceneSpec:
    """One scene: its name (the folder name), absolute folder and dataset.

    The dataset is the paper's (PUBLISHED.md) for a scene name it lists, else the name of the
    folder holding the scene. A training point of ``--grid`` makes a scene of its own
    (:func:`with_training_points`): name ``<folder name>/<point>``, ``train_values`` the
    point's train.py flags, ``base`` the folder name (the paper's presets look it up).
    """

    name: str
    path: Path
    dataset: str
    train_values: tuple[tuple[str, str], ...] = ()
    base: str = ""

    @property
    def preset_name(self) -> str:
        """The scene name the paper's settings are looked up by."""
        return self.base or self.name


def with_training_points(scenes: Sequence[SceneSpec],
                         points: Sequence[tuple[tuple[str, str], ...]]) -> list[SceneSpec]:
    """Each scene once per training point (scene-major), or the scenes as given without."""
    if not points:
        return list(scenes)
    return [dataclasses.replace(scene, name=f"{scene.name}/{_point_name(point)}",
                                train_values=tuple(point), base=scene.name)
            for scene in scenes for point in points]


def _is_scene(path: Path) -> bool:
    try:
        scene_type(path)
    except ValueError:
        return False
    return True


def find_scenes(paths: Sequence[str | Path]) -> list[SceneSpec]:
    """Scenes from paths that are scene folders or folders of scene folders.

    Symbolic links keep their own name (a link ``lego`` to ``lego_sample`` is scene ``lego``).

    Raises:
        FileNotFoundError: a path that does not exist.
        ValueError: a path that neither is a scene nor holds one, or two scenes with one name.
    """
    scenes: dict[str, SceneSpec] = {}
    for given in paths:
        path = Path(given).absolute()
        if not path.is_dir():
            raise FileNotFoundError(f"{given}: no such scene folder")
        found = [path] if _is_scene(path) else sorted(
            child for child in path.iterdir() if child.is_dir() and _is_scene(child))
        if not found:
            raise ValueError(f"{given}: neither a scene (sparse/ or transforms_train.json) nor a "
                             f"folder of scenes")
        for folder in found:
            if folder.name in scenes:
                raise ValueError(f"two scenes named {folder.name!r}: {scenes[folder.name].path} "
                                 f"and {folder} (scene names must be unique)")
            scenes[folder.name] = SceneSpec(folder.name, folder,
                                            SCENE_DATASET.get(folder.name, folder.parent.name))
    return list(scenes.values())


# ------------------------------------------------------------------------------ steps

Command = tuple[str, ...]  # a script of the project and its arguments


@dataclass(frozen=True)
class SceneStep:
    """Train (or take the given PLY of) one scene and score the uncompressed model."""

    scene: SceneSpec
    folder: Path
    given_ply: Optional[Path]
    commands: tuple[Command, ...]


@dataclass(frozen=True)
class JobStep:
    """Compress one scene with one setting and layout, render from the bitstream, score.

    Attributes:
        flags: train.py flags of the job besides -s, -m, --given_ply_path and --layout.
        metrics_flags: metrics.py flags besides -m.
        error: why the job cannot run (a paper configuration for an unknown scene), or None.
    """

    scene: SceneSpec
    setting: str
    layout: str
    folder: Path
    flags: tuple[str, ...]
    metrics_flags: tuple[str, ...]
    error: Optional[str] = None

    def commands(self, ply: Path) -> tuple[Command, ...]:
        """The job's command lines, compressing ``ply`` (the scene step's model)."""
        folder = str(self.folder)
        return (("train.py", "-s", str(self.scene.path), "-m", folder, "--given_ply_path",
                 str(ply), "--layout", self.layout, "--quiet", *self.flags),
                ("render.py", "-m", folder, "--skip_train", "--dec_npz", "--layout", self.layout,
                 "--quiet"),
                ("metrics.py", "-m", folder, "--quiet", *self.metrics_flags))


@dataclass(frozen=True)
class SweepPlan:
    """Every step of a sweep, scenes and jobs in the order they are listed."""

    out_dir: Path
    scenes: tuple[SceneStep, ...]
    jobs: tuple[JobStep, ...]


def flag_tokens(flags: Mapping[str, Any]) -> list[str]:
    """Command-line tokens ``--name value`` for parsed train.py flags, sorted by name.

    A true boolean is the bare flag (a false one is left out); a list gives its items.
    """
    tokens: list[str] = []
    for name, value in sorted(flags.items()):
        if isinstance(value, bool):
            tokens += [f"--{name}"] if value else []
        elif isinstance(value, (list, tuple)):
            tokens += [f"--{name}", *map(str, value)]
        else:
            tokens += [f"--{name}", str(value)]
    return tokens


def build_plan(scenes: Sequence[SceneSpec], settings: Sequence[Setting], layouts: Sequence[str],
               out_dir: Path, extra_flags: Mapping[str, Any], *,
               given_ply_pattern: Optional[str] = None,
               lpips_weights: Optional[Path] = None) -> SweepPlan:
    """The steps of a sweep.

    Args:
        scenes: from :func:`find_scenes`.
        settings: from :func:`config_settings` or :func:`grid_settings`.
        layouts: codec layouts; each setting runs with each.
        out_dir: the sweep folder.
        extra_flags: parsed train.py flags (name → value) passed to every step: codec flags to
            the jobs only, the others (scene, schedule, rendering) to every train.py run.
            ``eval`` is required (scores come from the test views).
        given_ply_pattern: compress ``pattern`` (``<scene>`` replaced by the scene name) instead
            of training; relative paths are taken from the current folder.
        lpips_weights: LPIPS weights for metrics.py (None: its default, torchvision's VGG16
            from torch's cache).

    Raises:
        ValueError: no scene, setting or layout; an unknown layout; a flag the sweep sets
            itself; a codec flag that a setting also sets; no ``eval``.
    """
    if not scenes or not settings or not layouts:
        raise ValueError("a sweep needs at least one scene, one setting and one layout")
    unknown = [layout for layout in layouts if layout not in LAYOUTS]
    if unknown or len(set(layouts)) != len(layouts):
        raise ValueError(f"--layouts takes distinct values among {', '.join(LAYOUTS)}, got "
                         f"{' '.join(layouts)}")
    reserved = sorted(set(extra_flags) & set(_RESERVED_FLAGS))
    if reserved:
        raise ValueError(f"--{reserved[0]} is set by the sweep for every step (scenes: "
                         f"--scenes; layouts: --layouts; paper settings: --configs)")
    swept = set().union(*(s.fields() for s in settings),
                        *({key for key, _ in scene.train_values} for scene in scenes))
    taken = sorted(set(extra_flags) & swept)
    if taken:
        raise ValueError(f"--{taken[0]} is also set by --grid/--configs; give it in one place")
    if given_ply_pattern is not None and any(scene.train_values for scene in scenes):
        raise ValueError("--grid over training flags needs training: drop --given_ply_pattern")
    if not extra_flags.get("eval"):
        raise ValueError("pass --eval: the sweep scores every job on held-out test views")
    train_flags = flag_tokens({k: v for k, v in extra_flags.items() if k not in _CODEC_FIELDS})
    metrics_flags = ("--lpips_weights", str(lpips_weights)) if lpips_weights else ()
    scene_steps = [_scene_step(scene, out_dir, [*train_flags, *_point_tokens(scene)],
                               metrics_flags, given_ply_pattern)
                   for scene in scenes]
    jobs = []
    for scene in scenes:
        for layout in layouts:
            for setting in settings:
                try:
                    codec = {**extra_flags, **setting.codec_flags(scene.preset_name)}
                    error = None
                except ValueError as exc:
                    codec, error = dict(extra_flags), f"--configs {setting.name}: {exc}"
                jobs.append(JobStep(scene, setting.name, layout,
                                    sweep_job_dir(out_dir, scene.name, layout, setting.name),
                                    tuple(flag_tokens(codec)), metrics_flags, error))
    return SweepPlan(out_dir, tuple(scene_steps), tuple(jobs))


def _point_tokens(scene: SceneSpec) -> list[str]:
    return [token for key, value in scene.train_values for token in (f"--{key}", value)]


def _scene_step(scene: SceneSpec, out_dir: Path, train_flags: Sequence[str],
                metrics_flags: Sequence[str], given_ply_pattern: Optional[str]) -> SceneStep:
    folder = sweep_scene_dir(out_dir, scene.name)
    model = str(folder)
    metrics = ("metrics.py", "-m", model, "--quiet", *metrics_flags)
    if given_ply_pattern is None:
        return SceneStep(scene, folder, None, (
            ("train.py", "-s", str(scene.path), "-m", model, "--skip_compress", "--quiet",
             *train_flags),
            ("render.py", "-m", model, "--skip_train", "--quiet"), metrics))
    ply = Path(given_ply_pattern.replace(GIVEN_PLY_SCENE_TOKEN, scene.name)).absolute()
    return SceneStep(scene, folder, ply, (
        ("train.py", "-s", str(scene.path), "-m", model, "--given_ply_path", str(ply),
         "--skip_compress", "--quiet", *train_flags),
        ("render.py", "-m", model, "--given_ply_path", str(ply), "--skip_train", "--quiet"),
        metrics))
