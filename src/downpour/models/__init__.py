"""Networks, built by name: the conditional VAE, SRDRN, the nowcast U-Net and their blocks.

Models are plain ``nn.Module`` s; the training wiring lives in
:mod:`downpour.training`. A model module registers its class in
:data:`MODELS` (:mod:`~downpour.models.registry`) and is imported here, so
:func:`build_model` knows every kind; :func:`load_model` rebuilds a trained
network from its checkpoint alone.

Examples
--------
>>> from downpour.config import Config, ModelConfig
>>> cfg = Config(model=ModelConfig(d_z=4, base_filters=4, d_x=8, d_y=8))
>>> info = {"x_channels": 2, "s_channels": 3, "shape": [24, 24], "scale_factor": 6}
>>> net = build_model("cvae", cfg, info)
>>> type(net).__name__, MODELS.names()
('CVAE', ['cvae', 'nowcast', 'srdrn'])
"""

from downpour.models.cvae import CVAE
from downpour.models.loading import LoadedModel, load_model
from downpour.models.nowcast import NowcastUNet
from downpour.models.nowcasters import Nowcaster
from downpour.models.outputs import CVAEOutput
from downpour.models.registry import MODELS, build_model
from downpour.models.srdrn import SRDRN

__all__ = [
    "CVAE",
    "MODELS",
    "SRDRN",
    "CVAEOutput",
    "LoadedModel",
    "NowcastUNet",
    "Nowcaster",
    "build_model",
    "load_model",
]
