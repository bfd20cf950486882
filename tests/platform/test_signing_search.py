"""The signing search: scope, filters, accent-insensitive names, signing states, pagination."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session
from support.platform_db import plan_nodes, postgresql_only, recorded_statements
from support.platform_seed import Seed, add_person
from support.signing_data import bulk_people, edit, sign

from kyso.platform.errors import DomainError
from kyso.platform.formatting import sort_key
from kyso.platform.models import Dose, Person, User, VerificationStatus
from kyso.platform.records.names import name_key
from kyso.platform.signing import search as search_module
from kyso.platform.signing.search import (
    Cursor,
    SearchFilters,
    SearchPage,
    SigningState,
    StateFilter,
    parse_filters,
    search,
)


def names(page: SearchPage) -> list[str]:
    return [p.full_name for p in page.people]


def find(session: Session, officer: User, page_size: int = 50, **filters: object) -> SearchPage:
    return search(session, officer, SearchFilters(**filters), page_size=page_size)  # type: ignore[arg-type]


def test_officer_sees_only_the_facilities_of_their_signing_unit(
    session: Session, org: Seed
) -> None:
    add_person(session, org, "Nguyễn Văn An")  # Bến Nghé: officer's unit
    add_person(session, org, "Lê Văn Bảo", facility=org.station_ben_thanh)  # district unit
    add_person(session, org, "Phạm Thị Cúc", facility=org.mobile_team)  # district unit
    assert names(find(session, org.officer)) == ["Nguyễn Văn An"]
    assert names(find(session, org.district_officer)) == ["Lê Văn Bảo", "Phạm Thị Cúc"]


def test_a_person_shows_only_the_doses_in_scope(session: Session, org: Seed) -> None:
    person = add_person(session, org, "Nguyễn Văn An", doses=1)
    session.add(
        Dose(
            person_id=person.id,
            product_id=org.pfizer.id,
            lot="AB1",
            vaccinated_on=date(2022, 4, 1),
            dose_number=2,
            facility_id=org.station_ben_thanh.id,
            created_by_facility_id=org.station_ben_thanh.id,
        )
    )
    session.flush()
    [own] = find(session, org.officer).people
    assert [d.dose_number for d in own.doses] == [1]
    [district] = find(session, org.district_officer).people
    assert [d.dose_number for d in district.doses] == [2]
    assert district.doses[0].facility == "Trạm Y tế Phường Bến Thành"


def test_only_signing_officers_with_a_unit_may_search(session: Session, org: Seed) -> None:
    with pytest.raises(DomainError) as refused:
        find(session, org.staff)
    assert refused.value.key == "signing.not_an_officer"
    org.officer.signing_unit_id = None
    with pytest.raises(DomainError) as no_unit:
        find(session, org.officer)
    assert no_unit.value.key == "signing.no_unit"
    assert "quản trị viên" in no_unit.value.text()


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("nguyen van a", ["Nguyễn Văn An", "Nguyễn Văn Anh"]),
        ("Nguyễn Văn A", ["Nguyễn Văn An", "Nguyễn Văn Anh"]),
        ("  NGUYỄN   văn   a ", ["Nguyễn Văn An", "Nguyễn Văn Anh"]),
        ("nguyễn van anh", ["Nguyễn Văn Anh"]),
        ("nguyen", ["Nguyễn Thị An", "Nguyễn Văn An", "Nguyễn Văn Anh"]),
        ("nguyen van an ", ["Nguyễn Văn An", "Nguyễn Văn Anh"]),
    ],
)
def test_name_is_an_accent_insensitive_prefix_of_the_full_name(
    session: Session, org: Seed, typed: str, expected: list[str]
) -> None:
    for name in ("Nguyễn Văn An", "Nguyễn Văn Anh", "Nguyễn Thị An", "Trần Văn An"):
        add_person(session, org, name)
    assert names(find(session, org.officer, name=typed)) == expected


def test_name_does_not_match_a_given_name_alone(session: Session, org: Seed) -> None:
    """Decision (search.py): prefix of the whole name only, so that the index can serve it."""
    add_person(session, org, "Nguyễn Văn An")
    add_person(session, org, "An Thị Bình")
    assert names(find(session, org.officer, name="an")) == ["An Thị Bình"]
    assert names(find(session, org.officer, name="van an")) == []


def test_d_with_stroke_and_like_wildcards(session: Session, org: Seed) -> None:
    add_person(session, org, "Đỗ Đức Độ")
    add_person(session, org, "Do_Xuan Dat")
    assert names(find(session, org.officer, name="do duc")) == ["Đỗ Đức Độ"]
    assert names(find(session, org.officer, name="Đỗ Đức Độ")) == ["Đỗ Đức Độ"]
    # % and _ are letters here, not wildcards.
    assert names(find(session, org.officer, name="%")) == []
    assert names(find(session, org.officer, name="do_")) == ["Do_Xuan Dat"]
    assert names(find(session, org.officer, name="d_ duc")) == []


def test_phone_exact_prefix_and_country_code(session: Session, org: Seed) -> None:
    add_person(session, org, "Nguyễn Văn An", phone="0901234567")
    add_person(session, org, "Nguyễn Văn Bình", phone="0912345678")
    add_person(session, org, "Nguyễn Văn Cường", phone=None)
    assert names(find(session, org.officer, phone="0901234567")) == ["Nguyễn Văn An"]
    assert names(find(session, org.officer, phone="0901")) == ["Nguyễn Văn An"]
    assert names(find(session, org.officer, phone="09")) == ["Nguyễn Văn An", "Nguyễn Văn Bình"]
    assert names(find(session, org.officer, phone="+84 912 345 678")) == ["Nguyễn Văn Bình"]
    assert names(find(session, org.officer, phone="0912.345.678")) == ["Nguyễn Văn Bình"]
    assert names(find(session, org.officer, phone="0999")) == []
    assert names(find(session, org.officer, phone="abc")) == []


def test_prefixes_stop_at_the_next_key(session: Session, org: Seed) -> None:
    """The range form of a prefix (SQLite) ends exactly where the prefix does."""
    add_person(session, org, "Nguyễn Văn A", phone="0909999999")
    add_person(session, org, "Nguyễn Văn Anh", phone="0909000000")
    add_person(session, org, "Nguyễn Văn B", phone="0910000000")
    add_person(session, org, "Nguyễn Văn", phone="090")
    assert names(find(session, org.officer, name="nguyen van a")) == [
        "Nguyễn Văn A",
        "Nguyễn Văn Anh",
    ]
    assert names(find(session, org.officer, name="nguyen van anh")) == ["Nguyễn Văn Anh"]
    assert names(find(session, org.officer, name="nguyen van")) == [
        "Nguyễn Văn",
        "Nguyễn Văn A",
        "Nguyễn Văn Anh",
        "Nguyễn Văn B",
    ]
    assert names(find(session, org.officer, phone="0909")) == ["Nguyễn Văn A", "Nguyễn Văn Anh"]
    assert names(find(session, org.officer, phone="09099")) == ["Nguyễn Văn A"]
    assert names(find(session, org.officer, phone="091")) == ["Nguyễn Văn B"]
    assert names(find(session, org.officer, phone="0900")) == []
    # Both: the name still narrows what the phone found (on SQLite without its index).
    assert names(find(session, org.officer, name="nguyen van a", phone="0909")) == [
        "Nguyễn Văn A",
        "Nguyễn Văn Anh",
    ]
    assert names(find(session, org.officer, name="nguyen van an", phone="0909")) == [
        "Nguyễn Văn Anh"
    ]
    assert names(find(session, org.officer, name="nguyen van b", phone="0909")) == []


@pytest.mark.parametrize(
    ("column", "prefix", "index"),
    [("phone", "0903", "ix_people_phone"), ("name_key", "nguyen van", "ix_people_name_key")],
)
def test_prefix_searches_use_an_index(
    session: Session, org: Seed, column: str, prefix: str, index: str
) -> None:
    """SQLite never serves LIKE 'prefix%' from these indexes; the range form it does."""
    dialect = session.get_bind().dialect
    condition = search_module.starts_with(getattr(Person, column), prefix, dialect.name)
    statement = select(Person.id).where(condition)
    sql = str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    connection = session.connection()
    if dialect.name == "sqlite":
        rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")
        plan = " ".join(str(row[-1]) for row in rows)
        assert re.search(rf"INDEX {index}\w* \({column}>\? AND {column}<\?\)", plan), plan
    else:
        # A handful of rows: the planner would rather read the table; tell it not to, to see
        # whether the index can serve the condition at all. (SET LOCAL: this transaction.)
        connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        rows = connection.exec_driver_sql(f"EXPLAIN {sql}")
        plan = " ".join(str(row[0]) for row in rows)
        connection.exec_driver_sql("SET LOCAL enable_seqscan = on")
        assert index in plan, plan
        assert "~>=~" in plan, plan  # LIKE 'prefix%' as a range of the pattern_ops index


@pytest.mark.parametrize("phone", ["0903", "09031", "0903 12"])
def test_name_and_phone_search_one_index_the_phone_first(
    session: Session, org: Seed, phone: str
) -> None:
    """From 4 digits the phone drives and the name is checked in the same index: PostgreSQL's
    estimates cannot tell a narrow name prefix from a broad one, nor SQLite's which of two
    ranges is narrower; ix_people_name_key would walk every "nguyen van…"."""
    dialect = session.get_bind().dialect
    conditions = search_module.person_conditions(
        SearchFilters(name="nguyen van", phone=phone), dialect.name
    )
    statement = select(Person.id).where(*conditions)
    sql = str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    digits = phone.replace(" ", "")
    connection = session.connection()
    if dialect.name == "sqlite":
        rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")
        plan = " ".join(str(row[-1]) for row in rows)
        assert re.search(r"INDEX ix_people_phone\w* \(phone>\? AND phone<\?\)", plan), plan
        assert "ix_people_name_key" not in plan, plan
    else:
        # A handful of rows: the planner would rather read the table; tell it not to.
        connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        rows = connection.exec_driver_sql(f"EXPLAIN {sql}")
        plan = " ".join(str(row[0]) for row in rows)
        connection.exec_driver_sql("SET LOCAL enable_seqscan = on")
        # Index-only (it INCLUDEs what the search reads of the people), no other index.
        assert "Index Only Scan using ix_people_phone_name" in plan, plan
        assert "ix_people_name_key" not in plan, plan
        # Both prefixes are index conditions: the name is checked on the index entries.
        [condition] = re.findall(r"Index Cond: (.*?\)\))(?:  |$)", plan)
        assert re.search(rf"\(?phone\)?(::text)? ~>=~ '{digits}'::text", condition), plan
        name = r"\(\(name_key\)::text \|\| ''::text\)\)?"
        assert re.search(rf"{name} ~>=~ 'nguyen van'::text", condition), plan
        assert re.search(rf"{name} ~<~ 'nguyen vao'::text", condition), plan


def test_name_and_a_short_phone_search_by_name(session: Session, org: Seed) -> None:
    """Below 4 digits ("09": most people) the name stays indexable, as without a phone."""
    dialect = session.get_bind().dialect
    conditions = search_module.person_conditions(
        SearchFilters(name="nguyen van", phone="090"), dialect.name
    )
    sql = str(
        select(Person.id)
        .where(*conditions)
        .compile(dialect=dialect, compile_kwargs={"literal_binds": True})
    )
    assert "people.name_key ||" not in sql, sql


@pytest.mark.parametrize("phone", ["09", "0900", "090000", "09000000", "0900000012"])
def test_name_and_phone_give_the_same_pages_whichever_drives(
    session: Session, org: Seed, monkeypatch: pytest.MonkeyPatch, phone: str
) -> None:
    """The phone first with the name in its index (4+ digits), or the name index first: the
    same people, order and count. (PostgreSQL is told to use the indexes, as at scale.)"""
    bulk_people(session, org, 30, doses=2, name="Trần Thanh Bình")  # phones 0900000000…
    bulk_people(session, org, 12, doses=1, name="Trần Thị Hoa", start=5)  # 0900000005…
    bulk_people(session, org, 8, doses=1, name="Trần Thanh Tâm", start=1000)  # 0900001000…
    add_person(session, org, "Trần Thanh Ánh", phone="0900000019")
    signed = add_person(session, org, "Trần Thanh Đã Ký", doses=1, phone="0900000011")
    sign(session, signed.doses[0])
    session.flush()
    cases = [
        SearchFilters(name="tran thanh", phone=phone),
        SearchFilters(name="tran", phone=phone, state=StateFilter.TO_SIGN),
        SearchFilters(name="tran thanh b", phone=phone, date_from=date(2022, 3, 22)),
    ]

    def pages(filters: SearchFilters) -> list[tuple[list[int], int | None]]:
        seen: list[tuple[list[int], int | None]] = []
        cursor: Cursor | None = None
        while True:
            page = search(session, org.officer, filters, page_size=4, after=cursor)
            seen.append(([p.id for p in page.people], page.count))
            if page.next_cursor is None:
                return seen
            cursor = page.next_cursor

    if session.get_bind().dialect.name == "postgresql":
        session.connection().exec_driver_sql("SET LOCAL enable_seqscan = off")
    driven = [pages(filters) for filters in cases]
    monkeypatch.setattr(search_module, "PHONE_NARROWS", 99)  # the name indexable, always
    assert driven == [pages(filters) for filters in cases]
    assert any(ids for case in driven for ids, _count in case)


def test_identity_number_is_exact(session: Session, org: Seed) -> None:
    add_person(session, org, "Nguyễn Văn An", identity_number="079190123456")
    add_person(session, org, "Nguyễn Văn Bình", identity_number="079190123457")
    assert names(find(session, org.officer, identity_number="079190123456")) == ["Nguyễn Văn An"]
    assert names(find(session, org.officer, identity_number=" 0791 9012 3457")) == [
        "Nguyễn Văn Bình"
    ]
    assert names(find(session, org.officer, identity_number="07919012345")) == []


def test_verification_status_filter(session: Session, org: Seed) -> None:
    add_person(session, org, "Nguyễn Văn An")
    add_person(session, org, "Nguyễn Văn Bình", status=VerificationStatus.MISMATCH)
    add_person(session, org, "Nguyễn Văn Cường", status=VerificationStatus.PENDING)
    mismatch = find(session, org.officer, status=VerificationStatus.MISMATCH)
    assert names(mismatch) == ["Nguyễn Văn Bình"]
    assert names(find(session, org.officer)) == [
        "Nguyễn Văn An",
        "Nguyễn Văn Bình",
        "Nguyễn Văn Cường",
    ]


def test_date_range_is_inclusive_and_shows_only_matching_doses(session: Session, org: Seed) -> None:
    # Doses on 1 March and 29 March 2022.
    add_person(session, org, "Nguyễn Văn An", doses=2, first_dose=date(2022, 3, 1))
    add_person(session, org, "Nguyễn Văn Bình", doses=1, first_dose=date(2022, 5, 1))
    page = find(session, org.officer, date_from=date(2022, 3, 29), date_to=date(2022, 4, 30))
    assert names(page) == ["Nguyễn Văn An"]
    assert [d.dose_number for d in page.people[0].doses] == [2]
    page = find(session, org.officer, date_from=date(2022, 3, 1), date_to=date(2022, 3, 1))
    assert [d.dose_number for d in page.people[0].doses] == [1]
    assert names(find(session, org.officer, date_from=date(2022, 5, 1))) == ["Nguyễn Văn Bình"]
    assert names(find(session, org.officer, date_to=date(2022, 2, 28))) == []


def test_date_range_the_wrong_way_round_is_refused(session: Session, org: Seed) -> None:
    with pytest.raises(DomainError) as refused:
        find(session, org.officer, date_from=date(2022, 4, 1), date_to=date(2022, 3, 1))
    assert refused.value.key == "signing.date_order"
    assert "01/04/2022" in refused.value.text()


def test_only_my_facility(session: Session, org: Seed) -> None:
    # The district officer works at Bến Thành and signs for Bến Thành and the mobile team.
    org.district_officer.facility_id = org.station_ben_thanh.id
    add_person(session, org, "Lê Văn Bảo", facility=org.station_ben_thanh)
    add_person(session, org, "Phạm Thị Cúc", facility=org.mobile_team)
    assert names(find(session, org.district_officer, only_my_facility=True)) == ["Lê Văn Bảo"]
    assert len(find(session, org.district_officer).people) == 2
    # An officer without a facility of their own: nothing is "at my facility".
    org.district_officer.facility_id = None
    assert names(find(session, org.district_officer, only_my_facility=True)) == []


def test_own_facility_outside_the_unit_gives_nothing(session: Session, org: Seed) -> None:
    # An inconsistent account (works at Bến Thành, signs for Bến Nghé): the user rules no longer
    # let anyone save it (issue 12), and one saved before finds nothing and is told why.
    org.officer.facility_id = org.station_ben_thanh.id
    add_person(session, org, "Lê Văn Bảo", facility=org.station_ben_thanh)
    add_person(session, org, "Lê Văn Bến Nghé", facility=org.station_ben_nghe)
    for only_mine in (True, False):
        with pytest.raises(DomainError) as caught:
            find(session, org.officer, only_my_facility=only_mine)
        assert caught.value.key == "signing.unit_not_covering_facility"


def test_signing_states(session: Session, org: Seed) -> None:
    unsigned = add_person(session, org, "Nguyễn Văn An", doses=1)
    signed = add_person(session, org, "Nguyễn Văn Bình", doses=1)
    resign = add_person(session, org, "Nguyễn Văn Cường", doses=1)
    superseded = add_person(session, org, "Nguyễn Văn Dũng", doses=1)
    sign(session, signed.doses[0])
    sign(session, resign.doses[0])
    edit(session, resign.doses[0])  # signed version 1, now version 2
    signature = sign(session, superseded.doses[0])
    signature.superseded_at = datetime.now(UTC)
    session.flush()

    page = find(session, org.officer)
    states = {p.full_name: p.doses[0].state for p in page.people}
    assert states == {
        "Nguyễn Văn An": SigningState.UNSIGNED,
        "Nguyễn Văn Bình": SigningState.SIGNED,
        "Nguyễn Văn Cường": SigningState.RESIGN,
        "Nguyễn Văn Dũng": SigningState.RESIGN,
    }
    selectable = {p.full_name: p.doses[0].selectable for p in page.people}
    assert selectable == {
        "Nguyễn Văn An": True,
        "Nguyễn Văn Bình": False,
        "Nguyễn Văn Cường": True,
        "Nguyễn Văn Dũng": True,
    }
    to_sign = find(session, org.officer, state=StateFilter.TO_SIGN)
    assert names(to_sign) == ["Nguyễn Văn An", "Nguyễn Văn Cường", "Nguyễn Văn Dũng"]
    assert names(find(session, org.officer, state=StateFilter.SIGNED)) == ["Nguyễn Văn Bình"]
    assert unsigned.doses[0].id == page.people[0].doses[0].id


def test_unverified_people_are_listed_but_not_selectable(session: Session, org: Seed) -> None:
    add_person(session, org, "Nguyễn Văn An", status=VerificationStatus.OLD_ID_ONLY)
    [person] = find(session, org.officer).people
    assert not person.verified
    assert person.doses
    assert not any(d.selectable for d in person.doses)
    assert person.selectable_doses == ()
    assert person.facility == "Trạm Y tế Phường Bến Nghé"


def test_pages_cover_every_person_once_in_name_order(session: Session, org: Seed) -> None:
    bulk_people(session, org, 7, name="Trần Thị Mai")
    # Same name twice: the id breaks the tie.
    add_person(session, org, "Trần Thị Mai 0003")
    add_person(session, org, "Ánh Dương")  # sorts first: "anh duong"
    session.flush()
    everyone = session.scalars(select(Person)).all()
    expected = [p.id for p in sorted(everyone, key=lambda p: (sort_key(p.full_name), p.id))]
    assert len(expected) == 9

    seen: list[int] = []
    pages: list[SearchPage] = []
    cursor: Cursor | None = None
    while True:
        page = search(session, org.officer, SearchFilters(), page_size=4, after=cursor)
        pages.append(page)
        seen += [p.id for p in page.people]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == expected  # no duplicates, no gaps, stable order
    assert [len(p.people) for p in pages] == [4, 4, 1]
    assert pages[0].count == 9
    assert not pages[0].count_capped
    assert pages[0].previous_cursor is None
    assert pages[1].count is None  # counted on a first page only
    assert pages[1].previous_cursor is not None
    assert pages[2].previous_cursor is not None

    # Backwards from the last page gives the same pages.
    assert pages[2].previous_cursor is not None
    back = search(
        session, org.officer, SearchFilters(), page_size=4, before=pages[2].previous_cursor
    )
    assert [p.id for p in back.people] == [p.id for p in pages[1].people]
    assert back.next_cursor is not None
    assert back.previous_cursor is not None
    assert back.previous_cursor is not None
    first = search(session, org.officer, SearchFilters(), page_size=4, before=back.previous_cursor)
    assert [p.id for p in first.people] == [p.id for p in pages[0].people]
    assert first.previous_cursor is None
    assert first.next_cursor is not None


def test_a_page_does_not_shift_when_people_before_it_drop_out(session: Session, org: Seed) -> None:
    """Keyset paging: signing page 1 between two clicks does not skip anyone on page 2."""
    ids = bulk_people(session, org, 6, name="Lê Văn Tâm")
    first = search(session, org.officer, SearchFilters(state=StateFilter.TO_SIGN), page_size=3)
    for person in first.people:
        for dose in person.doses:
            sign(session, session.get(Dose, dose.id))  # type: ignore[arg-type]
    assert first.next_cursor is not None
    second = search(
        session,
        org.officer,
        SearchFilters(state=StateFilter.TO_SIGN),
        page_size=3,
        after=first.next_cursor,
    )
    assert [p.id for p in second.people] == ids[3:]


def test_count_is_capped(session: Session, org: Seed, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search_module, "COUNT_CAP", 5)
    bulk_people(session, org, 7)
    page = find(session, org.officer, page_size=3)
    assert (page.count, page.count_capped) == (5, True)
    assert len(page.people) == 3
    bulk_page = find(session, org.officer, page_size=10)
    assert len(bulk_page.people) == 7  # the cap limits the count, never the page


def test_bad_cursor_starts_from_the_first_page() -> None:
    assert Cursor.decode("12:nguyen van an") == Cursor("nguyen van an", 12)
    assert Cursor.decode("x:nguyen") is None
    assert Cursor.decode("12") is None
    assert Cursor.decode("") is None
    assert Cursor.decode(None) is None
    assert Cursor.decode(Cursor("a b", 3).encode()) == Cursor("a b", 3)


def test_search_runs_a_fixed_number_of_queries(session: Session, org: Seed) -> None:
    """No query per person or dose: a page of 50 people costs what a page of 2 does."""
    bulk_people(session, org, 60, doses=3)
    session.commit()
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", count)
    try:
        find(session, org.officer, page_size=2)
        small = len(statements)
        statements.clear()
        page = find(session, org.officer, page_size=50)
        large = len(statements)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(page.people) == 50
    assert all(len(p.doses) == 3 for p in page.people)
    assert large == small <= 5  # scope, candidates, page keys, people, doses


def test_parse_filters() -> None:
    filters, problems = parse_filters(
        {
            "from": "01/03/2022",
            "to": "2022-03-31",
            "name": "  Nguyễn   Văn ",
            "phone": "0901",
            "id": "079190123456",
            "status": "mismatch",
            "state": "to_sign",
            "mine": "1",
        }
    )
    assert problems == []
    assert filters == SearchFilters(
        date_from=date(2022, 3, 1),
        date_to=date(2022, 3, 31),
        name="Nguyễn Văn",
        phone="0901",
        identity_number="079190123456",
        status=VerificationStatus.MISMATCH,
        state=StateFilter.TO_SIGN,
        only_my_facility=True,
    )
    again, _ = parse_filters(filters.as_args())
    assert again == filters
    assert SearchFilters().as_args() == {}

    filters, problems = parse_filters({"from": "31/02/2022", "status": "nonsense", "state": "x"})
    assert filters == SearchFilters()
    assert [p.key for p in problems] == [
        "signing.bad_filter",
        "signing.bad_filter",
        "common.date_invalid",
    ]
    assert any("31/02/2022" in p.text() for p in problems)


@pytest.mark.parametrize("cap", [0, 3, 10_000])
def test_both_query_routes_give_the_same_pages(
    session: Session, org: Seed, monkeypatch: pytest.MonkeyPatch, cap: int
) -> None:
    """People with a matching dose looked up by id, or EXISTS beyond the cap: same answers.

    (The routes of a search that starts from the people: the status is theirs.)"""
    monkeypatch.setattr(search_module, "CANDIDATE_CAP", cap)
    bulk_people(session, org, 9, doses=3, name="Nguyễn Văn An")
    bulk_people(session, org, 4, doses=1, name="Trần Thị Bích", start=20)
    add_person(session, org, "Lê Văn Bảo", facility=org.station_ben_thanh)
    signed = add_person(session, org, "Nguyễn Văn Đã Ký", doses=1)
    sign(session, signed.doses[0])
    cases = [
        SearchFilters(),
        SearchFilters(name="nguyen van"),
        SearchFilters(date_from=date(2022, 3, 29), date_to=date(2022, 4, 1)),
        SearchFilters(state=StateFilter.TO_SIGN),
        SearchFilters(state=StateFilter.SIGNED),
        SearchFilters(name="tran", date_from=date(2022, 3, 2)),
    ]
    expected = [
        ["Nguyễn Văn An 0000", "Nguyễn Văn An 0001", "Nguyễn Văn An 0002"],
        ["Nguyễn Văn An 0000", "Nguyễn Văn An 0001", "Nguyễn Văn An 0002"],
        ["Nguyễn Văn An 0000", "Nguyễn Văn An 0001", "Nguyễn Văn An 0002"],
        ["Nguyễn Văn An 0000", "Nguyễn Văn An 0001", "Nguyễn Văn An 0002"],
        ["Nguyễn Văn Đã Ký"],
        [],
    ]
    counts = [14, 10, 9, 13, 1, 0]
    for filters, names_, count in zip(cases, expected, counts, strict=True):
        filters = replace(filters, status=VerificationStatus.VERIFIED)  # everyone here
        assert not search_module.keys_from_doses(filters)
        page = search(session, org.officer, filters, page_size=3)
        assert names(page) == names_, filters
        assert page.count == count, filters


def test_postgresql_looks_up_more_candidates_by_id_than_sqlite(
    session: Session, org: Seed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between SQLite's cap and CANDIDATE_CAP, PostgreSQL keeps the ids (one array parameter)
    where SQLite turns to EXISTS: the same pages either way."""
    bulk_people(session, org, 9, doses=2, name="Nguyễn Văn An")
    bulk_people(session, org, 5, doses=1, name="Trần Thị Bích", start=20)
    session.flush()
    statements: list[str] = []

    def record(*args: object) -> None:
        statements.append(str(args[2]))

    def pages() -> list[list[str]]:
        found: list[list[str]] = []
        for name in ("", "nguyen"):  # the status: a search that starts from the people
            filters = SearchFilters(name=name, status=VerificationStatus.VERIFIED)
            found.append(names(search(session, org.officer, filters, page_size=20)))
        return found

    expected = pages()  # 14 candidates, far below both caps: the ids
    monkeypatch.setattr(search_module, "SQLITE_CANDIDATE_CAP", 5)
    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", record)
    try:
        assert pages() == expected
    finally:
        event.remove(engine, "before_cursor_execute", record)
    keys = [s for s in statements if s.startswith("SELECT people.id") and "ORDER BY" in s]
    assert len(keys) == 2, statements
    by_id = session.get_bind().dialect.name == "postgresql"
    assert all(("= ANY (CAST(" in s) is by_id for s in keys), keys
    assert all(("EXISTS" in s) is not by_id for s in keys), keys


