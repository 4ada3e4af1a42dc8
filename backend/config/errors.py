"""The one exception of the configuration."""

from __future__ import annotations


class ConfigError(Exception):
    """A bad configuration. The message is one line naming file, section and key (or the variable)."""
