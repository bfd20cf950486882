"""The preview ("Xem danh sách"): exactly the chosen doses, checked again; the rest drops out."""

from __future__ import annotations

from datetime import date

from sqlalchemy import event, select
from sqlalchemy.orm import Session
from support.platform_db import plan_nodes
from support.platform_seed import Seed, add_person
from support.signing_data import bulk_people, edit, sign

from kyso.platform.db import is_postgresql
from kyso.platform.models import Dose, SigningSelection, SigningUnit, SigningUnitKind, User
from kyso.platform.models import VerificationStatus as Status
from kyso.platform.signing import preview as preview_module
from kyso.platform.signing.preview import DropReason, preview, validated_selection
from kyso.platform.signing.search import SearchFilters, SigningState
from kyso.platform.signing.selection import add_doses, add_search, clear


def selected(session: Session, officer: User) -> set[int]:
    return set(
        session.scalars(
            select(SigningSelection.dose_id).where(SigningSelection.user_id == officer.id)
        )
    )


def test_preview_is_exactly_the_selection(session: Session, org: Seed) -> None:
    an = add_person(session, org, "Nguyễn Văn An", doses=3, first_dose=date(2022, 1, 10))
    binh = add_person(session, org, "Đặng Thị Bình", doses=2, first_dose=date(2022, 2, 1))
    add_person(session, org, "Trần Văn Không Chọn", doses=2)
    add_doses(session, org.officer, [an.doses[0].id, an.doses[2].id, *[d.id for d in binh.doses]])

    result = preview(session, org.officer)
    assert result.dropped == ()
    assert [p.full_name for p in result.people] == ["Đặng Thị Bình", "Nguyễn Văn An"]
    assert [d.dose_number for d in result.people[1].doses] == [1, 3]
    assert (result.people_count, result.dose_count) == (2, 4)
    assert result.first_date == date(2022, 1, 10)
    assert result.last_date == date(2022, 3, 7)
    assert result.facilities == ("Trạm Y tế Phường Bến Nghé",)
    assert validated_selection(session, org.officer) == (
        {an.doses[0].id: 1, an.doses[2].id: 1, binh.doses[0].id: 1, binh.doses[1].id: 1},
        (),
    )
    assert result.within_limits
    assert result.resign_count == 0


def test_preview_names_all_facilities(session: Session, org: Seed) -> None:
    add_person(session, org, "Lê Văn Bảo", facility=org.station_ben_thanh)
    add_person(session, org, "Phạm Thị Cúc", facility=org.mobile_team)
    add_search(session, org.district_officer, SearchFilters())
    result = preview(session, org.district_officer)
    assert result.facilities == ("Trạm Y tế Phường Bến Thành", "Đội tiêm lưu động Quận 1")


def test_an_empty_selection(session: Session, org: Seed) -> None:
    result = preview(session, org.officer)
    assert result.people == ()
    assert result.dose_count == 0
    assert result.first_date is None
    assert not result.within_limits


def test_a_dose_edited_after_ticking_drops_out(session: Session, org: Seed) -> None:
    an = add_person(session, org, "Nguyễn Văn An", doses=2)
    add_doses(session, org.officer, [d.id for d in an.doses])
    edit(session, an.doses[1])

    result = preview(session, org.officer)
    assert [d.id for p in result.people for d in p.doses] == [an.doses[0].id]
    [dropped] = result.dropped
    assert (dropped.dose_id, dropped.reason) == (an.doses[1].id, DropReason.CHANGED)
    assert dropped.text("vi") == (
        "Mũi 2 của Nguyễn Văn An đã được sửa sau khi bạn chọn; hãy xem lại trên trang tìm "
        "kiếm rồi chọn lại."
    )
    assert "was edited after you ticked it" in dropped.text("en")
    assert selected(session, org.officer) == {an.doses[0].id}
    # Once dropped, it is gone: the next preview says nothing more.
    assert preview(session, org.officer).dropped == ()


