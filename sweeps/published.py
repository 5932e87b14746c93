"""The MesonGS paper's published results (``../shared/docs/PUBLISHED.md``), for comparison.

Test-view quality and archive size per scene for configurations c1 and c3 (the release
publishes no c2 results), and the dataset each scene belongs to.
"""
from __future__ import annotations

from typing import NamedTuple


class PublishedResult(NamedTuple):
    """One published row: quality on the test views and the compressed archive's size."""

    psnr: float
    ssim: float
    lpips: float
    size_bytes: int
    num_gaussians: int


DATASETS: dict[str, tuple[str, ...]] = {
    "SyntheticNeRF": ("chair", "drums", "ficus", "hotdog", "lego", "materials", "mic", "ship"),
    "MipNeRF360": ("bicycle", "bonsai", "counter", "flowers", "garden", "kitchen", "room",
                   "stump", "treehill"),
    "TanksAndTemples": ("train", "truck"),
    "DeepBlending": ("drjohnson", "playroom"),
}

SCENE_DATASET: dict[str, str] = {scene: dataset for dataset, scenes in DATASETS.items()
                                 for scene in scenes}

PUBLISHED: dict[tuple[str, str], PublishedResult] = {
    ("chair", "c1"): PublishedResult(35.1705, 0.9854, 0.0135, 3_999_183, 259_757),
    ("chair", "c3"): PublishedResult(35.3195, 0.9856, 0.0135, 3_632_309, 233_583),
    ("drums", "c1"): PublishedResult(25.9234, 0.9520, 0.0410, 4_232_299, 284_407),
    ("drums", "c3"): PublishedResult(25.9326, 0.9521, 0.0410, 3_780_162, 249_809),
    ("ficus", "c1"): PublishedResult(34.5401, 0.9865, 0.0125, 3_312_392, 215_378),
    ("ficus", "c3"): PublishedResult(34.5687, 0.9866, 0.0125, 2_963_111, 185_517),
    ("hotdog", "c1"): PublishedResult(37.3117, 0.9844, 0.0224, 2_220_187, 102_541),
    ("hotdog", "c3"): PublishedResult(37.2526, 0.9843, 0.0228, 1_996_726, 87_469),
    ("lego", "c1"): PublishedResult(35.0565, 0.9801, 0.0187, 4_697_206, 291_928),
    ("lego", "c3"): PublishedResult(35.0476, 0.9801, 0.0187, 4_253_192, 259_497),
    ("materials", "c1"): PublishedResult(29.6143, 0.9579, 0.0391, 4_089_484, 246_620),
    ("materials", "c3"): PublishedResult(29.6228, 0.9580, 0.0391, 3_728_777, 219_233),
    ("mic", "c1"): PublishedResult(35.0875, 0.9907, 0.0071, 3_337_749, 216_517),
    ("mic", "c3"): PublishedResult(35.0991, 0.9907, 0.0071, 2_929_300, 185_517),
    ("ship", "c1"): PublishedResult(30.8024, 0.9045, 0.1112, 5_097_944, 267_096),
    ("ship", "c3"): PublishedResult(30.8586, 0.9047, 0.1111, 4_706_223, 236_174),
    ("bicycle", "c1"): PublishedResult(24.5631, 0.7160, 0.2889, 48_692_611, 3_687_746),
    ("bicycle", "c3"): PublishedResult(24.5448, 0.7158, 0.2892, 42_004_667, 3_161_160),
    ("bonsai", "c1"): PublishedResult(31.7150, 0.9407, 0.1909, 13_986_959, 1_014_503),
    ("bonsai", "c3"): PublishedResult(31.7118, 0.9406, 0.1907, 12_709_242, 881_088),
    ("counter", "c1"): PublishedResult(28.5491, 0.9044, 0.2018, 13_988_733, 990_100),
    ("counter", "c3"): PublishedResult(28.5948, 0.9049, 0.2006, 12_598_532, 877_602),
    ("flowers", "c1"): PublishedResult(21.1539, 0.5752, 0.3740, 25_870_477, 1_818_061),
    ("flowers", "c3"): PublishedResult(21.1448, 0.5749, 0.3737, 28_091_993, 1_999_826),
    ("garden", "c1"): PublishedResult(26.3946, 0.8294, 0.1670, 48_547_392, 3_526_158),
    ("garden", "c3"): PublishedResult(26.3937, 0.8300, 0.1666, 42_940_340, 3_096_294),
    ("kitchen", "c1"): PublishedResult(30.7023, 0.9218, 0.1344, 18_333_603, 1_229_851),
    ("kitchen", "c3"): PublishedResult(30.7145, 0.9220, 0.1344, 16_485_103, 1_086_882),
    ("room", "c1"): PublishedResult(31.7284, 0.9223, 0.2117, 16_224_496, 1_271_548),
    ("room", "c3"): PublishedResult(31.7235, 0.9222, 0.2123, 15_014_054, 1_109_397),
    ("stump", "c1"): PublishedResult(25.7935, 0.7353, 0.2885, 42_033_059, 3_119_253),
    ("stump", "c3"): PublishedResult(25.8028, 0.7358, 0.2879, 37_121_600, 2_729_317),
    ("treehill", "c1"): PublishedResult(22.2977, 0.6214, 0.3647, 28_681_415, 2_080_997),
    ("treehill", "c3"): PublishedResult(22.3186, 0.6225, 0.3630, 26_401_079, 1_891_833),
    ("train", "c1"): PublishedResult(21.8216, 0.8019, 0.2262, 13_574_127, 903_114),
    ("train", "c3"): PublishedResult(21.7807, 0.8014, 0.2272, 12_132_748, 800_520),
    ("truck", "c1"): PublishedResult(24.7959, 0.8690, 0.1661, 23_356_845, 1_575_279),
    ("truck", "c3"): PublishedResult(24.7980, 0.8690, 0.1664, 22_581_313, 1_524_479),
    ("drjohnson", "c1"): PublishedResult(28.9589, 0.8999, 0.2530, 29_191_453, 2_009_040),
    ("drjohnson", "c3"): PublishedResult(28.9583, 0.9001, 0.2535, 28_942_042, 2_009_040),
    ("playroom", "c1"): PublishedResult(30.0438, 0.9067, 0.2496, 32_951_764, 2_323_621),
    ("playroom", "c3"): PublishedResult(30.0100, 0.9066, 0.2497, 29_081_158, 2_036_892),
}
