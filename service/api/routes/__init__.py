"""Routers by resource: recommendations, countries, model (and reload), health."""
