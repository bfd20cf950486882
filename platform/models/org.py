"""Organisation: administrative areas, facilities, signing units, users and their certificates.

Who may sign whose records: every facility belongs to exactly one signing unit. A province may
assign one unit (Department of Health, provincial CDC or a district health centre) to sign
centrally for a set of facilities; otherwise each facility is its own signing unit; facilities
under the Ministry sign through their head (a unit of kind ``ministry_head``). A signing officer
belongs to one signing unit and signs doses administered at that unit's facilities only.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Enum, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kyso.platform.db import Base


def utcnow() -> datetime:
    return datetime.now(UTC)


def db_enum(kind: type[enum.Enum], name: str) -> Enum:
    # Stored as the values (stable, readable in SQL), checked by a CHECK constraint.
    return Enum(
        kind,
        name=name,
        native_enum=False,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
        length=32,
    )


class AreaLevel(enum.StrEnum):
    PROVINCE = "province"
    DISTRICT = "district"
    COMMUNE = "commune"


class Area(Base):
    """Province, district or commune (the 63 provinces of 2022 and their subdivisions)."""

    __tablename__ = "areas"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)  # GSO code; provinces "01".."96"
    name: Mapped[str] = mapped_column(String(120))
    level: Mapped[AreaLevel] = mapped_column(db_enum(AreaLevel, "area_level"))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"), index=True)
    # The province (for a province, itself): scoping by province without recursive queries.
    province_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"), index=True)

    parent: Mapped[Area | None] = relationship(remote_side=[id], foreign_keys=[parent_id])


class FacilityType(enum.StrEnum):
    COMMUNE_STATION = "commune_station"  # trạm y tế xã/phường
    HOSPITAL = "hospital"
    SERVICE = "service"  # cơ sở tiêm chủng dịch vụ
    MOBILE_TEAM = "mobile_team"  # đội tiêm lưu động


class SigningUnitKind(enum.StrEnum):
    FACILITY = "facility"  # the facility signs its own records
    DEPARTMENT_OF_HEALTH = "department_of_health"
    PROVINCIAL_CDC = "provincial_cdc"
    DISTRICT_HEALTH_CENTRE = "district_health_centre"
    MINISTRY_HEAD = "ministry_head"  # facilities under the Ministry sign through their head


class SigningUnit(Base):
    __tablename__ = "signing_units"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[SigningUnitKind] = mapped_column(db_enum(SigningUnitKind, "signing_unit_kind"))
    province_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"), index=True)
    # Batch mode: one token signature per batch over a manifest (the signing issue).
    batch_mode: Mapped[bool] = mapped_column(Boolean, default=False)
    # The unit's tax code (mã số thuế): its officers' certificates must carry it as
    # UID=MST:<tax_code> (and the unit's name as O). None: no certificate is accepted yet.
    tax_code: Mapped[str | None] = mapped_column(String(20))

    facilities: Mapped[list[Facility]] = relationship(back_populates="signing_unit")


class Facility(Base):
    __tablename__ = "facilities"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[FacilityType] = mapped_column(db_enum(FacilityType, "facility_type"))
    area_id: Mapped[int] = mapped_column(ForeignKey("areas.id"), index=True)
    under_ministry: Mapped[bool] = mapped_column(Boolean, default=False)
    signing_unit_id: Mapped[int] = mapped_column(ForeignKey("signing_units.id"), index=True)

    area: Mapped[Area] = relationship()
    signing_unit: Mapped[SigningUnit] = relationship(back_populates="facilities")


class Role(enum.StrEnum):
    FACILITY_STAFF = "facility_staff"
    SIGNING_OFFICER = "signing_officer"
    CENTRAL_ISSUER = "central_issuer"  # Department of Preventive Medicine
    ADMINISTRATOR = "administrator"


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(120))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(db_enum(Role, "user_role"))
    # Facility staff and officers work for a facility; officers sign for a signing unit.
    facility_id: Mapped[int | None] = mapped_column(ForeignKey("facilities.id"), index=True)
    signing_unit_id: Mapped[int | None] = mapped_column(ForeignKey("signing_units.id"))
    # An administrator may be limited to one province; None means the whole country.
    province_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"))
    language: Mapped[str] = mapped_column(String(2), default="vi")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    facility: Mapped[Facility | None] = relationship()
    signing_unit: Mapped[SigningUnit | None] = relationship()
    certificates: Mapped[list[SigningCertificate]] = relationship(
        back_populates="user",
        order_by="SigningCertificate.registered_at.desc()",
        foreign_keys="SigningCertificate.user_id",
    )


class SigningCertificate(Base):
    """A certificate serial a signing officer registered ("Đăng ký chứng thư số"), with history.

    Registration keeps every row; at most one per officer is active (``deactivated_at`` NULL).
    The certificate itself (DER, subject, issuer, validity) is filled in when it is read from the
    token through the agent.
    """

    __tablename__ = "signing_certificates"
    __table_args__ = (
        # One active certificate per officer, enforced by the database (SQLite and PostgreSQL
        # both support partial unique indexes).
        Index(
            "uq_signing_certificates_active_user",
            "user_id",
            unique=True,
            sqlite_where=text("deactivated_at IS NULL"),
            postgresql_where=text("deactivated_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    serial_hex: Mapped[str] = mapped_column(String(64), index=True)  # upper-case hex
    subject: Mapped[str | None] = mapped_column(Text)
    issuer: Mapped[str | None] = mapped_column(Text)
    fingerprint_sha256: Mapped[str | None] = mapped_column(String(64))
    der: Mapped[bytes | None] = mapped_column()
    not_before: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    not_after: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    registered_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    deactivated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deactivated_reason: Mapped[str | None] = mapped_column(String(200))
    # The token is compromised from this time (an administrator's date, or the CA's revocation
    # date when the platform learns it): signatures made from then on are not trusted.
    compromised_from: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    compromised_source: Mapped[str | None] = mapped_column(String(16))  # "administrator", "ca"

    user: Mapped[User] = relationship(back_populates="certificates", foreign_keys=[user_id])
    registered_by: Mapped[User] = relationship(foreign_keys=[registered_by_id])

    @property
    def active(self) -> bool:
        return self.deactivated_at is None


class AuditEvent(Base):
    """Who did what security-relevant thing: logins, registrations, signing, exports, edits."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)  # e.g. "certificate.register"
    target: Mapped[str | None] = mapped_column(String(200))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    ip: Mapped[str | None] = mapped_column(String(64))
