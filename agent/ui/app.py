"""The desktop app's entry point (``kyso-agent`` without ``--headless``)."""

from __future__ import annotations

import argparse
import sys

from kyso.agent.i18n import tr


def main(args: argparse.Namespace) -> int:
    print(tr("cli.gui_unavailable", args.language or "vi"), file=sys.stderr)
    return 2
