"""Garbage-collector policies to try on the worker process (issue 13 item 3; bench/scale.py --gc).

Start-up leaves a large, long-lived heap (imports, pydantic models, 100 slots' objects). With the default
policy every full collection walks all of it on the event loop. ``freeze`` moves what exists once the
slots are up into the permanent generation (``gc.freeze()``), so later collections only see what jobs
create; ``freeze-tuned`` also raises the generation-0 threshold, so collections run less often.

Measured (bench/README.md): the collector takes ~30 ms of CPU in 41 s of 100 slots at 1 job/s, its slowest
pause 2.4 ms, so the worker keeps Python's default policy; this stays here to re-measure.
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
