"""Accounts (``users/``): who works where in which role, and the certificates officers registered.

The users feature creates and edits accounts and records the procedure's "Đăng ký chứng thư
số" step; signing checks every batch's certificate against these rows.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kyso.platform.db import Base
from kyso.platform.models.columns import db_enum, utcnow
from kyso.platform.models.org import Facility, SigningUnit


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
