import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Tests must never pick up the machine's real openQA configuration.
os.environ.setdefault("OPENQA_CONFIG", str(ROOT / "tests" / "data" / "empty-config"))
