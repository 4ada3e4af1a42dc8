"""The INI dialect of openQA's config files (Config::IniFiles): ``[section]``, ``KEY = value``,
``KEY += value``, ``#`` and ``;`` comments; keys upper-cased, values trimmed; later files override."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from backend.config.errors import ConfigError


@dataclass
class IniEntry:
    key: str  # upper-cased
    value: str  # trimmed
    append: bool  # written as "KEY += value"
    file: Path
    line: int


@dataclass
class IniData:
    """All files of one kind (workers.ini or client.conf) merged in order: section -> entries."""

    files: list[Path] = field(default_factory=list)
    sections: dict[str, list[IniEntry]] = field(default_factory=dict)
    section_files: dict[str, Path] = field(default_factory=dict)  # where a section first appeared

    def has(self, section: str) -> bool:
        return section in self.sections


_SECTION_RE = re.compile(r"^\[\s*(.*?)\s*\]$")


def parse_ini_text(text: str, path: Path, into: IniData | None = None) -> IniData:
    """Parse one INI file; later files parsed into the same ``IniData`` override earlier ones."""
    data = into or IniData()
    data.files.append(path)
    section: str | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            match = _SECTION_RE.match(line)
            if not match or not match.group(1):
                raise ConfigError(f"{path}: line {lineno}: bad section header {line!r}")
            section = match.group(1)
            data.sections.setdefault(section, [])
            data.section_files.setdefault(section, path)
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        append = key.endswith("+")
        key = key[:-1].strip() if append else key
        if not sep or not key:
            raise ConfigError(f"{path}: line {lineno}: expected '[section]' or 'KEY = value', got {line!r}")
        if section is None:
            raise ConfigError(f"{path}: line {lineno}: {key.upper()} is outside of any [section]")
        data.sections[section].append(IniEntry(key.upper(), value.strip(), append, path, lineno))
    return data


def read_ini_files(paths: Iterable[Path]) -> IniData:
    """Read and parse the files in order. A file that cannot be read is an error naming it: the
    lookup found it, so the admin meant it to be used (the Perl worker skips it silently)."""
    data = IniData()
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not a UTF-8 text file") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot be read: {exc.strerror or exc}") from None
        parse_ini_text(text, path, data)
    return data


def apply_entries(target: dict[str, str], origins: dict[str, str], entries: Iterable[IniEntry],
                  section: str) -> None:
    """Apply a section's entries in order: ``=`` sets, ``+=`` appends ``,value``."""
    for entry in entries:
        current = target.get(entry.key)
        value = f"{current},{entry.value}" if entry.append and current else entry.value
        target[entry.key] = value
        origins[entry.key] = f"{entry.file} [{section}]"
