"""3,000 digests through the real agent vs a raw python-pkcs11 loop, on the same SoftHSM token.

Our path: a page-like client sends one `sign` request (manifest, 3,000 digests) to the real
WebSocket server on loopback. The agent runs in its own process, as on the officer's PC (the
page is the browser, another process). It verifies the manifest and the commitment, lists the
token's certificates, reads the PIN flags, asks the (scripted) consent, logs in once, signs on
its token worker thread, streams the signatures back in chunks of 100 and logs out. Timed from
sending the request to receiving the result.

Raw: open a session with the PIN, find the key, `key.sign(...)` in a loop, close. Same token,
same digests, interleaved rounds; the medians are compared (and the best rounds, which are
less sensitive to a noisy machine).

CPU: the agent process's CPU time (all its threads, SoftHSM's signing included) over the raw
loop's, per round; it moves far less with the machine's load than wall times do (the load
average is printed). "own µs/d" is that difference per digest: the agent's CPU beyond the raw
loop's; "not worker" is the part spent outside the token worker (POSIX per-thread CPU clocks):
the asyncio thread's JSON, base64, framing and chunk hand-overs, and the executor threads of
the hops. Medians of the rounds. ``--profile`` runs cProfile on the agent's asyncio thread and
token worker during the rounds and prints where their time went.

Run: .venv/bin/python bench/agent_throughput.py [--count 3000] [--rounds 9] [--profile]
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import hashlib
import io
import multiprocessing
import os
import pstats
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from multiprocessing.connection import Connection
from multiprocessing.queues import Queue
from pathlib import Path

import pkcs11
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pkcs11 import Mechanism, ObjectClass
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.agent_harness import ORIGIN, Page, start_agent  # noqa: E402
from support.platform_keys import ManifestIssuer  # noqa: E402

from kyso.agent.token import softhsm  # noqa: E402
from kyso.agent.token.pkcs11_token import Pkcs11Token  # noqa: E402

DIGEST_INFO_SHA256 = bytes.fromhex("3031300d060960864801650304020105000420")


def raw_loop(token: softhsm.ProvisionedToken, key_name: str, digests: list[bytes]) -> float:
    key_id = token.keys[key_name].key_id
    ec_key = token.keys[key_name].key_type == "EC"
    lib = pkcs11.lib(token.module_path)
    slot = next(s for s in lib.get_slots(token_present=True) if s.slot_id == token.slot_id)
    started = time.perf_counter()
    with slot.get_token().open(user_pin=token.user_pin) as session:
        key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, id=key_id)
        if ec_key:
            for digest in digests:
                key.sign(digest, mechanism=Mechanism.ECDSA)
        else:
            for digest in digests:
                key.sign(DIGEST_INFO_SHA256 + digest, mechanism=Mechanism.RSA_PKCS)
    return time.perf_counter() - started


def thread_cpu() -> dict[str, float]:
    """CPU seconds of each live Python thread of this process, by name (POSIX thread clocks)."""
    found: dict[str, float] = {}
    for thread in threading.enumerate():
        if thread.ident is None:
            continue
        try:
            clock = time.pthread_getcpuclockid(thread.ident)
            seconds = time.clock_gettime(clock)
        except (OSError, ProcessLookupError):
            continue  # ended meanwhile
        found[thread.name] = found.get(thread.name, 0.0) + seconds
    return found


def serve_agent(
    directory: str, issuer_pem: bytes, user_pin: str, ready: Queue[int], control: Connection
) -> None:
    """The agent process: the real server and token layer, the scripted consent of the tests.

    ``control`` answers "cpu" with the process's CPU time, "profile" by starting cProfile on
    the asyncio thread and the token worker, and "stats" with what they recorded.
    """
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(issuer_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    softhsm.activate(Path(directory) / "hsm" / "softhsm2.conf")
    layer = Pkcs11Token(softhsm.find_module())
    agent = start_agent(layer, Path(directory) / "state", issuer=ManifestIssuer(ORIGIN, key))
    agent.ui.pin = user_pin
    ready.put(agent.port)
    profiles = {"asyncio thread": cProfile.Profile(), "token worker": cProfile.Profile()}

    def on_loop(function: Callable[[], None]) -> None:
        done: Future[None] = Future()
        loop = agent.thread._loop  # the bench reaches into the agent; the agent offers no hook
        assert loop is not None
        loop.call_soon_threadsafe(lambda: (function(), done.set_result(None)))
        done.result()

    while True:
        command = control.recv()
        if command == "cpu":
            control.send(time.process_time())
        elif command == "threads":
            control.send(thread_cpu())
        elif command == "profile":
            on_loop(profiles["asyncio thread"].enable)
            layer._executor.submit(profiles["token worker"].enable).result()
        elif command == "stats":
            on_loop(profiles["asyncio thread"].disable)
            layer._executor.submit(profiles["token worker"].disable).result()
            out = io.StringIO()
            for label, profile in profiles.items():
                out.write(f"===== {label}\n")
                stats = pstats.Stats(profile, stream=out)
                stats.sort_stats("tottime").print_stats(18)
            control.send(out.getvalue())


def agent_path(
    port: int,
    issuer: ManifestIssuer,
    fingerprint: str,
    algorithm: str,
    digests: list[bytes],
    n: int,
) -> float:
    request = {
        "type": "sign",
        "id": f"s{n}",
        "manifest": issuer.issue(fingerprint, algorithm, digests),
        "certificate": fingerprint,
        "algorithm": algorithm,
        "digests": [base64.b64encode(d).decode() for d in digests],
    }
    with connect(f"ws://127.0.0.1:{port}/", origin=ORIGIN) as ws:  # type: ignore[arg-type]
        page = Page(ws)
        page.hello()
        started = time.perf_counter()
        page.send(request)
        replies = page.until_done(str(request["id"]))
        elapsed = time.perf_counter() - started
    final = replies[-1]
    if final["type"] != "result" or final["signed"] != len(digests):
        raise SystemExit(f"agent path failed: {final}")
    signed = sum(len(r["signatures"]) for r in replies if r["type"] == "signatures")
    assert signed == len(digests)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="kyso-bench-") as tmp:
        keys = [softhsm.KeySpec("rsa", "RSA", 2048), softhsm.KeySpec("p256", "EC", 256)]
        token = softhsm.provision(Path(tmp) / "hsm", label="Kyso Bench", keys=keys)
        issuer = ManifestIssuer(ORIGIN)
        pem = issuer.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        context = multiprocessing.get_context("spawn")
        ready: Queue[int] = context.Queue()
        control, child_control = context.Pipe()
        child = context.Process(
            target=serve_agent,
            args=(tmp, pem, token.user_pin, ready, child_control),
            daemon=True,
        )
        child.start()

        def agent_cpu() -> float:
            control.send("cpu")
            value: float = control.recv()
            return value

        def agent_threads() -> dict[str, float]:
            control.send("threads")
            value: dict[str, float] = control.recv()
            return value

        try:
            port = ready.get(timeout=60)
            if args.profile:
                control.send("profile")
            print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
            print(f"{args.count} digests, {args.rounds} interleaved rounds, median times")
            print(
                f"{'key':<10}{'raw loop':>12}{'agent':>12}{'ratio':>9}{'raw/s':>10}{'agent/s':>10}"
                f"{'cpu ratio':>11}{'own µs/d':>10}{'not worker':>12}"
            )
            for name, algorithm in (("rsa", "RSA_PKCS1_SHA256"), ("p256", "ECDSA_SHA256")):
                fingerprint = token.certificates[name].fingerprint_sha256
                raw, ours, cpu, own, loop_side = [], [], [], [], []
                for n in range(args.rounds):
                    digests = [
                        hashlib.sha256(f"{name}-{n}-{i}".encode()).digest()
                        for i in range(args.count)
                    ]
                    started = time.process_time()
                    raw.append(raw_loop(token, name, digests))
                    raw_cpu = time.process_time() - started
                    before, threads_before = agent_cpu(), agent_threads()
                    ours.append(agent_path(port, issuer, fingerprint, algorithm, digests, n))
                    agent_spent = agent_cpu() - before
                    cpu.append(agent_spent / raw_cpu)
                    own.append((agent_spent - raw_cpu) / args.count * 1e6)
                    others = sum(
                        seconds - threads_before.get(name, 0.0)
                        for name, seconds in agent_threads().items()
                        if not name.startswith("kyso-pkcs11")
                    )
                    loop_side.append(others / args.count * 1e6)
                r, o = statistics.median(raw), statistics.median(ours)
                print(f"   (best of {args.rounds}: ratio {min(ours) / min(raw):.3f})")
                label = "RSA-2048" if name == "rsa" else "P-256"
                print(
                    f"{label:<10}{r:>11.3f}s{o:>11.3f}s{o / r:>8.3f}x"
                    f"{args.count / r:>10.0f}{args.count / o:>10.0f}"
                    f"{statistics.median(cpu):>10.3f}x{statistics.median(own):>10.1f}"
                    f"{statistics.median(loop_side):>12.1f}"
                )
            print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
            if args.profile:
                control.send("stats")
                print(control.recv())
        finally:
            child.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
