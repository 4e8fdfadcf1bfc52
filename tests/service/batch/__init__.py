"""Tests of ``service.batch``."""
