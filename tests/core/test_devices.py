"""torch_device: the device a user names, checked with the option or key in the message."""

import pytest
import torch

from downpour.core.devices import torch_device
from downpour.core.errors import DownpourError


def test_cpu_and_the_default():
    assert torch_device("cpu") == torch.device("cpu")
    assert torch_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize(
    ("name", "key", "message"),
    [
        ("gpu", "--device", "--device 'gpu' is not a torch device"),
        ("gpu", "sampling.device", "sampling.device='gpu' is not a torch device"),
    ],
)
def test_a_name_torch_cannot_parse_names_the_key(name, key, message):
    with pytest.raises(DownpourError, match=message):
        torch_device(name, key)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_a_gpu_is_refused():
    with pytest.raises(DownpourError, match="--device 'cuda:1' but CUDA is not available"):
        torch_device("cuda:1")
