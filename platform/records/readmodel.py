"""One read of a dose with its person, vaccine product and facility.

The signing search and preview, the selection, batch preparation and results, statistics and
passport issuance all read a dose together with the rows it points to. How a dose reaches them
is spelled here once: its person by ``Dose.person_id``, its product by ``Dose.product_id``, the
facility that gave it by ``Dose.facility_id``, and a dose from a row that names it (a ticked
selection, a batch item, a signature) by that row's ``dose_id``.

These functions only add joins to a statement the caller builds: each reader keeps its own
columns, conditions and order, and the SQL is exactly the hand-written joins it replaces (the
same text, so the same query plans). Joins are added person, product, facility, in that order.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.orm.util import AliasedClass

from kyso.platform.models import Dose, Facility, Person, VaccineProduct

S = TypeVar("S", bound=Select[Any])

# A product or facility table, or an alias of it (a statement that joins the table twice).
ProductTable = type[VaccineProduct] | AliasedClass[VaccineProduct]
FacilityTable = type[Facility] | AliasedClass[Facility]


def join_dose(statement: S, dose_id: InstrumentedAttribute[int]) -> S:
    """``statement`` joined to the dose that ``dose_id`` (a column of a row in it) names."""
    return statement.join(Dose, Dose.id == dose_id)


def with_dose_details(
    statement: S,
    *,
    person: bool = False,
    product: bool = False,
    facility: bool = False,
    outer: bool = False,
    product_table: ProductTable = VaccineProduct,
    facility_table: FacilityTable = Facility,
) -> S:
    """``statement``, whose FROM holds ``Dose``, joined to the dose's person, product and
    facility (those asked for). ``outer``: left outer joins, for a statement where the dose
    itself may be missing (a person without doses)."""

    def join(target: Any, condition: ColumnElement[bool]) -> None:
        nonlocal statement
        if outer:
            statement = statement.outerjoin(target, condition)
        else:
            statement = statement.join(target, condition)

    if person:
        join(Person, Person.id == Dose.person_id)
    if product:
        join(product_table, product_table.id == Dose.product_id)
    if facility:
        join(facility_table, facility_table.id == Dose.facility_id)
    return statement
