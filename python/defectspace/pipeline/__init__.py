"""Pipelines over many placements: screening (:mod:`~defectspace.pipeline.screening`: generate,
canonicalize, dedupe, embed, predict, filter, in one process or on Dask) and inverse design
(:mod:`~defectspace.pipeline.design`). Libraries only; their commands are in :mod:`defectspace.cli`.
"""
