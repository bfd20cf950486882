"""Records as the facilities' files and forms carry them, for the platform's tests: a row of the
import template (``records/importer``), a file of such rows, a person's data for a correction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kyso.platform.corrections.service import PERSON_FIELDS
from kyso.platform.models import Person
from kyso.platform.records.importer import COLUMNS, template_headers
from kyso.platform.records.service import PersonData

HEADERS = template_headers("vi")


def import_row(**changes: Any) -> list[Any]:
    """One dose row of the template, with ``changes`` by field name."""
    values: dict[str, Any] = {
        "full_name": "Nguyễn Thị Lan",
        "birth_date": "17/05/1990",
        "gender": "Nữ",
        "identity_number": "079190123456",
        "phone": "0912345678",
        "address": "12 Lê Lợi",
        "area": "26740",
        "dose_number": "1",
        "vaccinated_on": "15/09/2021",
        "product": "Pfizer",
        "lot": "FK5618",
        "facility": "",
    }
    values.update(changes)
    return [values[column.field] for column in COLUMNS]


def csv_bytes(
    rows: Sequence[Sequence[Any]],
    header: Sequence[str] = HEADERS,
    encoding: str = "utf-8-sig",
    delimiter: str = ",",
) -> bytes:
    """The rows as a CSV file of the template (cells with the delimiter quoted)."""
    lines = [delimiter.join(header)]
    for values in rows:
        cells = ["" if v is None else str(v) for v in values]
        lines.append(delimiter.join(f'"{c}"' if delimiter in c else c for c in cells))
    return ("\r\n".join(lines) + "\r\n").encode(encoding)


def person_data(person: Person, **changes: Any) -> PersonData:
    """What the correction form holds for ``person`` (the fields a correction may change),
    with ``changes``."""
    current = {name: getattr(person, name) for name in PERSON_FIELDS}
    return PersonData(**(current | changes))
