"""Where a 3,000-dose batch preparation goes: ``prepare()`` in-process, phase by phase.

The setup is ``e2e_sign.py``'s (a fresh migrated database, the test PKI in its own process, the
SoftHSM token's certificates, 1,000 people with 3 doses each ticked per run), without the
agent, the page or HTTP. Each run calls ``batches.prepare`` directly with the app's signing
context, the OCSP cache emptied first (``--warm`` keeps it), and prints the wall time and the
process's CPU time of the call and of its commit, then the wall time spent in each phase (the
functions ``prepare`` calls, timed by wrapping them; they overlap where one calls another or
runs beside another) and in full garbage collections. Runs go through the modes of
``e2e_sign.py`` in turn (per record RSA-2048, per record P-256, batch mode RSA-2048).

Run: .venv/bin/python bench/prepare_phases.py [--backend postgresql|sqlite] [--runs 6] [--warm]
     [--profile DIR]  (one cProfile .pstats per run)
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import gc
import importlib
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import e2e_sign as e2e
from cryptography.hazmat.primitives import serialization

from kyso.agent.token import softhsm
from kyso.platform import testpki
from kyso.platform.signing import cms, documents, wiring

prepare_module = importlib.import_module("kyso.platform.signing.batches.prepare")

PHASES = (
    "_officer_unit",
    "active_certificate",
    "_certificate_rows",
    "_check_officer_certificate",
    "validated_selection",
    "_insert_items",
    "_new_attempt",
)

spent: dict[str, float] = {}


def timed(owner: Any, name: str, label: str) -> None:
    original: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent[label] = spent.get(label, 0.0) + time.perf_counter() - started

    setattr(owner, name, wrapper)


def watch_collections() -> None:
    started = [0.0]

    def callback(phase: str, info: dict[str, Any]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            label = "full garbage collections"
            spent[label] = spent.get(label, 0.0) + time.perf_counter() - started[0]

    gc.callbacks.append(callback)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--warm", action="store_true", help="keep the OCSP cache between runs")
    parser.add_argument("--profile", type=Path, help="write one cProfile .pstats per run here")
    args = parser.parse_args()
    if not 1 <= args.runs <= len(e2e.FAMILY_NAMES):
        parser.error(f"--runs: 1..{len(e2e.FAMILY_NAMES)}")
    for name in PHASES:
        if hasattr(prepare_module, name):
            timed(prepare_module, name, name)
    timed(documents, "certificate_document", "certificate documents")
    timed(cms.AttributesBuilder, "build", "signed attributes")
    watch_collections()
    with tempfile.TemporaryDirectory(prefix="kyso-bench-prepare-") as tmp:
        directory = Path(tmp)
        running = e2e.serve_pki(directory / "pki")
        try:
            pki = testpki.TestPki.load(directory / "pki")
            keys = [softhsm.KeySpec("rsa", "RSA", 2048), softhsm.KeySpec("p256", "EC", 256)]
            token = softhsm.provision(
                directory / "hsm", label="Kyso Bench", keys=keys, ca=pki.issuing
            )
            with (
                e2e.database(args.backend, directory) as db,
                e2e.platform(db, directory, token, False, pki) as site,
            ):
                families = iter(e2e.FAMILY_NAMES)
                for n in range(args.runs):
                    mode = e2e.MODES[n % len(e2e.MODES)]
                    e2e.prepare_run(site, token, mode, next(families))
                    der = token.certificates[mode.key].certificate.public_bytes(
                        serialization.Encoding.DER
                    )
                    with site.app.test_request_context("/"):
                        context = wiring.signing_context()
                        if not args.warm and context.revocation is not None:
                            context.revocation.forget()
                        with site.session() as session:
                            officer = e2e.officer(session)
                            spent.clear()
                            profile = cProfile.Profile() if args.profile else None
                            wall, cpu = time.perf_counter(), time.process_time()
                            if profile:
                                profile.enable()
                            prepared = prepare_module.prepare(session, officer, der, context)
                            if profile:
                                profile.disable()
                            took, took_cpu = time.perf_counter() - wall, time.process_time() - cpu
                            committed = time.perf_counter()
                            session.commit()
                            commit = time.perf_counter() - committed
                    print(
                        f"{mode.label}: prepare {took:.3f} s (CPU {took_cpu:.3f} s), commit"
                        f" {commit:.3f} s, {prepared.total} doses",
                        flush=True,
                    )
                    for label, seconds in spent.items():
                        print(f"    {label:32s} {seconds:.3f} s")
                    if profile and args.profile:
                        args.profile.mkdir(parents=True, exist_ok=True)
                        profile.dump_stats(args.profile / f"prepare-{n + 1}.pstats")
        finally:
            running.terminate()
            running.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
