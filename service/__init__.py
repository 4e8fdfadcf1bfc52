"""Deciding and serving: the policy, one scoring function, and the ways in (CLI, HTTP, batch)."""