def test_a_person_no_longer_verified_drops_out_with_the_reason(session: Session, org: Seed) -> None:
    an = add_person(session, org, "Nguyễn Văn An", doses=2)
    binh = add_person(session, org, "Nguyễn Văn Bình", doses=1)
    add_doses(session, org.officer, [d.id for d in [*an.doses, *binh.doses]])
    an.verification_status = Status.MISMATCH
    an.verification_detail = {"fields": ["birth_date"]}
    session.flush()

    result = preview(session, org.officer)
    assert [p.full_name for p in result.people] == ["Nguyễn Văn Bình"]
    assert [d.reason for d in result.dropped] == [DropReason.NOT_VERIFIED] * 2
    text = result.dropped[0].text("vi")
    assert text.startswith("Mũi 1 của Nguyễn Văn An: Sai lệch với CSDL quốc gia về dân cư")
    assert "ngày sinh" in text
    assert "Trạm Y tế Phường Bến Nghé cần sửa hồ sơ" in text
    assert selected(session, org.officer) == {binh.doses[0].id}


def test_a_scope_change_drops_the_doses_out(session: Session, org: Seed) -> None:
    an = add_person(session, org, "Nguyễn Văn An", doses=1)
    add_doses(session, org.officer, [an.doses[0].id])
    # The province moves Bến Nghé under a new central signing unit.
    central = SigningUnit(code="SU-79-CDC", name="CDC TP.HCM", kind=SigningUnitKind.PROVINCIAL_CDC)
    session.add(central)
    session.flush()
    org.station_ben_nghe.signing_unit_id = central.id
    session.flush()

    result = preview(session, org.officer)
    assert result.people == ()
    [dropped] = result.dropped
    assert dropped.reason is DropReason.OUT_OF_SCOPE
    assert "không còn thuộc phạm vi ký" in dropped.text("vi")


def test_a_dose_moved_to_another_facility_drops_out(session: Session, org: Seed) -> None:
    an = add_person(session, org, "Nguyễn Văn An", doses=1)
    add_doses(session, org.officer, [an.doses[0].id])
    session.get(Dose, an.doses[0].id).facility_id = org.station_ben_thanh.id  # type: ignore[union-attr]
    session.flush()
    assert [d.reason for d in preview(session, org.officer).dropped] == [DropReason.OUT_OF_SCOPE]


def test_a_dose_signed_meanwhile_drops_out(session: Session, org: Seed) -> None:
    an = add_person(session, org, "Nguyễn Văn An", doses=1)
    add_doses(session, org.officer, [an.doses[0].id])
    sign(session, an.doses[0])  # e.g. a second officer of the same unit
    result = preview(session, org.officer)
    assert [d.reason for d in result.dropped] == [DropReason.ALREADY_SIGNED]
    assert "có thể bởi cán bộ khác" in result.dropped[0].text("vi")


def test_doses_to_sign_again_are_marked(session: Session, org: Seed) -> None:
    an = add_person(session, org, "Nguyễn Văn An", doses=1)
    sign(session, an.doses[0])
    edit(session, an.doses[0])
    add_doses(session, org.officer, [an.doses[0].id])
    result = preview(session, org.officer)
    assert result.people[0].doses[0].state is SigningState.RESIGN
    assert result.resign_count == 1
    assert validated_selection(session, org.officer) == ({an.doses[0].id: 2}, ())


def test_a_full_batch_previews_in_a_fixed_number_of_queries(session: Session, org: Seed) -> None:
    bulk_people(session, org, 1000, doses=3)
    add_search(session, org.officer, SearchFilters())
    session.commit()
    statements: list[str] = []

    def record(*args: object) -> None:
        statements.append(str(args[2]))

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", record)
    try:
        result = preview(session, org.officer)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert (result.people_count, result.dose_count) == (1000, 3000)
    assert result.within_limits
    assert len(statements) <= 2, statements  # the scope, then one query for everything
    # Only one page of people is built; the figures are the whole selection's.
    assert len(result.people) == result.page_size == 100
    assert (result.page, result.pages) == (1, 10)


