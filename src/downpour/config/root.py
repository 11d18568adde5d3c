"""The whole resolved configuration of a run: :class:`Config`."""

from __future__ import annotations

from downpour.config.base import Section
from downpour.config.data import DataConfig
from downpour.config.models import LossConfig, ModelConfig, SRDRNConfig
from downpour.config.nowcast import NowcastConfig
from downpour.config.sampling import AugmentConfig, SamplingConfig
from downpour.config.training import TrainConfig

__all__ = ["Config"]


class Config(Section):
    """The whole resolved configuration of a run."""

    name: str = "downpour"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    sampling: SamplingConfig = SamplingConfig()
    augment: AugmentConfig = AugmentConfig()
    srdrn: SRDRNConfig = SRDRNConfig()
    nowcast: NowcastConfig = NowcastConfig()
