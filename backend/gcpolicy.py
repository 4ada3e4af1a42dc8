"""Garbage-collector policy of the worker process (issue 13 item 3).

Start-up leaves a large, long-lived heap (imports, pydantic models, 100 slots' objects). With the default
policy every full collection walks all of it on the event loop. ``freeze`` moves what exists once the
slots are up into the permanent generation (``gc.freeze()``), so later collections only see what jobs
create; ``freeze-tuned`` also raises the generation-0 threshold, so collections run less often.
"""

from __future__ import annotations

import gc

GC_POLICIES = ("default", "freeze", "freeze-tuned")
TUNED_THRESHOLDS = (50_000, 20, 20)


def apply_gc_policy(policy: str) -> None:
    """Apply ``policy`` (one of GC_POLICIES) now; call it once start-up is done."""
    if policy not in GC_POLICIES:
        raise ValueError(f"unknown gc policy {policy!r} (one of {', '.join(GC_POLICIES)})")
    if policy == "default":
        return
    gc.freeze()
    if policy == "freeze-tuned":
        gc.set_threshold(*TUNED_THRESHOLDS)
