"""Training: the 3DGS loop (``trainer``), its checkpoints (``checkpoint``), the codec's
quantization-aware finetune (``finetune``) and the codec runner (``compress``)."""
from training.trainer import TrainOptions, configure_logging, train

__all__ = ["TrainOptions", "configure_logging", "train"]
