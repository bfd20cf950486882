"""Verification statistics: groups, counts, scope, conditions, keyset pages, the export."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy.orm import Session
from support.feedback_data import invalid_people, kept_elsewhere_with_a_dose_here
from support.platform_seed import Seed, add_person, add_province
from support.signing_data import bulk_people

from kyso.platform.errors import DomainError
from kyso.platform.models import Role, User, VerificationStatus
from kyso.platform.stats.export import headers, write_invalid_xlsx
from kyso.platform.stats.service import (
    Group,
    StatsFilters,
    counts,
    export_rows,
    page,
    parse_filters,
    scope_for,
)


def test_groups_and_counts(session: Session, org: Seed) -> None:
    people = invalid_people(session, org)
    session.commit()
    scope = scope_for(session, org.staff)
    counted = counts(session, scope, StatsFilters())
    # A 9-digit CMND only is counted with "no identity number"; pending and verified are not
    # invalid.
    assert counted == {Group.NO_IDENTITY: 2, Group.WRONG_FORMAT: 1, Group.MISMATCH: 1}
    listed = page(session, scope, StatsFilters())
    assert [p.id for p in listed.people] == sorted(
        people[k].id for k in ("none", "cmnd", "format", "mismatch")
    )
    only = page(session, scope, StatsFilters(group=Group.NO_IDENTITY))
    assert {p.status for p in only.people} == {
        VerificationStatus.NO_IDENTITY,
        VerificationStatus.OLD_ID_ONLY,
    }
    mismatch = page(session, scope, StatsFilters(group=Group.MISMATCH)).people
    assert [p.full_name for p in mismatch] == ["Hoàng Văn Lệch"]
    assert [d.dose_number for d in mismatch[0].doses] == [1, 2]


def test_scope_of_staff_and_administrators(session: Session, org: Seed) -> None:
    invalid_people(session, org)
    add_person(
        session,
        org,
        "Ngô Văn Thành",
        facility=org.station_ben_thanh,
        status=VerificationStatus.NO_IDENTITY,
        identity_number=None,
        phone="0902000001",
    )
    hanoi = add_province(session)
    add_person(
        session,
        org,
        "Đặng Văn Hà",
        facility=hanoi.station,
        status=VerificationStatus.MISMATCH,
        phone="0902000002",
    )
    session.commit()
    staff = counts(session, scope_for(session, org.staff), StatsFilters())
    assert sum(staff.values()) == 4  # Bến Nghé only
    national = counts(session, scope_for(session, org.admin), StatsFilters())
    assert national == {Group.NO_IDENTITY: 3, Group.WRONG_FORMAT: 1, Group.MISMATCH: 2}
    provincial = counts(session, scope_for(session, hanoi.admin), StatsFilters())
    assert provincial == {Group.NO_IDENTITY: 0, Group.WRONG_FORMAT: 0, Group.MISMATCH: 1}
    hanoi_staff = counts(session, scope_for(session, hanoi.staff), StatsFilters())
    assert hanoi_staff[Group.MISMATCH] == 1
    assert sum(hanoi_staff.values()) == 1


@pytest.mark.parametrize("role", ["officer", "issuer"])
def test_other_roles_are_refused(session: Session, org: Seed, role: str) -> None:
    user: User = getattr(org, role)
    with pytest.raises(DomainError, match=r"^stats\.not_allowed$"):
        scope_for(session, user)


def test_facility_and_area_conditions(session: Session, org: Seed) -> None:
    invalid_people(session, org)
    thanh = add_person(
        session,
        org,
        "Ngô Văn Thành",
        facility=org.station_ben_thanh,
        status=VerificationStatus.NO_IDENTITY,
        identity_number=None,
        phone="0902000001",
    )
    mobile = add_person(
        session,
        org,
        "Ngô Văn Động",
        facility=org.mobile_team,
        status=VerificationStatus.MISMATCH,
        phone="0902000003",
    )
    hanoi = add_province(session)
    session.commit()
    admin = scope_for(session, org.admin)
    # By facility (every type): the mobile team's people.
    filters, problems = parse_filters(session, admin, {"facility": str(org.mobile_team.id)})
    assert problems == []
    assert [p.id for p in page(session, admin, filters).people] == [mobile.id]
    # By facility code, as administrators with many facilities type it.
    filters, _ = parse_filters(session, admin, {"facility_code": org.station_ben_thanh.code})
    assert [p.id for p in page(session, admin, filters).people] == [thanh.id]
    # By area of residence: Bến Thành (thanh and the mobile team's person live there).
    filters, _ = parse_filters(session, admin, {"area": str(org.ben_thanh.id)})
    assert {p.id for p in page(session, admin, filters).people} == {thanh.id, mobile.id}
    # A district takes its communes.
    filters, _ = parse_filters(session, admin, {"area_code": org.district.code})
    assert sum(counts(session, admin, filters).values()) == 6
    # Outside the scope: reported and dropped.
    provincial = scope_for(session, hanoi.admin)
    filters, problems = parse_filters(session, provincial, {"facility": str(org.mobile_team.id)})
    assert filters.facility_id is None
    assert [p.key for p in problems] == ["stats.facility_not_allowed"]
    filters, problems = parse_filters(session, provincial, {"area": str(org.ben_thanh.id)})
    assert filters.area_id is None
    assert [p.key for p in problems] == ["stats.area_not_allowed"]
    _, problems = parse_filters(session, admin, {"group": "nope", "facility_code": "ZZZ"})
    assert [p.key for p in problems] == ["stats.bad_group", "stats.facility_unknown"]


def test_commune_stations_choose_among_their_district_communes(session: Session, org: Seed) -> None:
    scope = scope_for(session, org.staff)
    assert scope.area_condition
    assert [a.id for a in scope.areas] == [org.ben_nghe.id, org.ben_thanh.id]
    mobile_staff = User(
        username="nhanvien.luudong",
        full_name="Lưu Động",
        password_hash="x",
        role=Role.FACILITY_STAFF,
        facility_id=org.mobile_team.id,
    )
    session.add(mobile_staff)
    session.flush()
    mobile = scope_for(session, mobile_staff)
    assert not mobile.area_condition  # a mobile team has no area of its own
    _, problems = parse_filters(session, mobile, {"area": str(org.ben_nghe.id)})
    assert [p.key for p in problems] == ["stats.area_not_allowed"]


@pytest.mark.parametrize("group", [None, Group.NO_IDENTITY])
def test_keyset_pages_never_repeat_or_skip(
    session: Session, org: Seed, group: Group | None
) -> None:
    ids = bulk_people(session, org, 23, status=VerificationStatus.NO_IDENTITY, doses=1)
    ids += bulk_people(session, org, 5, status=VerificationStatus.VERIFIED, doses=1, start=100)
    session.commit()
    scope = scope_for(session, org.staff)
    seen: list[int] = []
    after = None
    pages = 0
    while True:
        result = page(session, scope, StatsFilters(group=group), after=after, size=10)
        seen += [p.id for p in result.people]
        pages += 1
        if result.next_after is None:
            break
        after = result.next_after
    assert pages == 3
    assert seen == sorted(ids[:23])


def test_export_rows_and_workbook(session: Session, org: Seed, tmp_path: Path) -> None:
    people = invalid_people(session, org)
    people["none"].full_name = '=HYPERLINK("http://evil")'  # must stay text
    people["none"].address = "Số 1\x07 Lê Lợi"  # a control character XML cannot carry
    session.commit()
    scope = scope_for(session, org.staff)
    rows = list(export_rows(session, scope, StatsFilters(), chunk=2))
    assert len(rows) == 8  # four people, two doses each
    path = tmp_path / "export.xlsx"
    assert write_invalid_xlsx(iter(rows), path, "vi") == 8

    sheet = load_workbook(path, read_only=True).worksheets[0]
    table = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert table[0] == headers("vi")
    assert table[0][:4] == ["STT", "Mã hồ sơ", "Họ và tên", "Ngày sinh"]
    by_name: dict[object, list[object]] = {}
    for r in table[1:]:
        by_name.setdefault(r[2], r)  # the person's first dose
    assert [r[0] for r in table[1:]] == list(range(1, 9))
    mismatch = by_name["Hoàng Văn Lệch"]
    assert mismatch[9] == "Sai lệch thông tin với CSDL quốc gia về dân cư"
    assert mismatch[10] == "Sai lệch với CSDL quốc gia về dân cư"
    assert "ngày sinh" in mismatch[11]
    assert "17/06/1990" in mismatch[11]
    assert mismatch[3].date() == date(1990, 5, 17)
    assert mismatch[12] == 1
    assert mismatch[13].date() == date(2022, 3, 1)
    assert mismatch[16] == "Trạm Y tế Phường Bến Nghé"
    wrong = by_name["Phạm Thị Sai"]
    assert wrong[9] == "CCCD/mã định danh sai định dạng"
    assert "099" in wrong[11]
    cmnd = by_name["Lê Văn Cũ"]
    assert cmnd[9] == "Không có CCCD/mã định danh"
    assert cmnd[10] == "Chỉ có số CMND 9 số — chưa xác minh được"
    assert cmnd[5] == "023456789"  # the leading zero kept: text, not a number
    formula = next(r for r in table[1:] if str(r[2]).startswith("=HYPERLINK"))
    assert formula[7] == "Số 1 Lê Lợi"
    # Stored as a string cell, not a formula.
    raw = load_workbook(path).worksheets[0]
    cell = next(c for c in raw["C"] if str(c.value).startswith("=HYPERLINK"))
    assert cell.data_type == "s"

    english = tmp_path / "export-en.xlsx"
    write_invalid_xlsx(
        export_rows(session, scope, StatsFilters(group=Group.MISMATCH)), english, "en"
    )
    first = next(load_workbook(english, read_only=True).worksheets[0].iter_rows(values_only=True))
    assert first[2] == "Full name"


def test_a_person_without_doses_in_scope_is_exported_once(
    session: Session, org: Seed, tmp_path: Path
) -> None:
    add_person(
        session,
        org,
        "Quách Văn Không Mũi",
        doses=0,
        status=VerificationStatus.NO_IDENTITY,
        identity_number=None,
    )
    session.commit()
    scope = scope_for(session, org.admin)  # national: people without doses are in scope
    rows = list(export_rows(session, scope, StatsFilters()))
    assert [(r.full_name, r.dose_number) for r in rows] == [("Quách Văn Không Mũi", None)]


def test_list_hides_what_another_unit_keeps_whatever_the_dose_ids_of_others(
    session: Session, org: Seed
) -> None:
    """Fails on the old code: the "first dose" subquery lost its correlation inside EXISTS and
    took the first dose of everybody, so a person whose first dose another unit recorded was
    shown with phone and area as soon as anyone else's dose had a smaller id."""

    invalid_people(session, org)  # doses with smaller ids, at Bến Nghé
    other = kept_elsewhere_with_a_dose_here(session, org)
    session.commit()
    scope = scope_for(session, org.staff)
    listed = {p.id: p for p in page(session, scope, StatsFilters()).people}
    assert (listed[other.id].phone, listed[other.id].area) == (None, None)
    assert listed[min(listed)].phone is not None  # Bến Nghé's own people keep theirs
    exported = [
        row for row in export_rows(session, scope, StatsFilters()) if row.person_id == other.id
    ]
    assert exported
    assert all(row.phone is None and row.area is None for row in exported)
