"""The invalid-people export at scale: time and peak memory of "Xuất danh sách".

A database with ``--rows`` export rows (people who could not be verified, two doses each, in
the three groups with realistic verification details) is built once per backend; then a child
process runs the export exactly as a user's click does — ``GET /stats/invalid/export.xlsx``
through the Flask app (a national administrator's session), the workbook written by
``stats.export`` from ``stats.service.export_rows``' server-side cursor, and the response body
read chunk by chunk as a browser would. The child reports the wall time and its peak resident
memory (``VmHWM`` from /proc/self/status, the kernel's high-water mark of the process) and the
memory it had before the request (``VmRSS``), so that imports and the app are told apart from
the export. The parent checks the file: it opens with openpyxl and has one header row and
``--rows`` data rows.

The bar (issue 7): peak RSS <= 150 MB for 100,000 rows.

Run:
    .venv/bin/python bench/export_invalid.py [--rows 100000] [--backend sqlite|postgresql|both]

PostgreSQL: database ``kyso_bench_export`` on 127.0.0.1:5432 (dropped and recreated); SQLite: a
file in the system's temp directory. Benchmarks report figures; they are not tests.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
PG_NAME = "kyso_bench_export"
PG_URL = f"postgresql+psycopg://postgres@127.0.0.1:5432/{PG_NAME}"
PASSWORD = "bench-export-password"  # the benchmark's own administrator, in its own database


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def build(url: str, rows: int) -> int:
    """Create and fill the database; returns the administrator's user id."""
    from sqlalchemy import insert

    from kyso.platform.auth.service import hash_password
    from kyso.platform.db import make_engine
    from kyso.platform.migrations import upgrade
    from kyso.platform.models import (
        AreaLevel,
        Dose,
        FacilityType,
        Gender,
        Person,
        Role,
        SigningUnitKind,
        VerificationStatus,
    )
    from kyso.platform.records import seed
    from kyso.platform.records.names import name_key

    upgrade(url)
    engine = make_engine(url)
    from sqlalchemy.orm import Session

    with Session(engine) as session:
        province = seed.area(session, "79", "Thành phố Hồ Chí Minh", AreaLevel.PROVINCE)
        commune = seed.area(session, "26740", "Phường Bến Nghé", AreaLevel.COMMUNE, province)
        unit = seed.signing_unit(
            session, "SU-79-1", "Trạm Y tế", SigningUnitKind.FACILITY, province
        )
        facility = seed.facility(
            session,
            "79760-BN",
            "Trạm Y tế Phường Bến Nghé",
            FacilityType.COMMUNE_STATION,
            commune,
            unit,
        )
        product = seed.product(
            session,
            "EU/1/20/1528",
            "Comirnaty (Pfizer-BioNTech)",
            manufacturer_code="ORG-100030215",
            prophylaxis_code="J07BN01",
        )
        admin = seed.account(
            session,
            "admin",
            "Quản trị viên",
            Role.ADMINISTRATOR,
            password_hash=hash_password(PASSWORD),
        )
        now = datetime.now(UTC)
        people_count = rows // 2
        kinds = [
            (VerificationStatus.NO_IDENTITY, None, None),
            (VerificationStatus.OLD_ID_ONLY, "023456789", None),
            (
                VerificationStatus.WRONG_FORMAT,
                "099090123456",
                {"rule": "province", "found": "099"},
            ),
            (
                VerificationStatus.MISMATCH,
                "079090654321",
                {
                    "fields": ["birth_date", "full_name"],
                    "registry": {
                        "full_name": "Nguyễn Văn Khác",
                        "birth_date": "1990-06-17",
                        "gender": "male",
                    },
                },
            ),
        ]
        chunk = 10_000
        for start in range(0, people_count, chunk):
            batch = []
            for i in range(start, min(start + chunk, people_count)):
                status, number, detail = kinds[i % len(kinds)]
                name = f"Nguyễn Thị Bích Ngọc {i:06d}"
                batch.append(
                    {
                        "full_name": name,
                        "name_key": name_key(name),
                        "birth_date": date(1950, 1, 1) + timedelta(days=i % 20_000),
                        "gender": Gender.FEMALE,
                        "identity_number": number,
                        "phone": f"09{i:08d}",
                        "area_id": commune.id,
                        "address": f"{i % 300} Đường Lê Lợi, Phường Bến Nghé",
                        "verification_status": status,
                        "verification_detail": detail,
                        "verification_attempts": 0,
                        "version": 1,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            ids = list(
                session.scalars(
                    insert(Person).returning(Person.id, sort_by_parameter_order=True), batch
                )
            )
            session.execute(
                insert(Dose),
                [
                    {
                        "person_id": person_id,
                        "product_id": product.id,
                        "lot": f"FK{1000 + n}",
                        "vaccinated_on": date(2022, 3, 1) + timedelta(days=28 * (n - 1)),
                        "dose_number": n,
                        "facility_id": facility.id,
                        "created_by_facility_id": facility.id,
                        "version": 1,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for person_id in ids
                    for n in (1, 2)
                ],
            )
        session.commit()
        admin_id = admin.id
    engine.dispose()
    return admin_id


def child(url: str, admin_id: int, out: Path) -> None:
    """The export as a click runs it; prints a JSON line with the figures."""
    from kyso.platform.app import create_app

    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "bench", "SESSION_COOKIE_SECURE": False})
    client = app.test_client()
    # Logged in through the form, as the administrator would be (sessions live on the server).
    form = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token is not None, "no CSRF token on the login page"
    answer = client.post(
        "/login", data={"username": "admin", "password": PASSWORD, "csrf_token": token[1]}
    )
    assert answer.status_code == 302, f"login refused ({answer.status_code})"
    # The login's argon2id hash takes its 64 MiB for a moment; the peak measured is the
    # export's, so the high-water mark starts again here ("5": reset VmHWM, Linux >= 4.0).
    Path("/proc/self/clear_refs").write_text("5")
    before_kb = _status_kb("VmRSS")
    started = time.perf_counter()
    response = client.get("/stats/invalid/export.xlsx", buffered=False)
    assert response.status_code == 200, response.status_code
    written = 0
    with out.open("wb") as fh:
        for chunk in response.response:
            fh.write(chunk)
            written += len(chunk)
    response.close()
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "seconds": round(seconds, 2),
                "bytes": written,
                "rss_before_mb": round(before_kb / 1024, 1),
                "peak_rss_mb": round(_status_kb("VmHWM") / 1024, 1),
            }
        )
    )