# Vietnamese alphabetical order (issue 17): a ă â b c d đ e …, tones second. The accent-free
# name_key put Đặng, Đinh and Đoàn before Dương and Duy.
VIETNAMESE_ORDER = [
    "Duy Văn Bình",
    "Dư Văn Hùng",
    "Dương Văn Minh",
    "Đặng Thị Hoa",
    "Đinh Văn Ân",
    "Đoàn Văn Phản",
    "Lê Văn An",
]


def test_names_are_in_vietnamese_alphabetical_order_on_every_page(
    session: Session, org: Seed
) -> None:
    for name in reversed(VIETNAMESE_ORDER):
        add_person(session, org, name)
    session.flush()
    assert names(find(session, org.officer)) == VIETNAMESE_ORDER
    # paged forwards and backwards by keyset: the same order, every person once
    seen: list[str] = []
    cursor: Cursor | None = None
    pages: list[SearchPage] = []
    while True:
        page = search(session, org.officer, SearchFilters(), page_size=2, after=cursor)
        pages.append(page)
        seen += names(page)
        if page.next_cursor is None:
            break
        cursor = Cursor.decode(page.next_cursor.encode())  # as the page's link carries it
    assert seen == VIETNAMESE_ORDER
    back = search(
        session, org.officer, SearchFilters(), page_size=2, before=pages[-1].previous_cursor
    )
    assert names(back) == names(pages[-2])
    # the name filter (accent-free prefix) keeps the order
    assert names(find(session, org.officer, name="d")) == VIETNAMESE_ORDER[:6]


