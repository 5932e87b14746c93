"""--hyper_config c1|c2|c3 --scene_name: values checked against the PUBLISHED.md table."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import train as train_cli
from arguments import CompressionParams, extract
from compression.presets import SCENE_PRESETS, apply_hyper_config

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
        cfg = apply_hyper_config(CompressionParams(hyper_config=config, scene_name=scene,
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
    cfg = apply_hyper_config(extract(CompressionParams, args))
    assert (cfg.layout, cfg.percent, cfg.n_block, cfg.codebook_size, cfg.depth,
            cfg.imp_beta) == ("official", 0.45, 50, 2048, 20, 0.1)
    assert apply_hyper_config(CompressionParams()) == CompressionParams()


def test_hyper_config_errors() -> None:
    with pytest.raises(ValueError, match="known scenes: chair, drums"):
        apply_hyper_config(CompressionParams(hyper_config="c1", scene_name="kitchen2"))
    with pytest.raises(ValueError, match="needs --scene_name"):
        apply_hyper_config(CompressionParams(hyper_config="c3"))
    with pytest.raises(ValueError, match="needs --hyper_config"):
        apply_hyper_config(CompressionParams(scene_name="lego"))
    with pytest.raises(ValueError, match="c1"):
        apply_hyper_config(CompressionParams(hyper_config="c4", scene_name="lego"))
