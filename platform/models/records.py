"""Vaccination records (``records/``): people, doses and vaccine products.

A dose's ``version`` changes on every edit of the dose or of its person (the signed document
holds both), so "already signed in its current version" is a comparison of two integers with
``dose_signatures`` (``models/signing.py``), or with the dose's own ``signed_version``, which
database triggers keep from ``dose_signatures`` (migration 0016).
"""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    FetchedValue,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kyso.platform.db import Base
from kyso.platform.models.columns import db_enum, utcnow
from kyso.platform.models.org import Area, Facility
from kyso.platform.models.users import User


class Gender(enum.StrEnum):
    MALE = "male"
    FEMALE = "female"


class VerificationStatus(enum.StrEnum):
    """One status per person, from the National Population Database check."""

    PENDING = "pending"  # not checked yet
    VERIFIED = "verified"
    NO_IDENTITY = "no_identity"  # no identity number recorded
    OLD_ID_ONLY = (
        "old_id_only"  # only a 9-digit CMND: cannot be checked until the 12-digit is known
    )
    WRONG_FORMAT = "wrong_format"  # the 12-digit number is malformed or inconsistent
    MISMATCH = "mismatch"  # the registry disagrees (verification_detail says which fields)
    UNAVAILABLE = "unavailable"  # the registry did not answer; retried later, never verified


class VaccineProduct(Base):
    """A COVID-19 vaccine eligible in Vietnam, with its EU DCC codes (passport/data/valuesets)."""

    __tablename__ = "vaccine_products"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)  # DCC mp, e.g. EU/1/20/1528
    name: Mapped[str] = mapped_column(String(120))  # e.g. "Comirnaty (Pfizer-BioNTech)"
    manufacturer_code: Mapped[str] = mapped_column(String(64))  # DCC ma
    prophylaxis_code: Mapped[str] = mapped_column(String(32))  # DCC vp
    disease_code: Mapped[str] = mapped_column(String(32), default="840539006")  # DCC tg


class Person(Base):
    __tablename__ = "people"
    __table_args__ = (
        # Name prefix search ("nguyen van"): the id makes it index-only for the signing search,
        # which needs only the ids of the people whose name key starts with the prefix.
        Index(
            "ix_people_name_key",
            "name_key",
            "id",
            postgresql_ops={"name_key": "varchar_pattern_ops"},
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    full_name: Mapped[str] = mapped_column(String(120))
    # Lower case without diacritics ("nguyen van an"), for prefix search that ignores accents.
    name_key: Mapped[str] = mapped_column(String(120))
    birth_date: Mapped[date] = mapped_column(Date)
    gender: Mapped[Gender] = mapped_column(db_enum(Gender, "gender"))
    identity_number: Mapped[str | None] = mapped_column(String(12), index=True)
    phone: Mapped[str | None] = mapped_column(String(15), index=True)
    area_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"), index=True)
    address: Mapped[str | None] = mapped_column(String(255))
    verification_status: Mapped[VerificationStatus] = mapped_column(
        db_enum(VerificationStatus, "verification_status"),
        default=VerificationStatus.PENDING,
        index=True,
    )
    # What the check found: e.g. {"fields": ["birth_date"]} for a mismatch, or the format rule.
    verification_detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    verification_attempts: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    area: Mapped[Area | None] = relationship()
    doses: Mapped[list[Dose]] = relationship(back_populates="person", order_by="Dose.dose_number")


class Dose(Base):
    __tablename__ = "doses"
    __table_args__ = (
        UniqueConstraint("person_id", "dose_number", name="uq_doses_person_dose_number"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("vaccine_products.id"))
    lot: Mapped[str] = mapped_column(String(64))
    vaccinated_on: Mapped[date] = mapped_column(Date)
    dose_number: Mapped[int] = mapped_column(SmallInteger)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facilities.id"))  # administered at
    created_by_facility_id: Mapped[int] = mapped_column(ForeignKey("facilities.id"))
    created_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
    # The signing search's projection (migration 0016), kept by database triggers from
    # dose_signatures and people so that the search reads nothing but ix_doses_signing_search.
    # The application never writes them: FetchedValue tells the ORM the database sets them on
    # INSERT and UPDATE (it leaves them out of its statements and expires them after a flush,
    # eager_defaults off below, because SQLite's RETURNING does not see what AFTER triggers
    # wrote). A person's rename updates these columns of already loaded doses behind the
    # session's back: read them with a query, not from a loaded Dose.
    # NULL: never signed; 0: every signature superseded; otherwise the greatest dose_version
    # among the signatures nothing superseded ("signed in its current version": = version).
    signed_version: Mapped[int | None] = mapped_column(
        Integer, server_default=FetchedValue(), server_onupdate=FetchedValue()
    )
    person_name: Mapped[str | None] = mapped_column(  # people.full_name
        String(120), server_default=FetchedValue(), server_onupdate=FetchedValue()
    )
    person_name_key: Mapped[str | None] = mapped_column(  # people.name_key
        String(120), server_default=FetchedValue(), server_onupdate=FetchedValue()
    )

    __mapper_args__ = {"eager_defaults": False}  # noqa: RUF012 - DeclarativeBase types it

    person: Mapped[Person] = relationship(back_populates="doses")
    product: Mapped[VaccineProduct] = relationship()
    facility: Mapped[Facility] = relationship(foreign_keys=[facility_id])
    created_by_facility: Mapped[Facility] = relationship(foreign_keys=[created_by_facility_id])
    created_by_user: Mapped[User | None] = relationship()
