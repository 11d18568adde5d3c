"""Data layer: from NetCDF/zarr files to torch batches.

xarray I/O, units, grids, splits, normalisation, the embedded dataset, the
prepared store, torch datasets, samplers and augmentations.

Modules (import what you need; nothing is imported eagerly here):

- :mod:`~downpour.data.io` — reading NetCDF/zarr into the canonical layout
- :mod:`~downpour.data.units` — CF precipitation units
- :mod:`~downpour.data.coarsen` — grid fitting, block means, regridding
- :mod:`~downpour.data.splits` — time splits and heavy-event labels
- :mod:`~downpour.data.normalize` — normalisation fitted on training days
- :mod:`~downpour.data.static` — static fields
- :mod:`~downpour.downscaling.synthetic` — the embedded dataset generator
- :mod:`~downpour.downscaling.prepare` — ``downpour prepare``
- :mod:`~downpour.downscaling.store` — the store layout and reader
- :mod:`~downpour.downscaling.dataset`, :mod:`~downpour.data.sampler`,
  :mod:`~downpour.data.transforms` — torch side
"""

__all__: list[str] = []
