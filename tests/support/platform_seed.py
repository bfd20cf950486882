"""A small, realistic organisation for the platform's tests.

Hồ Chí Minh City, District 1: Trạm Y tế Phường Bến Nghé signs its own records; the District 1
health centre signs centrally for Trạm Y tế Phường Bến Thành and a mobile team. One signing
officer for each unit, a facility staff member, an administrator and a central issuer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy.orm import Session

from kyso.platform.auth.service import hash_password
from kyso.platform.models import (
    Area,
    AreaLevel,
    Dose,
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
    province = Area(code="79", name="Thành phố Hồ Chí Minh", level=AreaLevel.PROVINCE)
    session.add(province)
    session.flush()
    province.province_id = province.id
    district = Area(
        code="760", name="Quận 1", level=AreaLevel.DISTRICT, parent=province, province_id=None
    )
    session.add(district)
    session.flush()
    district.province_id = province.id
    ben_nghe = Area(code="26740", name="Phường Bến Nghé", level=AreaLevel.COMMUNE)
    ben_thanh = Area(code="26743", name="Phường Bến Thành", level=AreaLevel.COMMUNE)
    for commune in (ben_nghe, ben_thanh):
        commune.parent_id = district.id
        commune.province_id = province.id
        session.add(commune)

    unit_ben_nghe = SigningUnit(
        code="SU-79-26740",
        name="Trạm Y tế Phường Bến Nghé",
        kind=SigningUnitKind.FACILITY,
        province_id=province.id,
        tax_code="0312345678",  # what the test certificates carry (UID=MST:0312345678)
    )
    unit_district = SigningUnit(
        code="SU-79-760",
        name="Trung tâm Y tế Quận 1",
        kind=SigningUnitKind.DISTRICT_HEALTH_CENTRE,
        province_id=province.id,
        tax_code="0312345600",
    )
    session.add_all([unit_ben_nghe, unit_district])
    session.flush()
    station_ben_nghe = Facility(
        code="79760-BN",
        name="Trạm Y tế Phường Bến Nghé",
        type=FacilityType.COMMUNE_STATION,
        area_id=ben_nghe.id,
        signing_unit_id=unit_ben_nghe.id,
    )
    station_ben_thanh = Facility(
        code="79760-BT",
        name="Trạm Y tế Phường Bến Thành",
        type=FacilityType.COMMUNE_STATION,
        area_id=ben_thanh.id,
        signing_unit_id=unit_district.id,
    )
    mobile_team = Facility(
        code="79760-LD1",
        name="Đội tiêm lưu động Quận 1",
        type=FacilityType.MOBILE_TEAM,
        area_id=ben_thanh.id,
        signing_unit_id=unit_district.id,
    )
    pfizer = VaccineProduct(
        code="EU/1/20/1528",
        name="Comirnaty (Pfizer-BioNTech)",
        manufacturer_code="ORG-100030215",
        prophylaxis_code="J07BN01",
    )
    astrazeneca = VaccineProduct(
        code="EU/1/21/1529",
        name="Vaxzevria (AstraZeneca)",
        manufacturer_code="ORG-100001699",
        prophylaxis_code="J07BN02",
    )
    session.add_all([station_ben_nghe, station_ben_thanh, mobile_team, pfizer, astrazeneca])
    session.flush()

    password = hash_password(PASSWORD)

    def user(username: str, full_name: str, role: Role, **kw: object) -> User:
        account = User(
            username=username, full_name=full_name, password_hash=password, role=role, **kw
        )
        session.add(account)
        return account

    admin = user("admin", "Quản trị viên", Role.ADMINISTRATOR)
    officer = user(
        "kyduyet.bennghe",
        "Lê Thị Hồng",
        Role.SIGNING_OFFICER,
        facility_id=station_ben_nghe.id,
        signing_unit_id=unit_ben_nghe.id,
    )
    district_officer = user(
        "kyduyet.quan1",
        "Trần Văn Minh",
        Role.SIGNING_OFFICER,
        signing_unit_id=unit_district.id,
    )
    staff = user(
        "nhanvien.bennghe", "Phạm Thu Trang", Role.FACILITY_STAFF, facility_id=station_ben_nghe.id
    )
    issuer = user("cucduphong", "Cục Y tế dự phòng", Role.CENTRAL_ISSUER)
    session.flush()
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
    from kyso.platform.records.names import name_key

    facility = facility or seed_.station_ben_nghe
    person = Person(
        full_name=full_name,
        name_key=name_key(full_name),
        birth_date=birth_date,
        gender=gender,
        identity_number=identity_number,
        phone=phone,
        area_id=facility.area_id,
        verification_status=status,
    )
    session.add(person)
    session.flush()
    for number in range(1, doses + 1):
        session.add(
            Dose(
                person_id=person.id,
                product_id=seed_.pfizer.id,
                lot=f"FK{1000 + number}",
                vaccinated_on=date.fromordinal(first_dose.toordinal() + 28 * (number - 1)),
                dose_number=number,
                facility_id=facility.id,
                created_by_facility_id=facility.id,
            )
        )
    session.flush()
    return person


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

    existing = session.scalar(select(Area).where(Area.code == code))
    if existing is None:
        province = Area(code=code, name=name, level=AreaLevel.PROVINCE)
        session.add(province)
        session.flush()
        province.province_id = province.id
    else:
        province = existing
    commune = Area(
        code=f"{code}-{prefix}-1",
        name=f"Phường Một ({prefix})",
        level=AreaLevel.COMMUNE,
        parent_id=province.id,
        province_id=province.id,
    )
    session.add(commune)
    session.flush()
    unit = SigningUnit(
        code=f"SU-{code}-{prefix}",
        name=f"Trạm Y tế Phường Một ({prefix})",
        kind=SigningUnitKind.FACILITY,
        province_id=province.id,
    )
    session.add(unit)
    session.flush()
    station = Facility(
        code=f"{code}-{prefix}-TYT",
        name=f"Trạm Y tế Phường Một ({prefix})",
        type=FacilityType.COMMUNE_STATION,
        area_id=commune.id,
        signing_unit_id=unit.id,
    )
    session.add(station)
    session.flush()
    password = hash_password(PASSWORD)
    admin = User(
        username=f"admin.{prefix}",
        full_name=f"Quản trị viên {name}",
        password_hash=password,
        role=Role.ADMINISTRATOR,
        province_id=province.id,
    )
    officer = User(
        username=f"kyduyet.{prefix}",
        full_name="Nguyễn Văn An",
        password_hash=password,
        role=Role.SIGNING_OFFICER,
        facility_id=station.id,
        signing_unit_id=unit.id,
    )
    staff = User(
        username=f"nhanvien.{prefix}",
        full_name="Đỗ Thị Bình",
        password_hash=password,
        role=Role.FACILITY_STAFF,
        facility_id=station.id,
    )
    session.add_all([admin, officer, staff])
    session.flush()
    return ProvinceSeed(province, commune, unit, station, admin, officer, staff)
