"""The signing page's working state: what each officer has ticked for the next batch.

A selection lives in the database, not in the cookie session: a batch holds up to 3,000 doses,
and several tabs or workers of the same officer must see one selection. Each row remembers the
dose version the officer saw when ticking, so that a dose edited afterwards drops out at preview.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, Integer, text
from sqlalchemy.orm import Mapped, mapped_column

from kyso.platform.db import Base
from kyso.platform.models.org import utcnow
from kyso.platform.models.records import Dose, DoseSignature, Person


class SigningSelection(Base):
    """One dose ticked by one signing officer (the batch being put together)."""

    __tablename__ = "signing_selections"
    __table_args__ = (
        # Deleting a dose cascades here: without this index PostgreSQL would scan the table.
        Index("ix_signing_selections_dose_id", "dose_id"),
        # Counting the people of a selection (the 1,000-people limit) without touching doses.
        Index("ix_signing_selections_user_person", "user_id", "person_id"),
    )

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    dose_id: Mapped[int] = mapped_column(
        ForeignKey("doses.id", ondelete="CASCADE"), primary_key=True
    )
    # Denormalised from the dose (which never changes person) to count people cheaply.
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    dose_version: Mapped[int] = mapped_column(Integer)
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# Indexes of the records tables that serve the signing search (declared here, next to the
# feature that needs them; records.py stays the records engineers' file).

# Phone numbers are searched by prefix ("0903 12…"). The existing ix_people_phone uses the
# default operator class, which PostgreSQL cannot use for LIKE 'prefix%' unless the database
# collation is "C"; this one can, whatever the collation. (SQLite ignores the operator class.)
Index(
    "ix_people_phone_prefix",
    Person.phone,
    postgresql_ops={"phone": "varchar_pattern_ops"},
)

# A facility's doses in a date range, with everything the search needs from them (person,
# version; the id is in every SQLite index and INCLUDEd on PostgreSQL): an index-only scan,
# no visit of the doses table for the thousands of doses a month of a busy facility has.
# It makes ix_doses_facility_date redundant.
Index(
    "ix_doses_signing_search",
    Dose.facility_id,
    Dose.vaccinated_on,
    Dose.person_id,
    Dose.version,
    postgresql_include=["id"],
)

# "Signed in its current version" is asked for every candidate dose: a partial index that
# answers it without reading dose_signatures rows.
Index(
    "ix_dose_signatures_current",
    DoseSignature.dose_id,
    DoseSignature.dose_version,
    sqlite_where=text("superseded_at IS NULL"),
    postgresql_where=text("superseded_at IS NULL"),
)
