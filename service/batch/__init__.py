"""Batch scoring of open-order files: the local streaming engine, its file I/O, the Dask engine."""
