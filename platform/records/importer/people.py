"""Rows grouped into people, each group linked to the person already recorded (never telling
about people outside the importer's scope), and the doses that are new."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kyso.platform.models import (
    Dose,
    Facility,
    Person,
    User,
)
from kyso.platform.records import rules
from kyso.platform.records.importer.rows import _Reporter, _Row
from kyso.platform.records.names import name_key
from kyso.platform.records.service import recording_facilities

_CHUNK = 500  # identifiers per IN (...) query


@dataclass
class _Group:
    """The rows of one person, and the person once found in the database."""

    rows: list[_Row]
    person: Person | None = None
    existing: dict[int, Dose] = dataclasses.field(
        default_factory=dict
    )  # dose number -> recorded dose
    person_id: int | None = None  # of the person this import creates
    # Linked to a person outside the importer's scope: reported as a new person.
    quiet: bool = False

    @property
    def first(self) -> _Row:
        return self.rows[0]

    def value(self, fld: str) -> Any:
        """The first value any row gives (rows agree, or a problem has been reported)."""
        return next((getattr(r, fld) for r in self.rows if getattr(r, fld) is not None), None)


# Person fields every row of a person must agree on; the optional ones may be left blank.
_PERSON_FIELDS = (rules.FULL_NAME, rules.BIRTH_DATE, rules.GENDER)


_OPTIONAL_FIELDS = {rules.PHONE: rules.PHONE, rules.ADDRESS: rules.ADDRESS, "area_id": rules.AREA}


def _group(rows: Iterable[_Row]) -> list[_Group]:
    """Same identity number, else same name and birth date: the same person."""
    by_key: dict[tuple[Any, ...], _Group] = {}
    for row in rows:
        if row.identity_number:
            key: tuple[Any, ...] = ("id", row.identity_number)
        elif row.full_name and row.birth_date:
            key = ("name", name_key(row.full_name), row.birth_date)
        else:
            key = ("row", row.number)
        by_key.setdefault(key, _Group([])).rows.append(row)
    # A row that leaves the number out joins the one numbered person of its name and birth date.
    numbered: dict[tuple[Any, ...], list[_Group]] = {}
    for key, group in by_key.items():
        if key[0] == "id" and group.first.full_name and group.first.birth_date:
            named = (name_key(group.first.full_name), group.first.birth_date)
            numbered.setdefault(named, []).append(group)
    for key in [k for k in by_key if k[0] == "name"]:
        candidates = numbered.get(key[1:], [])
        if len(candidates) == 1:
            candidates[0].rows.extend(by_key.pop(key).rows)
            candidates[0].rows.sort(key=lambda r: r.number)
    return list(by_key.values())


def _check_rows_agree(group: _Group, out: _Reporter) -> None:
    """The rows of one person must agree on the person and never repeat a dose number."""
    seen: dict[str, tuple[Any, int]] = {}
    doses: dict[int, int] = {}
    for row in group.rows:
        for fld, column in [(f, f) for f in _PERSON_FIELDS] + list(_OPTIONAL_FIELDS.items()):
            value = getattr(row, fld)
            if value is None:
                continue
            first = seen.setdefault(fld, (value, row.number))
            if first[0] != value:
                out.problem(row, column, value, "records.import_person_conflict", other=first[1])
        if row.dose_number is not None:
            other = doses.setdefault(row.dose_number, row.number)
            if other != row.number:
                out.problem(
                    row,
                    rules.DOSE_NUMBER,
                    row.dose_number,
                    "records.import_dose_repeated",
                    number=row.dose_number,
                    other=other,
                )


def _find_recorded(
    session: Session, groups: list[_Group], facility: Facility, user: User | None, out: _Reporter
) -> None:
    """Link each group to the person already recorded, if there is exactly one.

    The report says nothing about people outside the importer's scope (no dose of theirs at a
    facility the user records for): whether a number is recorded elsewhere, and with which
    name, birth date or gender, is not the importer's to learn. Such a person gets the new
    doses only when the identity agrees and the doses fit (``_fits_quietly``); otherwise the
    import records a person of its own, as it would for a number never seen. Either way the
    report, dry run or not, is the one an unknown number gives.
    """
    numbered = {g.first.identity_number: g for g in groups if g.first.identity_number}
    found: dict[str, list[Person]] = {}
    for chunk in _chunks(list(numbered)):
        for person in session.scalars(select(Person).where(Person.identity_number.in_(chunk))):
            found.setdefault(person.identity_number or "", []).append(person)
    scope = recording_facilities(session, user)
    facilities: dict[int, set[int]] = {}  # person id -> facilities of their doses
    first: dict[int, int] = {}  # person id -> facility of their first recorded dose
    people_ids = [p.id for people in found.values() for p in people]
    for chunk in _chunks(people_ids):
        doses_of = (
            select(Dose.person_id, Dose.facility_id)
            .where(Dose.person_id.in_(chunk))
            .order_by(Dose.id)
        )
        for person_id, facility_id in session.execute(doses_of):
            facilities.setdefault(person_id, set()).add(facility_id)
            first.setdefault(person_id, facility_id)
    for number, people in found.items():
        numbered_group = numbered[number]
        ours = [p for p in people if scope is None or facilities.get(p.id, set()) & scope]
        if len(ours) > 1:
            for row in numbered_group.rows:
                out.problem(row, rules.IDENTITY_NUMBER, number, "records.import_person_ambiguous")
        elif ours:
            keeps = scope is None or first.get(ours[0].id) in scope
            _link(numbered_group, ours[0], out, notes=keeps)
        else:
            same = [
                p
                for p in people
                if all(
                    numbered_group.value(fld) in (None, getattr(p, fld)) for fld in _PERSON_FIELDS
                )
            ]
            if len(same) == 1:
                numbered_group.person = same[0]
                numbered_group.quiet = True

    # Without a number only a person this signing unit vaccinated is the same person: a name
    # and a birth date are not unique in a country of a hundred million.
    named = {
        (name_key(g.first.full_name), g.first.birth_date): g
        for g in groups
        if not g.first.identity_number and g.first.full_name and g.first.birth_date
    }
    unit = select(Facility.id).where(Facility.signing_unit_id == facility.signing_unit_id)
    vaccinated_here = select(Dose.person_id).where(Dose.facility_id.in_(unit))
    matches: dict[tuple[str, date], list[Person]] = {}
    for chunk in _chunks(sorted({key for key, _ in named})):
        query = select(Person).where(
            Person.name_key.in_(chunk),
            Person.identity_number.is_(None),
            Person.id.in_(vaccinated_here),
        )
        for person in session.scalars(query):
            group = named.get((person.name_key, person.birth_date))
            if group and (person.full_name, person.gender) == (
                group.first.full_name,
                group.first.gender,
            ):
                matches.setdefault((person.name_key, person.birth_date), []).append(person)
    for key, people in matches.items():
        if len(people) > 1:
            for row in named[key].rows:
                out.problem(row, rules.FULL_NAME, row.full_name, "records.import_person_ambiguous")
        else:
            _link(named[key], people[0], out)

    linked = {g.person.id: g for g in groups if g.person is not None}
    for chunk in _chunks(list(linked)):
        for dose in session.scalars(select(Dose).where(Dose.person_id.in_(chunk))):
            linked[dose.person_id].existing[dose.dose_number] = dose
    for group in groups:
        if group.quiet and not _fits_quietly(group):
            group.person, group.quiet, group.existing = None, False, {}


def _fits_quietly(group: _Group) -> bool:
    """Whether the rows add to a person outside the importer's scope without a problem that
    would tell about their recorded doses: no dose number recorded already, no order problem."""
    dated = [(n, d.vaccinated_on) for n, d in group.existing.items()]
    for row in group.rows:
        if row.dose_number is None or row.vaccinated_on is None:
            continue
        if row.dose_number in group.existing:
            return False
        if rules.check_dose_order(row.dose_number, row.vaccinated_on, dated):
            return False
    return True


def _chunks(values: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _link(group: _Group, person: Person, out: _Reporter, *, notes: bool = True) -> None:
    """The import adds doses to a recorded person; it never edits the person.

    ``notes`` False: another unit recorded the person first and keeps their phone, address and
    area (``records.service.keeps_person``); the report does not compare them.
    """
    differs = [
        fld for fld in _PERSON_FIELDS if group.value(fld) not in (None, getattr(person, fld))
    ]
    if differs:
        for row in group.rows:
            out.problem(
                row,
                differs[0],
                getattr(row, differs[0]),
                "records.import_person_differs",
                fields=differs,
            )
        return
    group.person = person
    if not notes:
        return
    for fld, column in _OPTIONAL_FIELDS.items():
        value = group.value(fld)
        if value is not None and value != getattr(person, fld):
            out.note(group.first.number, column, value, "records.import_person_kept")


def _new_doses(group: _Group, out: _Reporter) -> list[_Row]:
    """The rows whose dose is not recorded yet; an identical recorded dose is skipped."""
    new: list[_Row] = []
    for row in group.rows:
        if row.dose_number is None or not row.valid:
            continue
        recorded = group.existing.get(row.dose_number)
        if recorded is None:
            new.append(row)
        elif (recorded.vaccinated_on, recorded.product_id, recorded.lot, recorded.facility_id) == (
            row.vaccinated_on,
            row.product_id,
            row.lot,
            row.facility_id,
        ):
            out.report.doses_skipped += 1
            out.note(
                row.number,
                rules.DOSE_NUMBER,
                row.dose_number,
                "records.import_dose_already_recorded",
                number=row.dose_number,
            )
        else:
            out.problem(
                row,
                rules.DOSE_NUMBER,
                row.dose_number,
                "records.import_dose_conflicts",
                number=row.dose_number,
            )
    # Each order problem once: on the later dose, or on the new one when the other is recorded.
    dated = [
        (r.dose_number, r.vaccinated_on, True) for r in new if r.dose_number and r.vaccinated_on
    ]
    dated += [(n, d.vaccinated_on, False) for n, d in group.existing.items()]
    for row in new:
        if row.vaccinated_on is None or row.dose_number is None:
            continue
        number = row.dose_number
        others = [(n, on) for n, on, is_new in dated if n < number or (n > number and not is_new)]
        problems = rules.check_dose_order(number, row.vaccinated_on, others)
        if problems:
            out.problem(
                row, rules.VACCINATED_ON, row.vaccinated_on, problems[0].key, **problems[0].values
            )
    return new
