"""Typed configuration: one schema module per section family, YAML loading, presets.

A config has the sections ``data``, ``model``, ``loss``, ``train``,
``sampling``, ``augment``, ``srdrn`` and ``nowcast`` plus a run ``name``.
Every section is a pydantic model that forbids unknown keys, so a typo is an
error that names the key and the file (:mod:`downpour.config.loading`).
Presets (``demo``, ``srdrn``, ``nowcast``, ``cvae_v1_baseline`` …) ship with
the package in ``downpour/config/presets/``.
"""

from downpour.config.data import (
    DataConfig,
    DimNames,
    EmbeddedConfig,
    HeavyConfig,
    SplitRange,
    SplitsConfig,
    VariableSource,
)
from downpour.config.loading import (
    PRESET_DIR,
    apply_overrides,
    config_to_yaml,
    load_config,
    preset_path,
    save_config,
)
from downpour.config.models import LossConfig, ModelConfig, SRDRNConfig
from downpour.config.nowcast import NowcastConfig, RadarEvent
from downpour.config.root import Config
from downpour.config.sampling import AugmentConfig, SamplingConfig
from downpour.config.training import TrainConfig

__all__ = [
    "PRESET_DIR",
    "AugmentConfig",
    "Config",
    "DataConfig",
    "DimNames",
    "EmbeddedConfig",
    "HeavyConfig",
    "LossConfig",
    "ModelConfig",
    "NowcastConfig",
    "RadarEvent",
    "SRDRNConfig",
    "SamplingConfig",
    "SplitRange",
    "SplitsConfig",
    "TrainConfig",
    "VariableSource",
    "apply_overrides",
    "config_to_yaml",
    "load_config",
    "preset_path",
    "save_config",
]