def test_pages_of_people_cover_the_selection_once_in_name_order(
    session: Session, org: Seed
) -> None:
    ids = bulk_people(session, org, 25, doses=2, name="Trần Thị Hoa")
    ids += bulk_people(session, org, 20, doses=1, name="Lê Văn Nam", first_dose=date(2022, 5, 2))
    add_search(session, org.officer, SearchFilters())

    pages = [preview(session, org.officer, page=n, page_size=10) for n in (1, 2, 3, 4, 5)]
    assert [p.pages for p in pages] == [5] * 5
    assert [p.page for p in pages] == [1, 2, 3, 4, 5]
    assert [len(p.people) for p in pages] == [10, 10, 10, 10, 5]
    names = [person.full_name for p in pages for person in p.people]
    expected = [f"Lê Văn Nam {i:04d}" for i in range(20)]
    expected += [f"Trần Thị Hoa {i:04d}" for i in range(25)]
    assert names == expected
    assert {person.id for p in pages for person in p.people} == set(ids)
    # Every person comes with all their ticked doses, on one page.
    assert sum(len(person.doses) for p in pages for person in p.people) == 70
    assert [d.dose_number for d in pages[4].people[0].doses] == [1, 2]
    for p in pages:
        assert (p.people_count, p.dose_count) == (45, 70)
        assert (p.first_date, p.last_date) == (date(2022, 3, 1), date(2022, 5, 2))


def test_a_page_beyond_the_last_shows_the_last(session: Session, org: Seed) -> None:
    bulk_people(session, org, 12, doses=1)
    add_search(session, org.officer, SearchFilters())
    result = preview(session, org.officer, page=7, page_size=5)
    assert (result.page, result.pages, len(result.people)) == (3, 3, 2)
    assert preview(session, org.officer, page=0, page_size=5).page == 1
    # Empty: one (empty) page.
    clear(session, org.officer)
    empty = preview(session, org.officer, page=3, page_size=5)
    assert (empty.page, empty.pages, empty.people) == (1, 1, ())


def test_the_figures_leave_out_what_dropped(session: Session, org: Seed) -> None:
    an = add_person(session, org, "Nguyễn Văn An", doses=2, first_dose=date(2022, 1, 10))
    binh = add_person(
        session,
        org,
        "Nguyễn Văn Bình",
        doses=2,
        first_dose=date(2021, 6, 1),
        facility=org.station_ben_nghe,
    )
    cuc = add_person(session, org, "Phạm Thị Cúc", doses=1, first_dose=date(2022, 8, 1))
    sign(session, cuc.doses[0])
    edit(session, cuc.doses[0])
    add_doses(session, org.officer, [d.id for d in [*an.doses, *binh.doses, *cuc.doses]])
    binh.verification_status = Status.MISMATCH
    binh.verification_detail = {"fields": ["birth_date"]}
    session.flush()

    result = preview(session, org.officer)
    assert [d.dose_id for d in result.dropped] == [d.id for d in binh.doses]
    assert (result.people_count, result.dose_count, result.resign_count) == (2, 3, 1)
    assert (result.first_date, result.last_date) == (date(2022, 1, 10), date(2022, 8, 1))
    assert [p.full_name for p in result.people] == ["Nguyễn Văn An", "Phạm Thị Cúc"]
    assert [d.state for d in result.people[1].doses] == [SigningState.RESIGN]


def test_validated_selection_drops_and_returns_every_dose(session: Session, org: Seed) -> None:
    ids = bulk_people(session, org, 150, doses=2)
    add_search(session, org.officer, SearchFilters())
    doses = session.execute(
        select(Dose.id, Dose.person_id).where(Dose.person_id.in_(ids)).order_by(Dose.id)
    ).all()
    changed = session.get_one(Dose, doses[0].id)
    edit(session, changed)
    signed = session.get_one(Dose, doses[-1].id)
    sign(session, signed)

    versions, dropped = validated_selection(session, org.officer)
    assert [(d.dose_id, d.reason) for d in dropped] == [
        (changed.id, DropReason.CHANGED),
        (signed.id, DropReason.ALREADY_SIGNED),
    ]
    assert versions == {d.id: 1 for d in doses[1:-1]}  # all 298, not one page
    assert selected(session, org.officer) == set(versions)
    # The preview agrees, and has nothing more to drop.
    result = preview(session, org.officer)
    assert (result.dropped, result.dose_count, result.people_count) == ((), 298, 150)


def test_a_scope_change_drops_a_whole_batch_in_chunks(session: Session, org: Seed) -> None:
    bulk_people(session, org, 700, doses=2)
    add_search(session, org.officer, SearchFilters())
    central = SigningUnit(code="SU-79-CDC", name="CDC TP.HCM", kind=SigningUnitKind.PROVINCIAL_CDC)
    session.add(central)
    session.flush()
    org.station_ben_nghe.signing_unit_id = central.id
    session.flush()

    result = preview(session, org.officer)
    assert len(result.dropped) == 1400
    assert {d.reason for d in result.dropped} == {DropReason.OUT_OF_SCOPE}
    assert (result.people, result.dose_count, result.people_count) == ((), 0, 0)
    assert selected(session, org.officer) == set()


