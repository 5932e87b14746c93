"""The Gaussian scene representation: raw parameters by name, activated views, PLY I/O.

The model owns no optimizer and no densification statistics (see ``scene/strategy.py``); it
lives on whatever device its parameters are on (``.to(device)`` moves it).
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from compression.bitstream import read_bitstream, save
from compression.codec import CodecSettings, CodecState, sh_degree_of_params
from scene.ply import read_ply, write_ply
from utils.general_utils import build_scaling_rotation, inverse_sigmoid
from utils.graphics_utils import BasicPointCloud
from utils.sh_utils import RGB2SH

PARAM_NAMES: tuple[str, ...] = ("xyz", "f_dc", "f_rest", "opacity", "scaling", "rotation")
MAX_SUPPORTED_SH_DEGREE = 3


def nearest_neighbour_sq_dist(points: np.ndarray, k: int = 3) -> np.ndarray:
    """Mean squared distance of each point to its ``k`` nearest other points.

    Replaces simple-knn's ``distCUDA2``; with fewer than ``k + 1`` points the mean runs over
    all other points (0 for a single point).

    Args:
        points: [P, 3] float positions.

    Returns:
        [P] float64 mean squared distances.
    """
    n_other = min(k, len(points) - 1)
    if n_other <= 0:
        return np.zeros(len(points))
    # imported here: scipy.spatial is about a quarter of the imports of a process that never
    # builds a model from points (render.py, train.py --given_ply_path)
    from scipy.spatial import cKDTree

    # The first hit is the point itself (or an exact duplicate, at the same distance 0).
    dists, _ = cKDTree(points).query(points, k=n_other + 1, workers=-1)
    return (dists[:, 1:] ** 2).mean(axis=1)


class GaussianModel:
    """3D Gaussians as an ``nn.ParameterDict`` of raw (pre-activation) tensors.

    ``params`` keys: ``xyz`` [N, 3]; ``f_dc`` [N, 1, 3] and ``f_rest`` [N, K-1, 3] SH
    coefficients (K = (max_sh_degree + 1)²); ``opacity`` [N, 1] logits; ``scaling`` [N, 3]
    log scales; ``rotation`` [N, 4] wxyz quaternions, not normalized.

    Attributes:
        max_sh_degree: SH degree the parameters hold.
        active_sh_degree: degree currently used for rendering (raised by ``oneupSHdegree``).
        spatial_lr_scale: scene extent used to scale the position learning rate.
    """

    def __init__(self, sh_degree: int) -> None:
        if not 0 <= sh_degree <= MAX_SUPPORTED_SH_DEGREE:
            raise ValueError(f"sh_degree must be in 0..{MAX_SUPPORTED_SH_DEGREE}, got {sh_degree}")
        self.max_sh_degree = sh_degree
        self.active_sh_degree = 0
        self.spatial_lr_scale = 0.0
        self.params = nn.ParameterDict({
            name: nn.Parameter(torch.empty(0, *self.row_shape(name))) for name in PARAM_NAMES})

    # ------------------------------------------------------------------ shapes and device

    def row_shape(self, name: str) -> tuple[int, ...]:
        """Per-Gaussian shape of parameter ``name`` (e.g. ``(15, 3)`` for f_rest at degree 3)."""
        shapes = {"xyz": (3,), "f_dc": (1, 3), "f_rest": ((self.max_sh_degree + 1) ** 2 - 1, 3),
                  "opacity": (1,), "scaling": (3,), "rotation": (4,)}
        if name not in shapes:
            raise ValueError(f"unknown Gaussian parameter '{name}'; expected one of {PARAM_NAMES}")
        return shapes[name]

    @property
    def device(self) -> torch.device:
        return self.params["xyz"].device

    def to(self, device: torch.device | str) -> "GaussianModel":
        """Move every parameter to ``device``; returns the model."""
        self.params.to(device)
        return self

    @property
    def num_gaussians(self) -> int:
        return self.params["xyz"].shape[0]

    # ------------------------------------------------------------------ activated views

    @property
    def get_xyz(self) -> torch.Tensor:
        """[N, 3] centres."""
        return self.params["xyz"]

    @property
    def get_features_dc(self) -> torch.Tensor:
        """[N, 1, 3] degree-0 SH coefficients."""
        return self.params["f_dc"]

    @property
    def get_features_rest(self) -> torch.Tensor:
        """[N, K-1, 3] higher-band SH coefficients."""
        return self.params["f_rest"]

    @property
    def get_features(self) -> torch.Tensor:
        """[N, K, 3] all SH coefficients, band order."""
        return torch.cat((self.params["f_dc"], self.params["f_rest"]), dim=1)

    @property
    def get_opacity(self) -> torch.Tensor:
        """[N, 1] opacities in (0, 1) (sigmoid of the logits)."""
        return torch.sigmoid(self.params["opacity"])

    @property
    def get_scaling(self) -> torch.Tensor:
        """[N, 3] positive scales (exp of the log scales)."""
        return torch.exp(self.params["scaling"])

    @property
    def get_rotation(self) -> torch.Tensor:
        """[N, 4] unit wxyz quaternions."""
        return nn.functional.normalize(self.params["rotation"], dim=-1)

    def get_covariance(self, scaling_modifier: float = 1.0) -> torch.Tensor:
        """[N, 3, 3] world-space covariances ``R S² Rᵀ`` with scales times ``scaling_modifier``."""
        factor = build_scaling_rotation(self.get_scaling * scaling_modifier, self.params["rotation"])
        return factor @ factor.transpose(-1, -2)

    def oneupSHdegree(self) -> None:
        """Raise the active SH degree by one, up to ``max_sh_degree``."""
        self.active_sh_degree = min(self.active_sh_degree + 1, self.max_sh_degree)

    # ------------------------------------------------------------------ parameter edits

    def set_params(self, new_params: Mapping[str, torch.Tensor]) -> None:
        """Replace parameters by name (the others are kept).

        A given ``nn.Parameter`` is registered as is; a plain tensor is wrapped in a new leaf
        Parameter that keeps the replaced parameter's ``requires_grad``.

        Raises:
            ValueError: an unknown name, a wrong per-Gaussian shape, or tensors given
                together that disagree on N.
        """
        rows = {name: value.shape[0] for name, value in new_params.items()}
        if len(set(rows.values())) > 1:
            raise ValueError(f"set_params: parameters disagree on the number of Gaussians: {rows}")
        for name, value in new_params.items():
            expected = self.row_shape(name)
            if tuple(value.shape[1:]) != expected:
                raise ValueError(f"set_params: '{name}' must be [N, {', '.join(map(str, expected))}]"
                                 f", got {list(value.shape)}")
            if not isinstance(value, nn.Parameter):
                value = nn.Parameter(value, requires_grad=self.params[name].requires_grad)
            self.params[name] = value

    def _set_from_numpy(self, arrays: Mapping[str, np.ndarray]) -> None:
        device = self.device
        # empty().copy_() gives standard strides (numpy reports stride 0 on size-1 axes, which
        # would make every gradient break the parameter's layout).
        self.set_params({name: torch.empty(arrays[name].shape, device=device).copy_(
            torch.from_numpy(np.asarray(arrays[name], np.float32))) for name in PARAM_NAMES})

    def create_from_pcd(self, pcd: BasicPointCloud, spatial_lr_scale: float) -> None:
        """Initialise one Gaussian per point, as 3DGS does.

        Scales are isotropic: log sqrt(max(mean squared distance to the 3 nearest other points,
        1e-7)); opacity 0.1; f_dc from the point colour; f_rest zero; identity rotation.

        Args:
            pcd: points [P, 3] and colours [P, 3] in [0, 1].
            spatial_lr_scale: scene extent stored for the position learning rate.
        """
        points = np.asarray(pcd.points, dtype=np.float64)
        colors = np.asarray(pcd.colors, dtype=np.float32)
        if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
            raise ValueError(f"create_from_pcd: points must be [P>0, 3], got {points.shape}")
        if colors.shape != points.shape:
            raise ValueError(f"create_from_pcd: colors must be {points.shape}, got {colors.shape}")
        n = len(points)
        log_scale = np.log(np.sqrt(np.maximum(nearest_neighbour_sq_dist(points), 1e-7)))
        rotation = np.zeros((n, 4), np.float32)
        rotation[:, 0] = 1.0
        self._set_from_numpy({
            "xyz": points,
            "f_dc": RGB2SH(torch.from_numpy(colors)).numpy()[:, None, :],
            "f_rest": np.zeros((n, *self.row_shape("f_rest")), np.float32),
            "opacity": inverse_sigmoid(torch.full((n, 1), 0.1)).numpy(),
            "scaling": np.repeat(log_scale[:, None], 3, axis=1),
            "rotation": rotation,
        })
        self.spatial_lr_scale = float(spatial_lr_scale)

    # ------------------------------------------------------------------ files and checkpoints

    def load_ply(self, path: str | os.PathLike) -> None:
        """Load a 3DGS PLY onto the model's device; a lower SH degree is padded with zeros.

        Sets ``active_sh_degree`` to ``max_sh_degree`` (a trained model).

        Raises:
            FileNotFoundError, ValueError: see :func:`scene.ply.read_ply`; also ValueError when
                the file's SH degree exceeds ``max_sh_degree``.
        """
        arrays = read_ply(path)
        rest = arrays["f_rest"]
        k_rest = self.row_shape("f_rest")[0]
        if rest.shape[1] > k_rest:
            raise ValueError(f"{path}: file holds {rest.shape[1]} f_rest coefficients per "
                             f"channel, more than sh_degree {self.max_sh_degree} allows ({k_rest})")
        if rest.shape[1] < k_rest:  # (np.pad copies even when it adds nothing)
            arrays["f_rest"] = np.pad(rest, ((0, 0), (0, k_rest - rest.shape[1]), (0, 0)))
        self._set_from_numpy(arrays)
        self.active_sh_degree = self.max_sh_degree

    def save_ply(self, path: str | os.PathLike) -> None:
        """Write the parameters as a standard 3DGS PLY (atomic; normals written as zeros)."""
        write_ply(path, {name: p.detach().cpu().numpy() for name, p in self.params.items()})

    def capture_state(self) -> dict[str, Any]:
        """Checkpoint state by name: ``params`` (detached copies), SH degrees, spatial_lr_scale."""
        return {
            "params": {name: p.detach().clone() for name, p in self.params.items()},
            "active_sh_degree": self.active_sh_degree,
            "max_sh_degree": self.max_sh_degree,
            "spatial_lr_scale": self.spatial_lr_scale,
        }

    def restore_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`capture_state` returned (tensors moved to the model's device).

        Raises:
            ValueError: a key is missing or the state has another ``max_sh_degree``.
        """
        missing = [k for k in ("params", "active_sh_degree", "max_sh_degree", "spatial_lr_scale")
                   if k not in state]
        missing += [f"params/{k}" for k in PARAM_NAMES if k not in state.get("params", {})]
        if missing:
            raise ValueError(f"restore_state: checkpoint lacks {', '.join(missing)}")
        if state["max_sh_degree"] != self.max_sh_degree:
            raise ValueError(f"restore_state: checkpoint has max_sh_degree "
                             f"{state['max_sh_degree']}, model has {self.max_sh_degree}")
        device = self.device
        self.set_params({k: state["params"][k].detach().clone().to(device) for k in PARAM_NAMES})
        self.active_sh_degree = int(state["active_sh_degree"])
        self.spatial_lr_scale = float(state["spatial_lr_scale"])

    # ------------------------------------------------------------------ codec adapters
    # The seed's names (prepare_codec, init_qas, save_npz, load_npz) as thin adapters over the
    # codec objects of compression/, for code that holds a model. The model keeps no codec
    # state: the CodecState goes in and out explicitly. The finetune does not use them (it
    # holds the codec, its state and the parameters itself).

    @classmethod
    def from_params(cls, params: Mapping[str, torch.Tensor]) -> "GaussianModel":
        """A model holding raw parameters (e.g. a codec's ``decode``), its SH degree read from
        f_rest and active."""
        model = cls(sh_degree_of_params(params))
        model.set_params(params)
        model.active_sh_degree = model.max_sh_degree
        return model

    def prepare_codec(self, cameras: Any, settings: CodecSettings,
                      generator: torch.Generator | None = None, *, backend: str = "auto"
                      ) -> CodecState:
        """Run the codec's stages 1-6 on this model (``settings.layout.codec.prepare``).

        The model takes the prepared parameters (pruned, merged per voxel, in voxel-key order,
        ``xyz`` the frozen voxel centres) and its SH degree goes to the maximum; returns the
        codec state (the other adapters take it).
        """
        state, params = settings.layout.codec.prepare(self.params, cameras, settings, generator,
                                                      backend=backend)
        self.set_params({**params, "xyz": nn.Parameter(params["xyz"], requires_grad=False)})
        self.active_sh_degree = self.max_sh_degree
        return state

    def init_qas(self, state: CodecState, n_block: int) -> Any:
        """(Re)build the block quantizers of ``state`` with ``n_block`` blocks per column,
        ranges calibrated once from this model's coefficients; returns them (the seed's
        ``qas``: ``len(qas)`` = C·B, ``qas[c*B + j]``).

        Raises:
            ValueError: the state's codec has no block quantizers (compact: fixed steps).
        """
        codec = state.layout.codec
        if not hasattr(codec, "init_qas"):
            raise ValueError(f"layout {state.layout.name} has no block quantizers (its steps "
                             f"come from --quality / --base_step)")
        return codec.init_qas(state, self.params, n_block)

    def save_npz(self, state: CodecState, path: str | os.PathLike) -> dict[str, Any]:
        """Encode this model with ``state`` into ``path`` (bins layouts: ``<path>/bins/`` and
        ``<path>/bins.zip``; compact: ``<path>/bitstream.gsc``); the save info of
        :func:`compression.bitstream.save`."""
        return save(state, self.params, path)

    def load_npz(self, path: str | os.PathLike) -> None:
        """Replace this model's parameters by the decoded content of a bins folder, bins.zip or
        compact bitstream.gsc (Gaussians in ascending voxel-key order, SH degree at its
        maximum).

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: a corrupt or truncated bitstream (naming the file), or one whose SH
                degree differs from ``max_sh_degree``.
        """
        bitstream = read_bitstream(path)
        if bitstream.sh_degree != self.max_sh_degree:
            raise ValueError(f"{path}: bitstream has SH degree {bitstream.sh_degree}, the model "
                             f"{self.max_sh_degree}")
        self.set_params(bitstream.layout.codec.decode(bitstream, device=self.device))
        self.active_sh_degree = self.max_sh_degree
