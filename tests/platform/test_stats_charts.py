"""Issue 17: the statistics page draws its counts as charts too (per group, per area, per month
of the latest dose): the service's grouped counts, and the page in Chromium under the CSP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session
from support.chromium import login, platform_app, serve
from support.feedback_data import invalid_people, kept_elsewhere_with_a_dose_here
from support.platform_seed import Seed, add_person, seed

from kyso.platform.models import VerificationStatus
from kyso.platform.stats.charts import BAR_MAX, bar_chart
from kyso.platform.stats.service import (
    AreaCount,
    Group,
    MonthCount,
    StatsFilters,
    by_area,
    by_latest_dose_month,
    scope_for,
)

playwright_api = pytest.importorskip("playwright.sync_api")


def _people(session: Session, org: Seed) -> None:
    """Four invalid people at Bến Nghé (latest dose 03/2022), one more there with a single
    dose in 12/2021, and one whose record Bến Thành keeps but who had a dose at Bến Nghé."""
    invalid_people(session, org)
    add_person(
        session,
        org,
        "Đặng Văn Sớm",
        doses=1,
        status=VerificationStatus.MISMATCH,
        identity_number="079090222222",
        first_dose=date(2021, 12, 20),
    )
    kept_elsewhere_with_a_dose_here(session, org)
    session.commit()


def test_people_per_area_hide_what_the_list_hides(session: Session, org: Seed) -> None:
    _people(session, org)
    staff = scope_for(session, org.staff)
    # Bến Thành keeps the last person's record: the list shows no area for them, nor does
    # the chart.
    assert by_area(session, staff, StatsFilters()) == [
        AreaCount(org.ben_nghe.name, 5),
        AreaCount(None, 1),
    ]
    assert by_area(session, staff, StatsFilters(group=Group.MISMATCH)) == [
        AreaCount(org.ben_nghe.name, 2)
    ]
    admin = scope_for(session, org.admin)
    assert by_area(session, admin, StatsFilters()) == [
        AreaCount(org.ben_nghe.name, 5),
        AreaCount(org.ben_thanh.name, 1),
    ]
    assert by_area(session, admin, StatsFilters(), top=1) == [
        AreaCount(org.ben_nghe.name, 5),
    ]


def test_people_per_month_of_their_latest_dose(session: Session, org: Seed) -> None:
    _people(session, org)
    staff = scope_for(session, org.staff)
    assert by_latest_dose_month(session, staff, StatsFilters()) == [
        MonthCount(2021, 12, 1),
        MonthCount(2022, 3, 4),
        MonthCount(2022, 5, 1),
    ]
    assert by_latest_dose_month(session, staff, StatsFilters(group=Group.NO_IDENTITY)) == [
        MonthCount(2022, 3, 2),
        MonthCount(2022, 5, 1),
    ]


def test_bars_are_proportional_and_numbers_vietnamese() -> None:
    chart = bar_chart(
        "groups",
        "Số người theo nhóm",
        [("a", 1860), ("b", 930), ("c", 0)],
        lambda n: f"{n:,}".replace(",", "."),
    )
    assert [bar.length for bar in chart.bars] == [BAR_MAX, BAR_MAX / 2, 0.0]
    assert [bar.text for bar in chart.bars] == ["1.860", "930", "0"]
    assert chart.description == "Số người theo nhóm: a: 1.860; b: 930; c: 0"
    assert bar_chart("x", "t", [], str).bars == ()


@pytest.fixture
def site(database_url: str, tmp_path: Path) -> Iterator[str]:
    app = platform_app(database_url, tmp_path)
    with app.extensions["kyso.sessions"]() as session:
        _people(session, seed(session))
    with serve(app) as url:
        yield url


def _bars(page: Any, key: str) -> list[tuple[float, int, str]]:
    """(bar length, count, the count as written) of each bar of a chart."""
    rows = page.locator(f"#chart-{key} svg[role=img] g.chart-row")
    return [
        (
            float(rows.nth(i).locator("rect").get_attribute("width") or "nan"),
            int(rows.nth(i).locator("rect").get_attribute("data-count") or "-1"),
            rows.nth(i).locator("text.chart-value").text_content() or "",
        )
        for i in range(rows.count())
    ]


def _proportional(bars: list[tuple[float, int, str]]) -> None:
    largest = max(count for _, count, _ in bars)
    assert largest > 0
    for length, count, _ in bars:
        assert length == pytest.approx(count / largest * BAR_MAX, abs=0.01)


@pytest.mark.timeout(120)
def test_statistics_page_draws_its_charts_under_the_csp(
    site: str, browser: Any, tmp_path: Path
) -> None:
    """Fails on the old code: the page had the table only, no chart."""
    page = browser.new_page(locale="vi-VN", viewport={"width": 1366, "height": 768})
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    login(page, site, "nhanvien.bennghe")
    page.goto(f"{site}/stats/invalid")
    charts = page.locator("#stats-charts svg[role=img]")
    assert charts.count() == 3
    for i in range(3):
        assert charts.nth(i).get_attribute("aria-label")
        assert charts.nth(i).locator("title").count() == 1

    groups = _bars(page, "groups")
    # The same numbers as the table: no identity 3, wrong format 1, mismatch 2.
    table = [page.locator(f"#count-{group.value} .count").inner_text() for group in Group]
    assert [text for _, _, text in groups] == table == ["3", "1", "2"]
    _proportional(groups)
    areas = _bars(page, "areas")
    assert [count for _, count, _ in areas] == [5, 1]
    _proportional(areas)
    months = _bars(page, "months")
    assert [count for _, count, _ in months] == [1, 4, 1]
    assert page.locator("#chart-months text.chart-label").all_text_contents() == [
        "12/2021",
        "03/2022",
        "05/2022",
    ]
    _proportional(months)
    # Drawn, not just present: the longest bar is wider on screen than the shortest.
    rects = page.locator("#chart-groups rect")
    assert rects.nth(0).bounding_box()["width"] > 2 * rects.nth(1).bounding_box()["width"]
    page.screenshot(path=str(tmp_path / "stats-1366.png"), full_page=True)
    page.set_viewport_size({"width": 360, "height": 740})
    page.reload()
    for i in range(3):
        box = charts.nth(i).bounding_box()
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= 360, "the charts fit a phone"
    page.locator("#stats-charts").screenshot(path=str(tmp_path / "stats-360.png"))
    violations = [text for text in console if "Content Security Policy" in text]
    assert not violations, violations
