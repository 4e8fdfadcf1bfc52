"""Tests of ``model``."""
