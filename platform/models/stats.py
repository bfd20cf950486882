"""Statistics (``stats/``): the summary of who is in which province, kept with the records.

``stats_people`` holds one row per (province, person) for every province where the person has
at least one dose, with what the statistics page needs for a province's administrator without
reading doses: the person's verification status and area of residence, the province of the
person's first recorded dose (the unit that keeps their phone, address and area) and their
latest dose date. It is derived data: ``stats.summary.refresh`` rewrites a person's rows in
the transaction that changes their doses, status or area (every writer calls it, or the ORM
flush does), ``kyso-platform stats rebuild`` recomputes everything and ``kyso-platform stats
check`` compares it with the truth. No foreign keys: nothing reads it but the statistics, and
a bulk load fills it after the people and doses are in.

Also the index of the records tables the invalid-people list needs, declared next to the
feature that needs it (as ``models/signing.py`` does for the search).
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import Date, Index, Integer, text
from sqlalchemy.orm import Mapped, mapped_column

from kyso.platform.db import Base
from kyso.platform.models.columns import db_enum
from kyso.platform.models.records import Person, VerificationStatus

# The invalid-people list (stats) pages people of one verification group by id: an index on
# (status, id) gives PostgreSQL an ordered scan per status instead of sorting the whole group.
Index("ix_people_status_id", Person.verification_status, Person.id)


class StatsPerson(Base):
    """A person with at least one dose in a province (one row per such province; doses at a
    facility in no province under province 0)."""

    __tablename__ = "stats_people"
    __table_args__ = (
        # A province's counts per status, per area and per latest-dose month: an index-only
        # scan over that province's people of the wanted statuses (the invalid ones).
        Index(
            "ix_stats_people_counts",
            "province_id",
            "verification_status",
            "area_id",
            "first_province_id",
            "latest_dose_on",
        ),
        # refresh() deletes a person's rows by person; other scopes' per-month chart finds a
        # person's one "first" row (below) by person.
        Index("ix_stats_people_person", "person_id"),
        # One row per person with a dose (the row of the first dose's province): the national
        # per-month chart, an index-only scan over the invalid people.
        Index(
            "ix_stats_people_first",
            "verification_status",
            "area_id",
            "latest_dose_on",
            postgresql_where=text("province_id = first_province_id"),
            sqlite_where=text("province_id = first_province_id"),
        ),
    )

    # The primary key pages a province's people by id (the list's keyset).
    province_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    person_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    verification_status: Mapped[VerificationStatus] = mapped_column(
        db_enum(VerificationStatus, "verification_status")
    )
    area_id: Mapped[int | None] = mapped_column(Integer)
    # The province of the facility of the person's first recorded dose (lowest dose id);
    # ``stats.summary.NO_PROVINCE`` (0) when that facility's area lies in no province, as
    # ``province_id`` for such doses.
    first_province_id: Mapped[int] = mapped_column(Integer)
    latest_dose_on: Mapped[date] = mapped_column(Date)
