"""utils/lpips.py held to the `lpips` package (v0.1, VGG) on real image pairs.

Both networks get the same seeded random VGG16 convolutions and the linear heads the lpips
package ships (weights/v0.1/vgg.pth); nothing is downloaded: the standard (torch.hub) path reads
a cache file the test writes, and its offline path fetches from a local URL that does not
exist. lpips and torchvision are test-only dependencies (requirements-test.txt).
"""
from __future__ import annotations

import math
from importlib.util import find_spec
from pathlib import Path
from types import ModuleType

import pytest
import torch
from scipy import ndimage

from scene.camera_utils import composite_rgb
from utils.image_utils import load_image
import utils.lpips as lpips_module
from utils.lpips import (LINEAR_HEADS, LPIPS, LpipsUnavailable, cached_vgg16_path, load_lpips,
                         lpips_for_evaluation, standard_lpips)

pytestmark = pytest.mark.filterwarnings(  # lpips calls torchvision.models.vgg16(pretrained=...)
    "ignore:.*deprecated since 0.13:UserWarning")

#: keeps the operator schemas declared by _import_lpips alive for the session
_TORCHVISION_SCHEMAS: list[torch.library.Library] = []


def _import_lpips() -> ModuleType:
    """The lpips package, which imports torchvision (for its VGG16 definition only).

    PyPI's Linux torchvision wheels are CUDA builds: beside the CPU torch their operator library
    (``_C.so``, linked to libtorch_cuda) does not load, and ``import torchvision`` then stops at
    an unguarded fake-kernel registration for ``torchvision::nms`` ("operator torchvision::nms
    does not exist", pytorch/vision#9085). LPIPS uses none of those operators, so when the
    library cannot load, the two operators that registration looks up are declared (schema
    only, no kernel) before the import.
    """
    if find_spec("lpips") is None or find_spec("torchvision") is None:
        pytest.skip("lpips and torchvision are not installed (requirements-test.txt, make venv)")
    package = Path(find_spec("torchvision").origin).parent
    try:
        torch.ops.load_library(next(package.glob("_C*.so")))  # what torchvision itself tries
    except (OSError, StopIteration):
        if not _TORCHVISION_SCHEMAS:
            schemas = torch.library.Library("torchvision", "FRAGMENT")
            for name in ("nms", "qnms"):
                schemas.define(f"{name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            _TORCHVISION_SCHEMAS.append(schemas)
    import lpips

    return lpips


def _seeded_vgg(seed: int) -> dict[str, torch.Tensor]:
    """Random VGG16 conv weights under torchvision's ``features.<i>`` names (He-normal
    weights, so activations keep their scale through the 13 layers; small random biases)."""
    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for index, layer in enumerate(LPIPS().features):
        if isinstance(layer, torch.nn.Conv2d):
            fan_in = layer.in_channels * layer.kernel_size[0] * layer.kernel_size[1]
            weights[f"features.{index}.weight"] = (
                torch.randn(layer.weight.shape, generator=generator) * math.sqrt(2.0 / fan_in))
            weights[f"features.{index}.bias"] = torch.randn(layer.bias.shape, generator=generator) * 0.01
    return weights


@pytest.fixture(scope="module")
def reference() -> torch.nn.Module:
    """lpips.LPIPS(net="vgg"): shipped linear heads, backbone set to the seeded VGG."""
    lpips = _import_lpips()
    net = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False).eval()
    vgg = _seeded_vgg(0)
    copied = 0
    for j in range(1, 6):  # its slices keep torchvision's module indices as child names
        for index, layer in getattr(net.net, f"slice{j}").named_children():
            if isinstance(layer, torch.nn.Conv2d):
                layer.weight.data.copy_(vgg[f"features.{index}.weight"])
                layer.bias.data.copy_(vgg[f"features.{index}.bias"])
                copied += 1
    assert copied == 13
    return net


