"""Retention: how long the archive is kept and in which Object Lock mode."""

from .policy import RetentionPolicy, parse_period

__all__ = ["RetentionPolicy", "parse_period"]
