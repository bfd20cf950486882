"""One exception base for the agent's errors (issue 13)."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

from kyso.agent.errors import AgentError, ConfigError
from kyso.agent.protocol import ErrorCode, ProtocolError
from kyso.agent.token.model import PinIncorrect, TokenError

AGENT = Path(__file__).resolve().parents[2] / "agent"


def agent_modules() -> list[str]:
    names = []
    for path in sorted(AGENT.rglob("*.py")):
        parts = path.relative_to(AGENT).with_suffix("").parts
        if parts[-1] in ("__init__", "__main__"):
            parts = parts[:-1]
        names.append(".".join(("kyso.agent", *parts)))
    return names


def test_every_exception_class_of_the_agent_derives_from_agent_error() -> None:
    defined = []
    for name in agent_modules():
        module = importlib.import_module(name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == name and issubclass(cls, BaseException):
                defined.append(cls)
    assert len(defined) >= 15  # the walk found the agent's errors (config, token, protocol...)
    strays = [f"{cls.__module__}.{cls.__qualname__}" for cls in defined]
    strays = [n for n, cls in zip(strays, defined, strict=True) if not issubclass(cls, AgentError)]
    assert strays == []


@pytest.mark.parametrize(
    "error",
    [
        ConfigError("config.no_module"),
        ProtocolError(ErrorCode.BUSY, "s1"),
        PinIncorrect(2),
    ],
)
def test_one_except_clause_catches_what_the_agent_raises_on_purpose(error: Exception) -> None:
    with pytest.raises(AgentError):
        raise error
    assert not issubclass(TokenError, ProtocolError)  # the families stay apart below the base
