"""The control socket: the worker's read model and command API for ``qaworker attach`` (no Textual here)."""
