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


def test_rapsd_ratio_figure_has_the_unit_line_and_the_factor_band():
    wavelength = 48 / np.arange(1, 24)
    ratio = np.linspace(0.5, 1.8, 23)
    ratio[3] = np.nan  # undefined ratios are not drawn
    fig = plots.plot_rapsd_ratio(wavelength, [None if np.isnan(v) else v for v in ratio])
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "wavelength (cells)"
    (curve,) = [line for line in ax.get_lines() if line.get_label() == "generated / real"]
    assert len(curve.get_xdata()) == 22
    levels = sorted(line.get_ydata()[0] for line in ax.get_lines() if line is not curve)
    np.testing.assert_allclose(levels, [1 / 1.5, 1.0, 1.5])
    assert {t.get_text() for t in ax.get_legend().get_texts()} >= {
        "within ×1.5",
        "generated / real",
    }
    plots.plt.close(fig)


def test_rank_histogram_figure_has_k_plus_one_bars_and_the_uniform_line():
    fig = plots.plot_rank_histogram([0.3, 0.2, 0.2, 0.3])
    ax = fig.axes[0]
    assert [p.get_height() for p in ax.patches] == [0.3, 0.2, 0.2, 0.3]
    assert ax.get_lines()[0].get_ydata()[0] == 0.25
    assert "among the 3 members" in ax.get_xlabel()
    plots.plt.close(fig)