# The two routes to the page's people (keys_from_doses): from the doses' copies of their
# person's name (kept by the database, migration 0016), or from the people themselves.
ROUTE_CASES = [
    SearchFilters(),
    SearchFilters(name="nguyen"),
    SearchFilters(name="nguyen van"),
    SearchFilters(name="d"),
    SearchFilters(name="vu van moi"),
    SearchFilters(name="hoang van cu"),
    SearchFilters(name="tran", date_from=date(2022, 4, 1)),
    SearchFilters(date_from=date(2022, 3, 29), date_to=date(2022, 4, 2)),
    SearchFilters(state=StateFilter.TO_SIGN),
    SearchFilters(state=StateFilter.SIGNED),
    SearchFilters(name="pham", state=StateFilter.TO_SIGN),
    SearchFilters(only_my_facility=True, name="le"),
]


def walk(session: Session, officer: User, filters: SearchFilters) -> list[object]:
    """Every page forwards by its next link, then one page back: what an officer can see."""
    seen: list[object] = []
    page = search(session, officer, filters, page_size=3)
    seen.append((page.count, page.count_capped, names(page)))
    while page.next_cursor is not None:
        last = page
        page = search(session, officer, filters, page_size=3, after=page.next_cursor)
        seen.append(([(p.id, [d.id for d in p.doses]) for p in page.people], page.next_cursor))
        if page.previous_cursor is not None:
            back = search(session, officer, filters, page_size=3, before=page.previous_cursor)
            assert names(back) == names(last), filters
    return seen


