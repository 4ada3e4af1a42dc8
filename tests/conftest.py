import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Tests must never pick up the machine's real openQA configuration.
os.environ.setdefault("OPENQA_CONFIG", str(ROOT / "tests" / "data" / "empty-config"))
# Nor /etc/openqa or /usr/etc/openqa (the realstack writes real credentials there).
os.environ.setdefault("QAWORKER_SYSTEM_CONFIG_DIRS", str(ROOT / "tests" / "data" / "empty-config"))
