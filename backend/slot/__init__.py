"""A slot (worker instance): web UI connections + acceptance (``Slot``), the job queue
(``JobRunner``), availability (``AvailabilityMonitor``) and what it needs from the worker
(``SlotServices``)."""

from backend.slot.services import SlotServices, StopFlags
from backend.slot.slot import Slot

__all__ = ["Slot", "SlotServices", "StopFlags"]
