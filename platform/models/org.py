"""The organisation every feature reads: administrative areas, facilities and signing units.

No one feature owns these tables: the reference data (``records/reference_data.py``) loads the
areas, the demo data (``records/demo.py``) creates the demo's facilities and units, and every
feature reads them.

Who may sign whose records: every facility belongs to exactly one signing unit. A province may
assign one unit (Department of Health, provincial CDC or a district health centre) to sign
centrally for a set of facilities; otherwise each facility is its own signing unit; facilities
under the Ministry sign through their head (a unit of kind ``ministry_head``). A signing officer
(``models/users.py``) belongs to one signing unit and signs doses administered at that unit's
facilities only.
"""

from __future__ import annotations

import enum

from sqlalchemy import Boolean, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kyso.platform.db import Base
from kyso.platform.models.columns import db_enum


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