def test_changes_pending_in_the_session_are_seen(session: Session, org: Seed) -> None:
    an = add_person(session, org, "Nguyễn Văn An", doses=1)
    add_doses(session, org.officer, [an.doses[0].id])
    an.verification_status = Status.PENDING  # not flushed: the preview flushes first
    result = preview(session, org.officer)
    assert [d.reason for d in result.dropped] == [DropReason.NOT_VERIFIED]
    assert (result.dose_count, result.people_count) == (0, 0)


def test_the_preview_lists_people_in_vietnamese_alphabetical_order(
    session: Session, org: Seed
) -> None:
    # before issue 17 the accent-free key put Đặng and Đoàn before Dương
    order = ["Duy Văn Bình", "Dương Văn Minh", "Đặng Thị Hoa", "Đoàn Văn Phản", "Lê Văn An"]
    people = [add_person(session, org, name, doses=1) for name in reversed(order)]
    add_doses(session, org.officer, [p.doses[0].id for p in people])
    result = preview(session, org.officer)
    assert [p.full_name for p in result.people] == order


def test_a_central_unit_validates_with_its_own_statement_and_the_same_answers(
    session: Session, org: Seed
) -> None:
    """A central unit's doses are looked up by id and checked against the scope as one array
    on PostgreSQL (no facilities probe per dose): the same rows as the facility form gives."""
    officer = org.district_officer  # Bến Thành and the mobile team, no facility of its own
    assert officer.facility_id is None
    bulk_people(session, org, 40, doses=2, facility=org.station_ben_thanh)
    bulk_people(session, org, 20, doses=1, facility=org.mobile_team, name="Lê Thị Hoa", start=50)
    add_search(session, officer, SearchFilters())
    doses = session.scalars(
        select(Dose)
        .join(SigningSelection, SigningSelection.dose_id == Dose.id)
        .where(SigningSelection.user_id == officer.id)
        .order_by(Dose.id)
    ).all()
    edit(session, doses[0])  # changed
    sign(session, doses[1])  # already signed
    sign(session, doses[2])
    edit(session, doses[2])  # changed, and signed before
    doses[3].facility_id = org.station_ben_nghe.id  # out of scope
    doses[4].person.verification_status = Status.MISMATCH  # not verified
    session.flush()

    connection = session.connection()
    central = preview_module._validation_statement(officer, is_postgresql(session))
    facility_form = preview_module._validation_statement(officer, False)
    if is_postgresql(session):
        sql = str(central.compile(dialect=session.get_bind().dialect))
        assert "= ANY (array((SELECT facilities.id" in sql, sql
    else:
        assert central is facility_form
    rows = sorted(connection.execute(central).tuples().all(), key=repr)
    assert rows == sorted(connection.execute(facility_form).tuples().all(), key=repr)
    assert {row[0] for row in rows} == {0, 1, 2, 3, 4}  # kept and every reason


def test_the_validation_reads_each_person_once(session: Session, org: Seed) -> None:
    """3,000 doses are ~1,000 people: one primary-key probe per person, not per dose, whatever
    the planner would memoize (PostgreSQL; SQLite plans its own way)."""
    bulk_people(session, org, 20, doses=3)
    add_search(session, org.officer, SearchFilters())
    session.flush()
    if not is_postgresql(session):
        assert preview(session, org.officer).people_count == 20
        return
    statement = preview_module._validation_statement(org.officer, True)
    compiled = statement.compile(dialect=session.get_bind().dialect)
    connection = session.connection()
    for setting in ("enable_seqscan", "enable_memoize", "enable_bitmapscan"):
        connection.exec_driver_sql(f"SET LOCAL {setting} = off")
    [[plan]] = connection.exec_driver_sql(
        f"EXPLAIN (ANALYZE, FORMAT JSON) {compiled}", compiled.params
    ).all()
    for setting in ("enable_seqscan", "enable_memoize", "enable_bitmapscan"):
        connection.exec_driver_sql(f"SET LOCAL {setting} = on")

    nodes = plan_nodes(plan[0]["Plan"])
    assert sum(n["Actual Loops"] for n in nodes if n.get("Relation Name") == "people") == 20
