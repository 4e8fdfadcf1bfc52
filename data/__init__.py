"""Synthetic shipment data for the window advisor (see ``data/README.md`` for provenance)."""
