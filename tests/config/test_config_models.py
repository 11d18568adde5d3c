"""Model sections of the config: SRDRNConfig checks and preset values."""

import pydantic
import pytest

from downpour.config import SRDRNConfig, load_config


def test_config_fields():
    with pytest.raises(pydantic.ValidationError, match="kernel_size must be odd"):
        SRDRNConfig(kernel_size=4)
    paper = load_config("srdrn").srdrn
    assert (paper.upsample_filters, paper.kernel_size, paper.output) == (256, 3, "linear")
    assert paper.patience is None and paper.batches_per_epoch is None
    demo = load_config("demo").srdrn
    assert demo.batches_per_epoch is not None and demo.filters < paper.filters
