"""--hyper_config c1|c2|c3 --scene_name: values checked against the PUBLISHED.md table, and
how the settings that run are resolved (paper configuration, then the layout's defaults)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import train as train_cli
from arguments import extract
from compression.layouts import LAYOUTS
from compression.presets import SCENE_PRESETS, preset_settings
from compression.settings import LAYOUT_SETTINGS, CompressionParams, resolve_settings

PUBLISHED = Path(__file__).resolve().parents[1].parent / "shared" / "docs" / "PUBLISHED.md"


@pytest.fixture(scope="module")
def published() -> dict[str, dict]:
    """Per-scene settings parsed from PUBLISHED.md (skips when the docs are absent)."""
    if not PUBLISHED.is_file():
        pytest.skip(f"{PUBLISHED} is absent")
    text = PUBLISHED.read_text()
    table = text[text.index("## Per-scene settings"):text.index("## Published results")]
    scenes: dict[str, dict] = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 9 or not re.fullmatch(r"[0-9.]+", cells[1]):
            continue
        name, p1, b1, p2, b2, p3, b3, k, d = cells
        scenes[name] = {"percent": (float(p1), float(p2), float(p3)),
                        "n_block": (int(b1), int(b2), int(b3)), "codebook_size": int(k),
                        "depth": int(d)}
    text = " ".join(text[text.index("importance exponent"):].split())  # unwrap lines
    listed, others = text.split("all others", 1)
    betas = dict(re.findall(r"(\w+) (0\.\d+)", listed))
    default_beta = float(re.match(r" (0\.\d+)", others).group(1))
    for name, entry in scenes.items():
        entry["imp_beta"] = float(betas.get(name, default_beta))
    return scenes


def test_table_covers_every_published_scene(published: dict[str, dict]) -> None:
    assert len(published) == 21
    assert set(SCENE_PRESETS) == set(published)


@pytest.mark.parametrize("config", ["c1", "c2", "c3"])
def test_hyper_config_sets_published_values(published: dict[str, dict], config: str) -> None:
    index = ("c1", "c2", "c3").index(config)
    for scene, expected in published.items():
        cfg = resolve_settings(CompressionParams(hyper_config=config, scene_name=scene,
                                                 percent=0.9, n_block=3, codebook_size=7))
        assert cfg.layout == "official", scene
        assert cfg.percent == expected["percent"][index], scene
        assert cfg.n_block == expected["n_block"][index], scene
        assert cfg.codebook_size == expected["codebook_size"], scene
        assert cfg.depth == expected["depth"], scene
        assert cfg.imp_beta == expected["imp_beta"], scene


def test_hyper_config_through_the_train_parser() -> None:
    args = train_cli.build_parser().parse_args(
        ["-s", "x", "--hyper_config", "c2", "--scene_name", "flowers", "--n_block", "3"])
    cfg = resolve_settings(extract(CompressionParams, args))
    assert (cfg.layout, cfg.percent, cfg.n_block, cfg.codebook_size, cfg.depth,
            cfg.imp_beta) == ("official", 0.45, 50, 2048, 20, 0.1)
    assert preset_settings(None, None) == {}
    assert resolve_settings(cfg) == cfg


def test_hyper_config_errors() -> None:
    with pytest.raises(ValueError, match="known scenes: chair, drums"):
        resolve_settings(CompressionParams(hyper_config="c1", scene_name="kitchen2"))
    with pytest.raises(ValueError, match="needs --scene_name"):
        resolve_settings(CompressionParams(hyper_config="c3"))
    with pytest.raises(ValueError, match="needs --hyper_config"):
        resolve_settings(CompressionParams(scene_name="lego"))
    with pytest.raises(ValueError, match="c1"):
        resolve_settings(CompressionParams(hyper_config="c4", scene_name="lego"))


# Today's MesonGS values: the seed and official layouts' defaults (unchanged flags' defaults;
# the compact layout's own knobs are unused there).
MESONGS_DEFAULTS = {"percent": 0.2, "depth": 20, "n_block": 57, "num_bits": 8,
                    "quantizer": "vanilla", "codebook_size": 4096, "vq_steps": 100,
                    "vq_batch": 65536, "oct_merge": "mean", "imp_beta": 0.1,
                    "finetune_iterations": 8000, "quality": None, "base_step": None,
                    "voxel_ratio": None}
# The compact layout at its default quality 5: pruning, step and voxel ratio from that level,
# depth and codebook size chosen from the model (None), block settings unused (None).
COMPACT_DEFAULTS = {"percent": 0.25, "depth": None, "n_block": None, "num_bits": None,
                    "quantizer": None, "codebook_size": None, "vq_steps": 20,
                    "vq_batch": 32768, "oct_merge": "mean", "imp_beta": 0.1,
                    "finetune_iterations": 500, "quality": 5, "base_step": 0.15,
                    "voxel_ratio": 0.1}


def test_unset_flags_take_the_layout_defaults() -> None:
    assert set(LAYOUT_SETTINGS) == set(MESONGS_DEFAULTS) == set(COMPACT_DEFAULTS)
    assert all(getattr(CompressionParams(), key) is None for key in LAYOUT_SETTINGS)
    expected = {"seed": MESONGS_DEFAULTS, "official": MESONGS_DEFAULTS,
                "compact": COMPACT_DEFAULTS}
    assert set(LAYOUTS) == set(expected)
    for name, layout in LAYOUTS.items():
        assert set(layout.defaults) == set(LAYOUT_SETTINGS), name
        cfg = resolve_settings(CompressionParams(layout=name))
        assert {key: getattr(cfg, key) for key in LAYOUT_SETTINGS} == expected[name], name
    args = train_cli.build_parser().parse_args(["-s", "x", "--layout", "official", "--depth",
                                                "12"])
    assert all(getattr(args, key) is None for key in LAYOUT_SETTINGS if key != "depth")
    cfg = resolve_settings(extract(CompressionParams, args))
    assert cfg.depth == 12 and cfg.n_block == 57 and cfg.codebook_size == 4096
    help_text = train_cli.build_parser().format_help()
    assert "from --layout: seed 57, official 57" in " ".join(help_text.split())


def test_without_a_finetune_the_compact_default_codes_finer() -> None:
    """No scene to finetune on (or 0 finetune iterations): the default quality is the layout's
    quality_without_finetune; a given quality wins; the bins layouts have no knob."""
    level_8 = LAYOUTS["compact"].quality_levels[8]
    for cfg, scene in ((CompressionParams(layout="compact"), False),
                       (CompressionParams(layout="compact", finetune_iterations=0), True)):
        resolved = resolve_settings(cfg, scene=scene)
        assert resolved.quality == LAYOUTS["compact"].quality_without_finetune == 8
        assert (resolved.percent, resolved.base_step, resolved.voxel_ratio) == (
            level_8["percent"], level_8["base_step"], level_8["voxel_ratio"])
        assert resolve_settings(resolved, scene=scene) == resolved
    assert resolve_settings(CompressionParams(layout="compact", quality=3),
                            scene=False).quality == 3
    assert resolve_settings(CompressionParams(layout="compact", finetune_iterations=10),
                            scene=True).quality == 5
    assert resolve_settings(CompressionParams(layout="official"), scene=False).quality is None
    help_text = " ".join(train_cli.build_parser().format_help().split())
    assert "compact 5 (8 without a finetune)" in help_text


def test_resolve_rejects_bad_settings() -> None:
    for cfg, match in ((CompressionParams(layout="zip"), "layout"),
                       (CompressionParams(percent=1.5), "percent"),
                       (CompressionParams(depth=22), "depth"),
                       (CompressionParams(n_block=0), "n_block"),
                       (CompressionParams(layout="official", codebook_size=0), "codebook_size")):
        with pytest.raises(ValueError, match=match):
            resolve_settings(cfg)
    resolve_settings(CompressionParams(layout="seed", codebook_size=0))  # no VQ in seed
