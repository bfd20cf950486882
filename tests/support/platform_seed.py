"""A small, realistic organisation for the platform's tests (built with ``records.seed``).

Hồ Chí Minh City, District 1: Trạm Y tế Phường Bến Nghé signs its own records; the District 1
health centre signs centrally for Trạm Y tế Phường Bến Thành and a mobile team. One signing
officer for each unit, a facility staff member, an administrator and a central issuer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy.orm import Session

from kyso.platform.auth.service import hash_password
from kyso.platform.models import (
    Area,
    AreaLevel,
    Facility,
    FacilityType,
    Gender,
    Person,
    Role,
    SigningUnit,
    SigningUnitKind,
    User,
    VaccineProduct,
    VerificationStatus,
)
from kyso.platform.records import seed as build

PASSWORD = "kyso-test-password"


@dataclass
class Seed:
    province: Area
    district: Area
    ben_nghe: Area
    ben_thanh: Area
    unit_ben_nghe: SigningUnit
    unit_district: SigningUnit
    station_ben_nghe: Facility
    station_ben_thanh: Facility
    mobile_team: Facility
    pfizer: VaccineProduct
    astrazeneca: VaccineProduct
    admin: User
    officer: User  # signs for Bến Nghé
    district_officer: User  # signs for Bến Thành and the mobile team
    staff: User  # Bến Nghé facility staff
    issuer: User


def seed(session: Session) -> Seed:
    province = build.area(session, "79", "Thành phố Hồ Chí Minh", AreaLevel.PROVINCE)
    district = build.area(session, "760", "Quận 1", AreaLevel.DISTRICT, province)
    ben_nghe = build.area(session, "26740", "Phường Bến Nghé", AreaLevel.COMMUNE, district)
    ben_thanh = build.area(session, "26743", "Phường Bến Thành", AreaLevel.COMMUNE, district)
    unit_ben_nghe = build.signing_unit(
        session,
        "SU-79-26740",
        "Trạm Y tế Phường Bến Nghé",
        SigningUnitKind.FACILITY,
        province,
        tax_code="0312345678",  # what the test certificates carry (UID=MST:0312345678)
    )
    unit_district = build.signing_unit(
        session,
        "SU-79-760",
        "Trung tâm Y tế Quận 1",
        SigningUnitKind.DISTRICT_HEALTH_CENTRE,
        province,
        tax_code="0312345600",
    )
    station = FacilityType.COMMUNE_STATION
    station_ben_nghe = build.facility(
        session, "79760-BN", "Trạm Y tế Phường Bến Nghé", station, ben_nghe, unit_ben_nghe
    )
    station_ben_thanh = build.facility(
        session, "79760-BT", "Trạm Y tế Phường Bến Thành", station, ben_thanh, unit_district
    )
    mobile_team = build.facility(
        session,
        "79760-LD1",
        "Đội tiêm lưu động Quận 1",
        FacilityType.MOBILE_TEAM,
        ben_thanh,
        unit_district,
    )
    pfizer = build.product(
        session,
        "EU/1/20/1528",
        "Comirnaty (Pfizer-BioNTech)",
        manufacturer_code="ORG-100030215",
        prophylaxis_code="J07BN01",
    )
    astrazeneca = build.product(
        session,
        "EU/1/21/1529",
        "Vaxzevria (AstraZeneca)",
        manufacturer_code="ORG-100001699",
        prophylaxis_code="J07BN02",
    )
    password = hash_password(PASSWORD)

    def user(username: str, full_name: str, role: Role, **where: Any) -> User:
        return build.account(session, username, full_name, role, password_hash=password, **where)

    admin = user("admin", "Quản trị viên", Role.ADMINISTRATOR)
    officer = user(
        "kyduyet.bennghe",
        "Lê Thị Hồng",
        Role.SIGNING_OFFICER,
        facility=station_ben_nghe,
        signing_unit=unit_ben_nghe,
    )
    district_officer = user(
        "kyduyet.quan1", "Trần Văn Minh", Role.SIGNING_OFFICER, signing_unit=unit_district
    )
    staff = user(
        "nhanvien.bennghe", "Phạm Thu Trang", Role.FACILITY_STAFF, facility=station_ben_nghe
    )
    issuer = user("cucduphong", "Cục Y tế dự phòng", Role.CENTRAL_ISSUER)
    return Seed(
        province,
        district,
        ben_nghe,
        ben_thanh,
        unit_ben_nghe,
        unit_district,
        station_ben_nghe,
        station_ben_thanh,
        mobile_team,
        pfizer,
        astrazeneca,
        admin,
        officer,
        district_officer,
        staff,
        issuer,
    )


def add_person(
    session: Session,
    seed_: Seed,
    full_name: str,
    *,
    facility: Facility | None = None,
    doses: int = 2,
    status: VerificationStatus = VerificationStatus.VERIFIED,
    identity_number: str | None = "079090123456",  # male, born 1990
    birth_date: date = date(1990, 5, 17),
    gender: Gender = Gender.MALE,
    phone: str | None = "0901234567",
    first_dose: date = date(2022, 3, 1),
) -> Person:
    facility = facility or seed_.station_ben_nghe
    return build.person(
        session,
        build.NewPerson(
            full_name=full_name,
            birth_date=birth_date,
            gender=gender,
            identity_number=identity_number,
            phone=phone,
            area_id=facility.area_id,
            status=status,
            doses=build.doses_every(
                first_dose, doses, product_id=seed_.pfizer.id, facility_id=facility.id
            ),
        ),
    )


@dataclass
class ProvinceSeed:
    """Another province's organisation (scoping tests): one station that signs its own records,
    its officer and staff, and a provincial administrator."""

    province: Area
    commune: Area
    unit: SigningUnit
    station: Facility
    admin: User  # provincial administrator (province_id set)
    officer: User
    staff: User


def add_province(
    session: Session, code: str = "01", name: str = "Thành phố Hà Nội", prefix: str = "hn"
) -> ProvinceSeed:
    """Adds a province with a provincial administrator; for Hồ Chí Minh City pass code "79"
    after seed() to get only a provincial administrator and a second station there."""
    from sqlalchemy import select

    province = session.scalar(select(Area).where(Area.code == code)) or build.area(
        session, code, name, AreaLevel.PROVINCE
    )
    commune = build.area(
        session, f"{code}-{prefix}-1", f"Phường Một ({prefix})", AreaLevel.COMMUNE, province
    )
    unit = build.signing_unit(
        session,
        f"SU-{code}-{prefix}",
        f"Trạm Y tế Phường Một ({prefix})",
        SigningUnitKind.FACILITY,
        province,
    )
    station = build.facility(
        session,
        f"{code}-{prefix}-TYT",
        f"Trạm Y tế Phường Một ({prefix})",
        FacilityType.COMMUNE_STATION,
        commune,
        unit,
    )
    password = hash_password(PASSWORD)
    admin = build.account(
        session,
        f"admin.{prefix}",
        f"Quản trị viên {name}",
        Role.ADMINISTRATOR,
        password_hash=password,
        province=province,
    )
    officer = build.account(
        session,
        f"kyduyet.{prefix}",
        "Nguyễn Văn An",
        Role.SIGNING_OFFICER,
        password_hash=password,
        facility=station,
        signing_unit=unit,
    )
    staff = build.account(
        session,
        f"nhanvien.{prefix}",
        "Đỗ Thị Bình",
        Role.FACILITY_STAFF,
        password_hash=password,
        facility=station,
    )
    return ProvinceSeed(province, commune, unit, station, admin, officer, staff)
