"""The wire format of the population registry's lookup API (README.md in this folder).

Shared by the HTTP client and the reference service, so that the two cannot drift apart.
Kept free of HTTP libraries: it only turns citizens into JSON objects and back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from kyso.platform.models.records import Gender

API_VERSION = "v1"
LOOKUP_PATH = "/v1/citizens:lookup"
HEALTH_PATH = "/v1/health"
MAX_BATCH = 500  # identity numbers per lookup request
MAX_BODY_BYTES = 64 * 1024  # 500 numbers need ~8 KiB; anything much larger is not a lookup

_NUMBER = re.compile(r"[0-9]{12}")


class ProtocolViolation(ValueError):
    """A message that does not follow the protocol."""


@dataclass(frozen=True)
class RegistryCitizen:
    """What the registry holds about one identity number."""

    identity_number: str
    full_name: str
    birth_date: date
    gender: Gender

    def to_json(self) -> dict[str, str]:
        return {
            "identity_number": self.identity_number,
            "full_name": self.full_name,
            "birth_date": self.birth_date.isoformat(),
            "gender": self.gender.value,
        }

    @classmethod
    def from_json(cls, data: Any) -> RegistryCitizen:
        if not isinstance(data, dict):
            raise ProtocolViolation("a citizen must be a JSON object")
        number = data.get("identity_number")
        name = data.get("full_name")
        born = data.get("birth_date")
        gender = data.get("gender")
        if not isinstance(number, str) or not _NUMBER.fullmatch(number):
            raise ProtocolViolation("citizen.identity_number must be 12 digits")
        if not isinstance(name, str) or not name.strip():
            raise ProtocolViolation("citizen.full_name must be a non-empty string")
        if not isinstance(born, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", born):
            raise ProtocolViolation("citizen.birth_date must be YYYY-MM-DD")
        try:
            birth_date = date.fromisoformat(born)
        except ValueError as exc:
            raise ProtocolViolation(f"citizen.birth_date {born!r} is not a date") from exc
        if gender not in {g.value for g in Gender}:
            raise ProtocolViolation('citizen.gender must be "male" or "female"')
        return cls(number, name, birth_date, Gender(gender))


def is_identity_number(value: Any) -> bool:
    """The registry only answers for 12-digit personal numbers."""
    return isinstance(value, str) and _NUMBER.fullmatch(value) is not None


def lookup_request(identity_numbers: list[str]) -> dict[str, Any]:
    return {"identity_numbers": identity_numbers}


def parse_lookup_request(body: Any) -> list[str]:
    """The identity numbers of a lookup request; raises ProtocolViolation when malformed."""
    if not isinstance(body, dict) or not isinstance(body.get("identity_numbers"), list):
        raise ProtocolViolation('the body must be {"identity_numbers": [...]}')
    numbers: list[str] = body["identity_numbers"]
    if not numbers:
        raise ProtocolViolation("identity_numbers must not be empty")
    bad = [n for n in numbers if not is_identity_number(n)]
    if bad:
        raise ProtocolViolation(f"{len(bad)} identity number(s) are not 12 digits")
    return numbers


def parse_lookup_response(body: Any, requested: list[str]) -> dict[str, RegistryCitizen | None]:
    """Every requested number mapped to its citizen, or to None when the registry has none.

    The answer must account for every requested number exactly once, and for nothing else:
    anything else would let one person's data be attached to another.
    """
    if not isinstance(body, dict):
        raise ProtocolViolation("the response must be a JSON object")
    citizens = body.get("citizens")
    not_found = body.get("not_found")
    if not isinstance(citizens, list) or not isinstance(not_found, list):
        raise ProtocolViolation('the response must have "citizens" and "not_found" lists')
    wanted = set(requested)
    answers: dict[str, RegistryCitizen | None] = {}
    for item in citizens:
        citizen = RegistryCitizen.from_json(item)
        _account(answers, wanted, citizen.identity_number)
        answers[citizen.identity_number] = citizen
    for number in not_found:
        if not isinstance(number, str):
            raise ProtocolViolation("not_found must list identity numbers")
        _account(answers, wanted, number)
        answers[number] = None
    missing = wanted - answers.keys()
    if missing:
        raise ProtocolViolation(f"the response left {len(missing)} number(s) unanswered")
    return answers


def _account(answers: dict[str, RegistryCitizen | None], wanted: set[str], number: str) -> None:
    if number not in wanted:
        raise ProtocolViolation("the response answers a number that was not asked for")
    if number in answers:
        raise ProtocolViolation("the response answers a number twice")


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}
