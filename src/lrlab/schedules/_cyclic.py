"""Placeholder: filled in by its owner (see the module list in lrlab/schedules/__init__.py)."""

__all__: list[str] = []
