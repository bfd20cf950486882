"""``kyso-agent``: the command line of the signing agent.

``--headless`` runs the agent with consent and PIN prompts on the terminal; without it, the
desktop app (tray, window, dialogs; ``kyso.agent.ui.app``) starts. Exit codes: 0 done,
2 configuration problem, 3 port taken, 4 token module problem.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from kyso.agent import __version__
from kyso.agent.config import (
    AgentConfig,
    ConfigError,
    discover_modules,
    load_config,
    resolve_module,
)
from kyso.agent.console import ConsoleUI, route_terminal_logging
from kyso.agent.i18n import tr
from kyso.agent.logs import log_path, setup_logging
from kyso.agent.manifest import ReplayGuard
from kyso.agent.pairing import ConsentMemory, PairingError
from kyso.agent.server import PortInUse, ServerThread
from kyso.agent.service import AgentService
from kyso.agent.token.model import ModuleLoadError, TokenError
from kyso.agent.token.pkcs11_token import Pkcs11Token

EXIT_CONFIG, EXIT_PORT, EXIT_MODULE = 2, 3, 4


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kyso-agent",
        description=f"{tr('cli.description', 'vi')}\n{tr('cli.description', 'en')}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--headless",
        action="store_true",
        help="run without a window: consent and PIN are asked on this terminal",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="machine config file to use instead of the system one "
        "(/etc/kyso/agent.toml, %%ProgramData%%\\Kyso\\agent.toml); for development and the demo",
    )
    parser.add_argument(
        "--user-config",
        type=Path,
        metavar="PATH",
        help="per-user config file (language, start options) instead of the default one",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        metavar="PATH",
        help="folder for the agent's per-user state (the list of used batch ids)",
    )
    parser.add_argument(
        "--language", choices=["vi", "en"], help="language of the prompts (default: config, vi)"
    )
    parser.add_argument(
        "--list-modules",
        action="store_true",
        help="list the installed PKCS#11 token drivers the agent knows, then exit",
    )
    parser.add_argument(
        "--list-certificates",
        action="store_true",
        help="list the certificates with a private key on the inserted tokens, then exit",
    )
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="check the agent end to end (server, token, test signatures), then exit; "
        "PIN from KYSO_SELFTEST_PIN or typed (see kyso.agent.selftest for exit codes)",
    )
    parser.add_argument(
        "--autostart",
        action="store_true",
        help="started by a login entry: quit at once if the officer turned 'start at login' off",
    )
    parser.add_argument(
        "--forget-origin",
        metavar="ORIGIN",
        help="remove a page the officer allowed at the headless prompt (it is asked again), "
        "then exit",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log connections and errors")
    parser.add_argument("--version", action="version", version=f"kyso-agent {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.self_test:
        from kyso.agent.selftest import run_self_test

        return run_self_test(args)
    if args.forget_origin is not None:
        return _forget_origin(args.forget_origin, args.language or "vi")
    if not (args.headless or args.list_modules or args.list_certificates):
        return _run_desktop(args)
    language = args.language or "vi"
    try:
        config = load_config(args.config, args.user_config, state_dir=args.state_dir)
        language = args.language or config.language
        if args.autostart and not config.start_at_login:
            return 0  # started by a login entry, but the officer turned that option off
        if args.list_modules:
            return _list_modules(language)
        module = resolve_module(config)
    except ConfigError as exc:
        print(exc.text.get(language), file=sys.stderr)
        return EXIT_CONFIG

    try:
        token = Pkcs11Token(module)
    except ModuleLoadError as exc:
        print(tr("cli.module_load_failed", language, module=module, error=exc), file=sys.stderr)
        return EXIT_MODULE
    try:
        if args.list_certificates:
            return _list_certificates(token, language)
        ui = ConsoleUI(language, log_file=log_path(config.state_dir), remembers=True)
        return _serve(config, token, ui, module, language)
    finally:
        token.close()


def _run_desktop(args: argparse.Namespace) -> int:
    """The desktop app (tray, window, dialogs). Imported here only: the CLI itself stays Qt-free."""
    from kyso.agent.ui.app import main as desktop_main

    return desktop_main(args)


def _serve(
    config: AgentConfig, token: Pkcs11Token, ui: ConsoleUI, module: str, language: str
) -> int:
    guard = ReplayGuard(config.state_dir / "used-batches.json")
    setup_logging(config.state_dir)  # the rotating file IT asks for (never a PIN or digest)
    # Log lines reach the terminal only through the console, which holds them while a
    # question is open (they would scroll the consent text away).
    route_terminal_logging(ui)
    # The officer's yes to a page is kept in the keyring, as the desktop's paired pages are.
    consents = ConsentMemory()
    thread = ServerThread(config, lambda: AgentService(config, token, ui, guard, consents=consents))
    try:
        port = thread.start()
    except PortInUse as exc:
        print(exc.text.get(language), file=sys.stderr)
        return EXIT_PORT
    origins = ", ".join(o.origin for o in config.origins) or tr("cli.no_origins", language)
    print(tr("cli.listening", language, port=port, origins=origins, module=module), flush=True)

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    thread.stop()
    print(tr("cli.stopped", language), flush=True)
    return 0


def _forget_origin(origin: str, language: str) -> int:
    try:
        forgotten = ConsentMemory().forget(origin)
    except PairingError as exc:
        print(tr("cli.origin_forget_failed", language, origin=origin, error=exc), file=sys.stderr)
        return EXIT_CONFIG
    if not forgotten:
        print(tr("cli.origin_not_remembered", language, origin=origin), file=sys.stderr)
        return EXIT_CONFIG
    print(tr("cli.origin_forgotten", language, origin=origin))
    return 0


def _list_modules(language: str) -> int:
    modules = discover_modules()
    if not modules:
        print(tr("cli.no_modules", language))
    for module in modules:
        print(f"{module.name}\t{module.vendor}\t{module.path}")
    return 0


def _list_certificates(token: Pkcs11Token, language: str) -> int:
    try:
        certificates = token.list_certificates()
    except TokenError as exc:
        print(exc, file=sys.stderr)
        return EXIT_MODULE
    if not certificates:
        print(tr("cli.no_certificates", language))
    for cert in certificates:
        print(
            f"{cert.fingerprint_sha256}  serial={cert.serial_hex}  {cert.key_type}-{cert.key_size}"
            f"  until={cert.not_after.date().isoformat()}  token={cert.token.label}\n"
            f"    {cert.subject}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
