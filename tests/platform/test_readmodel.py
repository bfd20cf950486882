"""The one read of a dose with its person, product and facility (records/readmodel.py)."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import aliased
from sqlalchemy.sql import ClauseElement

from kyso.platform.models import Dose, Facility, Person, SigningSelection, VaccineProduct
from kyso.platform.records.readmodel import join_dose, with_dose_details


def _sql(statement: ClauseElement) -> str:
    return re.sub(r"\s+", " ", str(statement.compile(dialect=postgresql.dialect())))


def test_the_joins_are_added_person_product_facility_and_only_those_asked_for() -> None:
    sql = _sql(
        with_dose_details(
            select(Dose.id, Person.full_name, VaccineProduct.name, Facility.name),
            person=True,
            product=True,
            facility=True,
        )
    )
    assert (
        "FROM doses JOIN people ON people.id = doses.person_id"
        " JOIN vaccine_products ON vaccine_products.id = doses.product_id"
        " JOIN facilities ON facilities.id = doses.facility_id"
    ) in sql
    only = _sql(with_dose_details(select(Dose.id, Facility.name), facility=True))
    assert "FROM doses JOIN facilities ON facilities.id = doses.facility_id" in only
    assert "people" not in only
    assert "vaccine_products" not in only


def test_outer_joins_and_aliases_for_a_person_without_doses() -> None:
    product = aliased(VaccineProduct)
    facility = aliased(Facility)
    sql = _sql(
        with_dose_details(
            select(Person.id, product.name, facility.name).outerjoin(
                Dose, Dose.person_id == Person.id
            ),
            product=True,
            facility=True,
            outer=True,
            product_table=product,
            facility_table=facility,
        )
    )
    assert "LEFT OUTER JOIN vaccine_products AS vaccine_products_1" in sql
    assert "ON vaccine_products_1.id = doses.product_id" in sql
    assert (
        "LEFT OUTER JOIN facilities AS facilities_1 ON facilities_1.id = doses.facility_id" in sql
    )
    assert " JOIN people" not in sql


def test_a_row_that_names_a_dose_reaches_it_by_its_dose_id() -> None:
    sql = _sql(
        join_dose(
            select(SigningSelection.user_id, Dose.version).select_from(SigningSelection),
            SigningSelection.dose_id,
        )
    )
    assert "FROM signing_selections JOIN doses ON doses.id = signing_selections.dose_id" in sql
