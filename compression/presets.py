"""Paper configurations ``--hyper_config c1|c2|c3 --scene_name <scene>`` (CODEC.md §10).

Values from the official MesonGS release (``docs/PUBLISHED.md``): per scene the pruned
fraction and the block count of each configuration, the codebook size K, the octree depth D
and the importance exponent β. A configuration also selects the official attribute layout
(``layouts.PAPER_LAYOUT``); the other settings keep their values. Learning rates stay ours.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

from compression.layouts import PAPER_LAYOUT

CONFIGS = ("c1", "c2", "c3")


class ScenePreset(NamedTuple):
    """One scene's published settings; ``percent`` and ``n_block`` are indexed c1, c2, c3."""

    percent: tuple[float, float, float]
    n_block: tuple[int, int, int]
    codebook_size: int
    depth: int
    imp_beta: float


SCENE_PRESETS: dict[str, ScenePreset] = {
    # NeRF-synthetic
    "chair": ScenePreset((0.06, 0.06, 0.16), (62, 48, 52), 2048, 14, 0.03),
    "drums": ScenePreset((0.18, 0.18, 0.28), (66, 50, 57), 2048, 14, 0.05),
    "ficus": ScenePreset((0.28, 0.28, 0.38), (50, 50, 57), 2048, 14, 0.03),
    "hotdog": ScenePreset((0.32, 0.32, 0.42), (66, 50, 57), 4096, 14, 0.03),
    "lego": ScenePreset((0.10, 0.10, 0.20), (66, 50, 57), 4096, 14, 0.05),
    "materials": ScenePreset((0.10, 0.10, 0.20), (66, 50, 57), 4096, 14, 0.03),
    "mic": ScenePreset((0.30, 0.30, 0.40), (52, 42, 48), 2048, 14, 0.03),
    "ship": ScenePreset((0.18, 0.18, 0.28), (66, 50, 57), 8192, 14, 0.03),
    # Mip-NeRF 360
    "bicycle": ScenePreset((0.30, 0.30, 0.40), (66, 50, 57), 2048, 20, 0.03),
    "bonsai": ScenePreset((0.24, 0.24, 0.34), (66, 50, 57), 2048, 19, 0.1),
    "counter": ScenePreset((0.12, 0.12, 0.22), (66, 50, 57), 2048, 19, 0.1),
    "garden": ScenePreset((0.18, 0.18, 0.28), (66, 50, 57), 2048, 20, 0.1),
    "kitchen": ScenePreset((0.14, 0.14, 0.24), (66, 50, 57), 8192, 19, 0.1),
    "room": ScenePreset((0.22, 0.22, 0.32), (66, 50, 57), 2048, 19, 0.1),
    "stump": ScenePreset((0.20, 0.20, 0.30), (66, 50, 57), 2048, 20, 0.01),
    "flowers": ScenePreset((0.20, 0.45, 0.50), (66, 50, 57), 2048, 20, 0.1),
    "treehill": ScenePreset((0.20, 0.45, 0.50), (66, 50, 57), 2048, 20, 0.1),
    # Deep Blending
    "drjohnson": ScenePreset((0.41, 0.41, 0.41), (66, 50, 57), 2048, 20, 0.1),
    "playroom": ScenePreset((0.00, 0.00, 0.20), (66, 50, 57), 2048, 20, 0.1),
    # Tanks and Temples
    "train": ScenePreset((0.12, 0.12, 0.22), (66, 50, 57), 4096, 20, 0.1),
    "truck": ScenePreset((0.38, 0.38, 0.40), (66, 50, 57), 4096, 20, 0.1),
}


def preset_settings(hyper_config: Optional[str], scene_name: Optional[str]) -> dict[str, Any]:
    """The settings ``--hyper_config <c> --scene_name <scene>`` sets (they win over the flags);
    {} without either.

    Raises:
        ValueError: ``--hyper_config`` without ``--scene_name`` (or the reverse), an unknown
            configuration or an unknown scene (the message lists the known ones).
    """
    if hyper_config is None and scene_name is None:
        return {}
    if hyper_config is None:
        raise ValueError("--scene_name needs --hyper_config c1|c2|c3")
    if hyper_config not in CONFIGS:
        raise ValueError(f"--hyper_config must be one of {CONFIGS}, got {hyper_config!r}")
    if scene_name is None:
        raise ValueError(f"--hyper_config {hyper_config} needs --scene_name (one of "
                         f"{', '.join(SCENE_PRESETS)})")
    preset = SCENE_PRESETS.get(scene_name)
    if preset is None:
        raise ValueError(f"--scene_name: unknown scene {scene_name!r}; known scenes: "
                         f"{', '.join(SCENE_PRESETS)}")
    index = CONFIGS.index(hyper_config)
    return {"layout": PAPER_LAYOUT, "percent": preset.percent[index],
            "n_block": preset.n_block[index], "codebook_size": preset.codebook_size,
            "depth": preset.depth, "imp_beta": preset.imp_beta}
