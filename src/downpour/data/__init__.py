"""The shared data layer: from NetCDF/zarr files to torch batches, for both domains.

Modules (import what you need; nothing is imported eagerly here):

- :mod:`~downpour.data.io`: reading NetCDF/zarr into the canonical layout
- :mod:`~downpour.data.units`: CF precipitation units
- :mod:`~downpour.data.coarsen`: grid fitting, block means, regridding
- :mod:`~downpour.data.splits`: time splits and heavy-event labels
- :mod:`~downpour.data.normalize`: normalisation fitted on training days
- :mod:`~downpour.data.static`: static fields
- :mod:`~downpour.data.rain`: rain rates in a network's space (log1p, dBR),
  the temporal encoding
- :mod:`~downpour.data.transforms`: flips and rain noise
- :mod:`~downpour.data.sampler`: stratified heavy-day batches
- :mod:`~downpour.data.batching`: fixed-length epochs, shuffled batches and
  validation shards across DDP ranks

The prepared training store of the downscaling domain (its schema, writer
and reader) is :mod:`downpour.downscaling.store`; radar sequences are
:mod:`downpour.nowcast.radar`.
"""

__all__: list[str] = []
