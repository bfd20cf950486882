"""The ``kyso-platform`` program: prepares what must come before any import, then the CLI.

``kyso-platform serve`` runs gunicorn workers forked from this process, and prometheus-client
chooses, when it is first imported, whether metrics live in this process or in files shared by
the workers (``PROMETHEUS_MULTIPROC_DIR``). The command line imports every feature, and the
features import their metrics, so the folder is prepared here, before ``kyso.platform.cli`` is
imported.
"""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:2] == ["serve"]:
        from kyso.platform.ops.serve import prepare_metrics_directory

        prepare_metrics_directory()
    from kyso.platform.cli import main as cli

    cli()


if __name__ == "__main__":
    main()
