"""Figures: the members figure's layout."""

import numpy as np
import xarray as xr

from downpour.report import figures as plots


def test_members_figure_layout(sampled_run):
    ds = xr.open_zarr(sampled_run / "samples" / "posterior_train.zarr", consolidated=False)
    fig = plots.plot_members(ds, n_events=2, n_members=2)
    maps = [ax for ax in fig.axes if ax.get_title()]
    # 2 heaviest events × (real + 2 members), then the colour bar labelled with units
    assert len(maps) == 6
    real_mean = np.nanmean(np.where(ds["mask"].values, ds["target"].values, np.nan), axis=(1, 2))
    heaviest = np.datetime_as_string(ds["time"].values[np.argmax(real_mean)], unit="D")
    assert maps[0].get_title() == f"real {heaviest}"
    assert any("precipitation (mm/day)" in ax.get_ylabel() for ax in fig.axes)
    plots.plt.close(fig)
