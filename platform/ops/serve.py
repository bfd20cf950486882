"""``kyso-platform serve``: the platform on gunicorn, the production WSGI server.

Workers are processes (``--workers``, ``KYSO_WORKERS``; default 2 × cores + 1, at most 9), each
with threads (``--threads``, ``KYSO_THREADS``; default 4). Each worker builds its own application
(its own database connections, never shared across a fork). ``kill -HUP`` on the master
(``systemctl reload kyso-platform``) starts new workers with the current code and settings, then
stops the old ones gracefully (``graceful_timeout``): requests under way finish. Logs are JSON
lines on standard error (``ops.logs``), the access log included.

SQLite is refused: one file cannot take several processes' writes at national load. The demo
allows it explicitly (``--allow-sqlite``).
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from kyso.platform.ops import logs

DEFAULT_THREADS = 4


def default_workers() -> int:
    return min(2 * (os.cpu_count() or 1) + 1, 9)


def prepare_metrics_directory() -> Path:
    """prometheus-client's multiprocess mode: the variable must be set before the library is
    imported anywhere, and the folder emptied at each start (stale workers' files would add up).
    Called by ``kyso.platform.entry`` before the command line (and with it every metric) is
    imported."""
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if configured:
        folder = Path(configured)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, mode=0o700)
    else:
        folder = Path(tempfile.mkdtemp(prefix="kyso-metrics-"))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    return folder


class PlatformServer(BaseApplication):  # type: ignore[misc]
    def __init__(self, factory: Callable[[], Flask], options: dict[str, Any]) -> None:
        self.factory = factory
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.factory()


def _child_exit(_server: Any, worker: Any) -> None:
    from kyso.platform.ops import metrics

    metrics.worker_exited(worker.pid)


def _post_worker_init(_worker: Any) -> None:
    logs.configure()
    settle_heap()


def settle_heap() -> None:
    """Once the worker has built its application: the objects alive now (modules, the app,
    its settings and catalogues; some hundred thousand) leave the cyclic garbage collector's
    sight for good (``gc.freeze``). Without it, each full collection walked them all again:
    0.36–0.50 s, on 2 busy CPUs, in the middle of a request that happened to allocate enough
    (a 3,000-dose batch preparation, measured), against 0.02–0.04 s after."""
    gc.collect()
    gc.freeze()


def _warm_up() -> None:
    """Work every worker would otherwise repeat on its first requests, done once in the master
    before the workers fork from it (they share the result): the passport PDF's font subsets
    (``passport.render.warm_fonts``: 0.2 s of CPU a worker, and the wait of the first citizen
    of each worker who asks for a PDF)."""
    from kyso.platform.passport import render

    render.warm_fonts(os.environ.get("KYSO_PASSPORT_FONT_DIR") or None)


def serve(
    factory: Callable[[], Flask],
    *,
    bind: str,
    workers: int,
    threads: int,
    timeout: int = 60,
    graceful_timeout: int = 30,
) -> None:
    logs.configure()
    _warm_up()
    options: dict[str, Any] = {
        "bind": bind,
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread" if threads > 1 else "sync",
        "timeout": timeout,
        "graceful_timeout": graceful_timeout,
        "keepalive": 5,
        "preload_app": False,
        "logconfig_dict": logs.GUNICORN_LOGGING,
        "access_log_format": logs.ACCESS_LOG_FORMAT,
        # gunicornc's control socket is one fixed path per user: two instances on one host
        # would fight over it, and nothing here uses it.
        "control_socket_disable": True,
        "proc_name": "kyso-platform",
        "child_exit": _child_exit,
        "post_worker_init": _post_worker_init,
        # Address and scheme come from X-Forwarded-* through the app's own ProxyFix
        # (KYSO_TRUSTED_PROXIES), not from gunicorn.
        "forwarded_allow_ips": "",
    }
    PlatformServer(factory, options).run()
