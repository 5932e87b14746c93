"""3DGS training: the loop (``trainer``) and its checkpoints (``checkpoint``)."""
from training.trainer import TrainOptions, configure_logging, train

__all__ = ["TrainOptions", "configure_logging", "train"]
