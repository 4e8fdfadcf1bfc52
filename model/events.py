"""Carrier tracking scans: the product's one milestone vocabulary.

Every importer (AfterShip, 17TRACK, ...) and the generator speak these milestones; the
events schema (``order_id, event_at, milestone`` and optional ``carrier, location,
description``) is documented in the README.
"""

from __future__ import annotations

__all__ = ["EVENT_COLUMNS", "MILESTONES", "OPTIONAL_EVENT_COLUMNS", "REQUIRED_EVENT_COLUMNS"]

MILESTONES: tuple[str, ...] = (
    "info_received",
    "picked_up",
    "departed_origin",
    "arrived_destination",
    "customs_hold",
    "customs_cleared",
    "out_for_delivery",
    "delivery_failed",
    "available_for_pickup",
    "delivered",
    "returning",
    "returned",
    "exception",
    "lost",
)
"""The milestones in the contract's order (roughly the journey's order; the last four are
the ways a parcel may leave it)."""

REQUIRED_EVENT_COLUMNS: tuple[str, ...] = ("order_id", "event_at", "milestone")
OPTIONAL_EVENT_COLUMNS: tuple[str, ...] = ("carrier", "location", "description")
EVENT_COLUMNS: tuple[str, ...] = REQUIRED_EVENT_COLUMNS + OPTIONAL_EVENT_COLUMNS