def test_the_doses_route_gives_the_pages_of_the_people_route(
    session: Session, org: Seed, monkeypatch: pytest.MonkeyPatch
) -> None:
    bulk_people(session, org, 7, doses=2, name="Nguyễn Văn An")
    bulk_people(session, org, 4, name="Trần Thị Bích", start=20, first_dose=date(2022, 4, 2))
    for name in VIETNAMESE_ORDER:
        add_person(session, org, name, doses=1)
    add_person(session, org, "Lê Văn Bảo", facility=org.station_ben_thanh)
    signed = add_person(session, org, "Nguyễn Văn Đã Ký")
    sign(session, signed.doses[0])
    edited = add_person(session, org, "Phạm Thị Sửa", doses=1)
    sign(session, edited.doses[0])
    edit(session, edited.doses[0])  # signed in an older version: to sign again
    renamed = add_person(session, org, "Hoàng Văn Cũ", doses=1)
    renamed.full_name, renamed.name_key = "Vũ Văn Mới", name_key("Vũ Văn Mới")
    moved = add_person(session, org, "Ngô Thị Chuyển", doses=1)
    session.flush()
    # A dose recorded on the wrong person, moved to the right one.
    session.execute(
        update(Dose).where(Dose.id == moved.doses[0].id).values(person_id=renamed.id, dose_number=2)
    )
    session.flush()

    by_doses = [walk(session, org.officer, filters) for filters in ROUTE_CASES]
    monkeypatch.setattr(search_module, "keys_from_doses", lambda _filters: False)
    by_people = [walk(session, org.officer, filters) for filters in ROUTE_CASES]
    for filters, doses_side, people_side in zip(ROUTE_CASES, by_doses, by_people, strict=True):
        assert doses_side == people_side, filters
    # The copies follow the person: the new name is found, the old one not, and both doses.
    new_name, old_name = by_doses[4], by_doses[5]
    assert new_name == [(1, False, ["Vũ Văn Mới"])]
    assert old_name == [(0, False, [])]
    assert len(find(session, org.officer, name="vu van moi").people[0].doses) == 2


