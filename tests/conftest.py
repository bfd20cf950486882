"""Suite-wide setup: test helpers importable as ``support.*`` and the SoftHSM fixtures."""

from __future__ import annotations

import os
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

pytest_plugins = ["softhsm_fixtures", "support.memory_keyring", "support.hanging_module"]
