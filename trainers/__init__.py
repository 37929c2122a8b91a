"""The unified coarse-to-fine GAN trainer (accelerate) and its configuration."""

from trainers.config import resolve_config
from trainers.trainer import train

__all__ = ["resolve_config", "train"]
