"""Pieces used by two or more services."""
