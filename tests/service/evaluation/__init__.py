"""Tests of ``service.evaluation``."""
