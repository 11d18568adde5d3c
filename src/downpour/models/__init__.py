"""Networks, built by name: the conditional VAE, SRDRN, the nowcast U-Net and their blocks.

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
('CVAE', ['cvae', 'nowcast_unet', 'srdrn'])
"""

from downpour.models.cvae import CVAE
from downpour.models.nowcast import NowcastUNet
from downpour.models.outputs import CVAEOutput
from downpour.models.registry import MODELS, build_model
from downpour.models.srdrn import SRDRN

__all__ = ["CVAE", "MODELS", "SRDRN", "CVAEOutput", "NowcastUNet", "build_model"]
