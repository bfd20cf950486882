"""The frozen agent's entry point (PyInstaller runs this file as ``__main__``).

It lives in installer/, not in agent/: a script started from inside agent/ would put that folder
first on ``sys.path``, where agent/token/ would shadow the standard library's ``token`` module
(architecture.md, "Two programs, one contract"). Here it only imports the installed package.
"""

from __future__ import annotations

import sys

from kyso.agent.cli import main

if __name__ == "__main__":
    sys.exit(main())