def run(backend: str, rows: int) -> dict[str, object]:
    if backend == "postgresql":
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{PG_NAME}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{PG_NAME}"')
        url = PG_URL
        folder = Path(tempfile.mkdtemp(prefix="kyso-export-bench-"))
    else:
        folder = Path(tempfile.mkdtemp(prefix="kyso-export-bench-"))
        url = f"sqlite:///{folder / 'bench.db'}"
    started = time.perf_counter()
    admin_id = build(url, rows)
    print(f"{backend}: {rows:,} rows built in {time.perf_counter() - started:.0f} s", flush=True)
    out = folder / "export.xlsx"
    env = dict(os.environ, KYSO_INSTANCE_PATH=str(folder / "instance"))
    result = subprocess.run(
        [sys.executable, __file__, "--child", url, str(admin_id), str(out)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    figures: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])

    from openpyxl import load_workbook

    sheet = load_workbook(out, read_only=True).worksheets[0]
    count = sum(1 for _ in sheet.iter_rows(values_only=True))
    assert count == rows + 1, f"{count - 1} data rows, expected {rows}"
    figures["backend"] = backend
    figures["rows"] = rows
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--child", nargs=3, metavar=("URL", "ADMIN_ID", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), Path(args.child[2]))
        return
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    for backend in backends:
        figures = run(backend, args.rows)
        ok = "ok" if float(str(figures["peak_rss_mb"])) <= 150 else "OVER THE BAR"
        print(
            f"{backend}: {figures['rows']:,} rows in {figures['seconds']} s, "
            f"{int(str(figures['bytes'])) / 1e6:.1f} MB file, peak RSS {figures['peak_rss_mb']} MB "
            f"(before the request {figures['rss_before_mb']} MB) — bar 150 MB: {ok}",
            flush=True,
        )


if __name__ == "__main__":
    main()