@pytest.fixture(scope="module")
def ours(reference: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> LPIPS:
    """Ours from a weights file in the documented layout: the same seeded VGG
    (``features.<i>.*``) plus the package's shipped heads (``lin<j>.model.1.weight``)."""
    state = _seeded_vgg(0)
    state.update({k: v for k, v in reference.state_dict().items() if k.startswith("lin")
                  and not k.startswith("lins.")})
    path = tmp_path_factory.mktemp("lpips") / "lpips_vgg.pth"
    torch.save(state, path)
    return load_lpips(path)


def _views(scene: Path, split: str, names: list[str]) -> torch.Tensor:
    """[B, 3, H, W] RGB views of a Blender scene composited on white."""
    return torch.stack([composite_rgb(load_image(scene / split / f"{name}.png"), True)
                        for name in names])


def _blurred(images: torch.Tensor, sigma: float) -> torch.Tensor:
    return torch.from_numpy(ndimage.gaussian_filter(images.numpy(), sigma=(0, 0, sigma, sigma)))


@pytest.fixture(scope="module")
def sample_pairs(sample_scene: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Real pairs from the bundled sample: two test views, two train views, a view and its
    blurred self, a view and its 10-pixel shift (images 200 px)."""
    test, train = _views(sample_scene, "test", ["r_0", "r_25"]), _views(sample_scene, "train",
                                                                          ["r_0", "r_4"])
    first = torch.stack([test[0], train[0], test[1], train[1]])
    second = torch.stack([test[1], train[1], _blurred(test[1:2], 1.5)[0],
                          torch.roll(train[1], shifts=10, dims=2)])
    return first, second


@pytest.fixture(scope="module")
def expected(reference: torch.nn.Module, sample_pairs) -> torch.Tensor:
    """The package's distances of the sample pairs (inputs in [0, 1]: normalize=True)."""
    with torch.no_grad():
        return reference(*sample_pairs, normalize=True).flatten()


@pytest.mark.slow
def test_same_distances_as_the_lpips_package(ours, sample_pairs, expected) -> None:
    with torch.no_grad():
        got = ours(*sample_pairs)
        assert torch.equal(ours(sample_pairs[0], sample_pairs[0]), torch.zeros(4))
    assert expected.shape == got.shape == (4,)
    assert float(expected.min()) > 1e-3  # real differences, not zeros
    assert torch.allclose(got, expected, rtol=0, atol=1e-6), (got, expected)


@pytest.mark.slow
def test_same_distances_on_shared_scenes(reference, ours, shared_data: Path) -> None:
    """Other captures: lego_200 at full size and two statuette photos (JPEG) at 1/4 size."""
    lego = _views(shared_data / "lego_200", "test", ["r_3", "r_90"])
    statuette = [load_image(path)[None] for path in
                 sorted((shared_data / "statuette" / "images").iterdir())[:2]]
    height, width = (min(image.shape[i] for image in statuette) for i in (2, 3))
    small = [torch.nn.functional.avg_pool2d(image[:, :, :height, :width], 4) for image in statuette]
    with torch.no_grad():
        for first, second in ((lego[:1], lego[1:]), (lego[:1], _blurred(lego[:1], 2.0)),
                              (small[0], small[1])):
            reference_distance = reference(first, second, normalize=True).flatten()
            assert torch.allclose(ours(first, second), reference_distance, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_package_state_dict_loads_to_the_same_network(reference, sample_pairs, expected,
                                                      tmp_path: Path) -> None:
    """The package's own state dict (net.slice<j>.<i>, lin<j> and lins.<j>, scaling_layer) is
    a valid weights file for load_lpips and gives the package's distances."""
    torch.save(reference.state_dict(), tmp_path / "package.pth")
    with torch.no_grad():
        got = load_lpips(tmp_path / "package.pth")(*sample_pairs)
    assert torch.allclose(got, expected, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_the_seeded_backbone_matters(ours, sample_pairs, expected) -> None:
    """Another seed gives other distances: the agreement is not a property of any weights."""
    other = LPIPS()
    other.load_state_dict({**ours.state_dict(), **_seeded_vgg(1)})
    with torch.no_grad():
        assert (other(*sample_pairs) - expected).abs().max() > 1e-3


def _offline(monkeypatch: pytest.MonkeyPatch, torch_home: Path) -> Path:
    """torch.hub caching under ``torch_home`` and VGG16 fetched from a local file URL that
    does not exist (same file name as the real one): a download fails without any network.
    Returns the cache file's path."""
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.delenv("LPIPS_WEIGHTS", raising=False)
    monkeypatch.setattr(lpips_module, "VGG16_URL",
                        (torch_home / "offline" / Path(lpips_module.VGG16_URL).name).as_uri())
    return torch_home / "hub" / "checkpoints" / "vgg16-397923af.pth"


def test_shipped_heads_are_the_packages(reference) -> None:
    """utils/weights holds the package's v0.1 VGG heads (1,472 values), with their notice."""
    heads = torch.load(LINEAR_HEADS, weights_only=True)
    package = {k: v for k, v in reference.state_dict().items() if k.startswith("lin")
               and not k.startswith("lins.")}
    assert sorted(heads) == sorted(package) and sum(v.numel() for v in heads.values()) == 1472
    assert all(torch.equal(heads[k], package[k]) for k in heads)
    notice = (LINEAR_HEADS.parent / "LICENSE.lpips").read_text()
    assert "Richard Zhang" in notice and "Redistributions in binary form" in notice


@pytest.mark.slow
def test_standard_weights_from_torch_cache(reference, sample_pairs, expected, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a weights file, torchvision's VGG16 state dict (all its keys, the classifier
    too) is read from torch.hub's cache and joined with the shipped heads: the package's
    distances."""
    cache = _offline(monkeypatch, tmp_path)
    assert cached_vgg16_path() == cache
    cache.parent.mkdir(parents=True)
    classifier = {f"classifier.{i}.{kind}": torch.zeros(3) for i in (0, 3, 6)
                  for kind in ("weight", "bias")}
    torch.save({**_seeded_vgg(0), **classifier}, cache)
    net = lpips_for_evaluation(None, "cpu")
    with torch.no_grad():
        got = net(*sample_pairs)
    assert torch.allclose(got, expected, rtol=0, atol=1e-6), (got, expected)


def test_offline_without_cache_skips_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture,
                                                 capsys: pytest.CaptureFixture) -> None:
    cache = _offline(monkeypatch, tmp_path)
    with pytest.raises(LpipsUnavailable, match=f"not in {cache} and could not be fetched"):
        standard_lpips(progress=False)
    assert capsys.readouterr().out == ""  # torch.hub's "Downloading: ..." went to stderr
    caplog.clear()
    assert lpips_for_evaluation(None, "cpu", progress=False) is None
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("LPIPS skipped: ") and "\n" not in lines[0]
    assert "reporting PSNR and SSIM only" in lines[0] and str(cache) in lines[0]
    assert not any(cache.parent.iterdir())  # no partial download left behind
