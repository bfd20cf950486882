"""The agent's log file: rotating, in the per-user state folder, never a PIN or a digest.

What the agent logs is chosen where it is logged (no PIN, digest or signature is ever passed to
a logger; threat 9). ``setup_logging`` adds a ``RotatingFileHandler`` (1 MiB, 5 old files) to
the ``kyso`` logger; the Logs menu opens ``log_path(config.state_dir)``.
"""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

LOG_FILE = "agent.log"
MAX_BYTES = 1024 * 1024
BACKUPS = 5
FORMAT = "%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"


def log_path(state_dir: Path) -> Path:
    return state_dir / "logs" / LOG_FILE


def setup_logging(
    state_dir: Path,
    *,
    level: int = logging.INFO,
    max_bytes: int = MAX_BYTES,
    backups: int = BACKUPS,
) -> logging.Handler:
    """Logs ``kyso.*`` at ``level`` to the rotating file; returns the handler (to remove it).

    Calling it again for the same file replaces the earlier handler rather than doubling lines.
    """
    path = log_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("kyso")
    for old in list(logger.handlers):
        if getattr(old, "baseFilename", None) == str(path.resolve()):
            logger.removeHandler(old)
            old.close()
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8", delay=True
    )
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.setLevel(level)
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > level:
        logger.setLevel(level)
    return handler


def remove_logging(handler: logging.Handler) -> None:
    logging.getLogger("kyso").removeHandler(handler)
    handler.close()
