"""Sample quality of a samples store: JSON and figures (``evaluate``)."""

import numpy as np
import pytest
import xarray as xr

from downpour.downscaling.quality import evaluate, read_quality
from downpour.metrics.sample_quality import evaluate_samples

PNG = b"\x89PNG\r\n\x1a\n"


def test_evaluate_writes_json_and_figures(sampled_run, tmp_path):
    samples = sampled_run / "samples" / "posterior_train.zarr"
    q = evaluate(samples, tmp_path)
    ds = xr.open_zarr(samples, consolidated=False, chunks=None)
    direct = evaluate_samples(ds).summary
    saved = read_quality(tmp_path)["posterior_train"]
    for key in ("diversity", "spatial_correlation", "mass_bias", "wet_fraction_generated"):
        assert saved[key] == pytest.approx(direct[key]) == pytest.approx(q.summary[key])
    assert saved["mode"] == "posterior" and saved["members"] == 3
    assert saved["real"]["max"] == pytest.approx(float(np.nanmax(ds["target"].values)))
    for name in ("members", "intensity", "rapsd", "rapsd_ratio", "rank_histogram", "distributions"):
        png = tmp_path / "figures" / f"posterior_train_{name}.png"
        assert png.read_bytes()[:8] == PNG and png.stat().st_size > 10_000
    # ensemble scores and the RAPSD ratio are in the JSON beside the older keys
    assert saved["ensemble"]["crps_ecdf"] == pytest.approx(direct["ensemble"]["crps_ecdf"])
    assert len(saved["ensemble"]["rank_histogram"]["frequencies"]) == 3 + 1
    assert saved["real"]["P99.9"] >= saved["real"]["P99"]
    ratio = saved["rapsd_ratio"]
    assert len(ratio["ratio"]) == len(ratio["wavelength"]) == q.spectra.sizes["wavenumber"] - 1
    # the spectra of the real fields equal the mean RAPSD of the real fields
    from downpour.metrics.spectra import mean_rapsd

    mask = ds["mask"].values
    _, p = mean_rapsd(np.where(mask, np.nan_to_num(ds["target"].values), 0.0))
    np.testing.assert_allclose(q.spectra["real"].values, p)
