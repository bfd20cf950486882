"""The rules a vaccination record must follow, shared by the editing service and the import.

Each check returns every problem it finds (not only the first), as ``Problem`` values naming
the field and a catalogue text that says what is wrong and what to do; the service raises
them as one ``InvalidRecord``, the import reports them per row and column.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from kyso.platform.errors import DomainError

# Vietnam started vaccinating against COVID-19 on 8 March 2021; nothing is dated before March.
FIRST_VACCINATION_DAY = date(2021, 3, 1)
EARLIEST_BIRTH_DATE = date(1900, 1, 1)
MAX_DOSES = 3  # primary series and one booster: what this signing procedure certifies
NAME_MAX = 120
LOT_MAX = 64
ADDRESS_MAX = 255
IDENTITY_MAX = 12
VIETNAM = timezone(timedelta(hours=7), "ICT")  # no daylight saving time

# Field names, as the Person and Dose models call them.
FULL_NAME = "full_name"
BIRTH_DATE = "birth_date"
GENDER = "gender"
IDENTITY_NUMBER = "identity_number"
PHONE = "phone"
ADDRESS = "address"
AREA = "area"
DOSE_NUMBER = "dose_number"
VACCINATED_ON = "vaccinated_on"
PRODUCT = "product"
LOT = "lot"
FACILITY = "facility"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one field: ``key`` is the catalogue text, ``values`` fill it in."""

    field: str
    key: str
    values: dict[str, Any] = dataclasses.field(default_factory=dict)


class InvalidRecord(DomainError):
    """A record breaks one or more rules; ``problems`` lists them all (the text is the first)."""

    def __init__(self, problems: list[Problem]) -> None:
        if not problems:
            raise ValueError("an invalid record needs at least one problem")
        super().__init__(problems[0].key, **problems[0].values)
        self.problems = problems


def today_in_vietnam() -> date:
    """'Not in the future' is judged on the facility's calendar, not the server's."""
    return datetime.now(UTC).astimezone(VIETNAM).date()


def display_date(value: date) -> str:
    return value.strftime("%d/%m/%Y")


def clean_text(value: str | None) -> str | None:
    """NFC, single spaces, None when empty: what a person meant, whatever the keyboard sent."""
    if value is None:
        return None
    text = " ".join(unicodedata.normalize("NFC", value).split())
    return text or None


def clean_identity(value: str | None) -> str | None:
    """Blanks, dots and dashes dropped ("079 190 123 456" and "079.190.123.456" both count)."""
    text = clean_text(value)
    if text is None:
        return None
    return re.sub(r"[\s.\-]", "", text) or None


def clean_phone(value: str | None) -> str | None:
    """Digits only, the country code folded into the leading 0 ("+84 912..." -> "0912...")."""
    text = clean_text(value)
    if text is None:
        return None
    digits = re.sub(r"[\s.\-()]", "", text)
    if digits.startswith("+84"):
        digits = "0" + digits[3:]
    elif digits.startswith("84") and len(digits) == 11:
        digits = "0" + digits[2:]
    return digits


def check_person(
    full_name: str | None,
    birth_date: date | None,
    gender: object | None,
    identity_number: str | None,
    phone: str | None,
    address: str | None,
    today: date,
) -> list[Problem]:
    """The rules of a person's data (values already cleaned with the functions above)."""
    problems: list[Problem] = []
    if not full_name:
        problems.append(Problem(FULL_NAME, "records.name_required"))
    elif len(full_name) > NAME_MAX:
        problems.append(Problem(FULL_NAME, "records.name_too_long", {"max": NAME_MAX}))
    elif any(ch.isdigit() for ch in full_name):
        problems.append(Problem(FULL_NAME, "records.name_has_digits"))
    if birth_date is None:
        problems.append(Problem(BIRTH_DATE, "records.birth_date_required"))
    elif birth_date > today:
        problems.append(Problem(BIRTH_DATE, "records.birth_date_future"))
    elif birth_date < EARLIEST_BIRTH_DATE:
        problems.append(Problem(BIRTH_DATE, "records.birth_date_too_early"))
    if gender is None:
        problems.append(Problem(GENDER, "records.gender_required"))
    if identity_number is not None:
        if not identity_number.isascii() or not identity_number.isdigit():
            problems.append(Problem(IDENTITY_NUMBER, "records.identity_not_digits"))
        elif len(identity_number) > IDENTITY_MAX:
            problems.append(Problem(IDENTITY_NUMBER, "records.identity_too_long"))
    if phone is not None and not re.fullmatch(r"0\d{9,10}", phone):
        problems.append(Problem(PHONE, "records.phone_invalid"))
    if address is not None and len(address) > ADDRESS_MAX:
        problems.append(Problem(ADDRESS, "records.address_too_long", {"max": ADDRESS_MAX}))
    return problems


def check_dose(
    dose_number: int | None,
    vaccinated_on: date | None,
    lot: str | None,
    birth_date: date | None,
    today: date,
) -> list[Problem]:
    """The rules of one dose on its own; ``check_dose_order`` looks at a person's doses together."""
    problems: list[Problem] = []
    if dose_number is None:
        problems.append(Problem(DOSE_NUMBER, "records.dose_number_required"))
    elif dose_number > MAX_DOSES:
        problems.append(Problem(DOSE_NUMBER, "records.dose_number_too_high", {"max": MAX_DOSES}))
    elif dose_number < 1:
        problems.append(Problem(DOSE_NUMBER, "records.dose_number_invalid", {"max": MAX_DOSES}))
    if vaccinated_on is None:
        problems.append(Problem(VACCINATED_ON, "records.vaccinated_on_required"))
    elif vaccinated_on > today:
        problems.append(Problem(VACCINATED_ON, "records.vaccinated_on_future"))
    elif vaccinated_on < FIRST_VACCINATION_DAY:
        problems.append(
            Problem(
                VACCINATED_ON,
                "records.vaccinated_on_too_early",
                {"first": display_date(FIRST_VACCINATION_DAY)},
            )
        )
    elif birth_date is not None and vaccinated_on < birth_date:
        problems.append(Problem(VACCINATED_ON, "records.vaccinated_before_birth"))
    if not lot:
        problems.append(Problem(LOT, "records.lot_required"))
    elif len(lot) > LOT_MAX:
        problems.append(Problem(LOT, "records.lot_too_long", {"max": LOT_MAX}))
    return problems


def check_dose_order(
    dose_number: int, vaccinated_on: date, others: Iterable[tuple[int, date]]
) -> list[Problem]:
    """A later dose number must have a later date than every earlier one, and the reverse."""
    problems: list[Problem] = []
    for number, on in sorted(others):
        if number == dose_number:
            continue
        if (number < dose_number and on >= vaccinated_on) or (
            number > dose_number and on <= vaccinated_on
        ):
            problems.append(
                Problem(
                    VACCINATED_ON,
                    "records.dose_order",
                    {
                        "number": dose_number,
                        "date": display_date(vaccinated_on),
                        "other": number,
                        "other_date": display_date(on),
                    },
                )
            )
    return problems
