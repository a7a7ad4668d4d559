"""Placeholder: the spec parser and config I/O (owned by the spec/CLI work)."""

from lrlab.schedules import from_config


def parse(text):
    raise NotImplementedError


def dumps(schedule, fmt="json"):
    raise NotImplementedError


def loads(text, fmt="json"):
    raise NotImplementedError
