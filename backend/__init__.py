"""qaworker backend: everything that does the work. Never imports Textual."""

__version__ = "0.1.0"
