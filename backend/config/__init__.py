"""Worker configuration: workers.ini + client.conf + environment + command line (PROTOCOL.md §2).

Drop-in compatible with the Perl worker. We implement the NEW rules, which are a superset of 2023's
(a 2023 config - one workers.ini with ``[global]`` and ``[<instance>]`` - means the same under both):
lookup groups with drop-ins and ``/usr/etc``, instance lists/ranges, ``[class:NAME]`` sections and
``KEY += value``.

The package, one concern per module:

- ``ini``: the INI dialect (parse, merge entries);   ``lookup``: which files are read;
- ``sections``: instance sections and the per-slot merge;   ``hosts``: web UIs and credentials;
- ``values``: the one parser for numbers and booleans;   ``keys``/``registry``: every known setting;
- ``tuning``: the typed values (``SlotTuning``, ``WorkerTuning``) validated once at load;
- ``model``: ``WorkerConfig`` / ``SlotConfig`` / ``HostConfig`` / ``CliOptions``;   ``load``: ``load_config``;
- ``display``: masking and the ``check-config`` rendering;   ``readme``: the README's settings table.
"""

from backend.config.display import MASK, format_masked, is_secret_key, mask_api_key, masked
from backend.config.errors import ConfigError
from backend.config.hosts import (
    build_host,
    client_conf_sections,
    detect_worker_hostname,
    find_credentials,
    normalise_host,
)
from backend.config.ini import IniData, IniEntry, apply_entries, parse_ini_text, read_ini_files
from backend.config.keys import Setting
from backend.config.load import DEFAULTS, ENV_OVERRIDES, load_config, resolve_slot_settings, slot_numbers
from backend.config.lookup import SYSTEM_CONFIG_DIRS, SYSTEM_DIRS_ENV, config_groups, lookup_config_files
from backend.config.model import CliOptions, HostConfig, SlotConfig, WorkerConfig
from backend.config.registry import ALL_SETTINGS, known_setting
from backend.config.sections import classify_sections, default_worker_class, merge_instance, parse_instance_spec
from backend.config.tuning import SlotTuning, WorkerTuning
from backend.config.values import bool_or, number_or, parse_bool, parse_number

__all__ = [
    "ALL_SETTINGS", "DEFAULTS", "ENV_OVERRIDES", "MASK", "SYSTEM_CONFIG_DIRS", "SYSTEM_DIRS_ENV",
    "CliOptions", "ConfigError", "HostConfig", "IniData", "IniEntry", "Setting", "SlotConfig", "SlotTuning",
    "WorkerConfig", "WorkerTuning", "apply_entries", "bool_or", "build_host", "classify_sections",
    "client_conf_sections", "config_groups", "default_worker_class", "detect_worker_hostname", "find_credentials",
    "format_masked", "is_secret_key", "known_setting", "load_config", "lookup_config_files", "mask_api_key",
    "masked", "merge_instance", "normalise_host", "number_or", "parse_bool", "parse_ini_text",
    "parse_instance_spec", "parse_number", "read_ini_files", "resolve_slot_settings", "slot_numbers",
]
