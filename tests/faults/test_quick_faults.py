"""A fast, representative subset of the fault suite that `make test` runs too (no faults marker).

The scenarios are the fault suite's own functions, collected here a second time without the marker.
"""

from __future__ import annotations

from tests.faults.test_process_faults import test_double_forked_orphans_are_reaped, test_isotovideo_crash
from tests.faults.test_webui_faults import test_connection_reset_mid_upload
from tests.faults.test_ws_fuzz import test_parse_message_raw_frames

__all__ = ["test_connection_reset_mid_upload", "test_double_forked_orphans_are_reaped", "test_isotovideo_crash",
           "test_parse_message_raw_frames"]