def test_only_the_people_route_filters_by_what_only_people_hold() -> None:
    assert search_module.keys_from_doses(SearchFilters(name="nguyen", state=StateFilter.TO_SIGN))
    for filters in (
        SearchFilters(phone="0903"),
        SearchFilters(identity_number="079090123456"),
        SearchFilters(name="nguyen", status=VerificationStatus.VERIFIED),
    ):
        assert not search_module.keys_from_doses(filters), filters


@postgresql_only
def test_a_search_by_name_and_state_reads_only_the_doses(session: Session, org: Seed) -> None:
    """No person and no signature is read per candidate dose: the page's people come from
    the doses alone (test_doses_search_columns checks that ix_doses_signing_search covers
    such a scan; at 10M people it is index-only, bench/README.md)."""
    bulk_people(session, org, 30, doses=2, name="Nguyễn Văn An")
    sign(session, session.scalars(select(Dose).limit(1)).one())
    session.flush()
    with recorded_statements(session.get_bind()) as seen:
        page = find(session, org.officer, name="nguyen van", state=StateFilter.TO_SIGN)
    assert page.count == 30
    [(keys, parameters)] = [(s, p) for s, p, _ in seen if "GROUP BY doses.person_id" in s]
    [[plan]] = session.connection().exec_driver_sql(f"EXPLAIN (FORMAT JSON) {keys}", parameters)

    # The tables read (a bitmap index scan names its index, but no Relation Name).
    tables = [n["Relation Name"] for n in plan_nodes(plan[0]["Plan"]) if "Relation Name" in n]
    assert tables == ["doses"], plan
