"""Networks, built by name: the conditional VAE and its building blocks.

Models are plain ``nn.Module`` s; the training wiring lives in
:mod:`downpour.training`. A new model module registers itself in
:data:`MODELS` and is imported here.

Examples
--------
>>> from downpour.config import ModelConfig
>>> net = build_model(
...     "cvae", cfg=ModelConfig(d_z=4, base_filters=4, d_x=8, d_y=8),
...     x_channels=2, s_channels=3, shape=(24, 24), scale_factor=6,
... )
>>> type(net).__name__, MODELS.names()
('CVAE', ['cvae'])
"""

from downpour.models.cvae import CVAE
from downpour.models.outputs import CVAEOutput
from downpour.models.registry import MODELS, build_model

__all__ = ["CVAE", "MODELS", "CVAEOutput", "build_model"]
