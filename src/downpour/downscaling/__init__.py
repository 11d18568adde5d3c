"""The downscaling domain: store, cVAE generator, SRDRN, sampling, augmentation, verification.

The main job (:mod:`downpour.downscaling.pipeline`) runs these steps in order
on one run directory (:class:`downpour.core.rundir.RunDir`).
"""
