"""One base for the errors the agent raises on purpose, and the configuration's error.

Every error the agent means to raise (a refused request, a configuration or settings problem,
a token failure, a port in use, a pairing refused, a failed self-test) derives from
``AgentError``, so a front-end can tell "the agent said no, with a text" from a bug. Those
that reach the officer carry an ``i18n.Text`` that says what happened and what to do. The
families below it: ``ConfigError`` (here), ``protocol.ProtocolError``, ``token.model.TokenError``
and its kinds, ``settings.SettingsError``, ``pairing.PairingError``, ``server.PortInUse``,
``selftest.SelfTestFailed``; tests/agent/test_errors.py checks that no class escapes the base.
"""

from __future__ import annotations

from kyso.agent import i18n


class AgentError(Exception):
    """Base of every error the agent raises on purpose (not of bugs, not of library errors)."""


class ConfigError(AgentError):
    """A configuration problem that stops the agent; ``text`` tells the officer what to do."""

    def __init__(self, message_id: str, **values: object) -> None:
        self.message_id = message_id  # catalogue key, e.g. "config.unknown_key"
        self.values = values
        self.text = i18n.text(message_id, **values)
        super().__init__(f"{self.text.vi}\n{self.text.en}")


def config_error(name: str, **values: object) -> ConfigError:
    """``ConfigError`` for the catalogue entry ``config.<name>``."""
    return ConfigError(f"config.{name}", **values)
