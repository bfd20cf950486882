"""signing search: the columns it needs, kept on the doses row by the database

Revision ID: 0016_doses_search_columns
Revises: 0015_people_phone_name

What: three columns on ``doses``, written only by triggers (the application never writes them):

- ``signed_version``: NULL when the dose has no ``dose_signatures`` row; else the greatest
  ``dose_version`` among its signatures that nothing superseded, or 0 when every signature is
  superseded. "Signed in its current version" is then ``signed_version = version`` (versions
  only grow, and start at 1) and "ever signed" is ``signed_version IS NOT NULL``.
- ``person_name``, ``person_name_key``: copies of the person's ``full_name`` and ``name_key``.

``ix_doses_facility_date`` (0001) is dropped: its columns lead ``ix_doses_signing_search``, and
each signed dose would write an entry into it (below). ``ix_doses_signing_search`` becomes
(facility_id, vaccinated_on, person_id, version) INCLUDE (id, signed_version, person_name_key,
person_name) on PostgreSQL. On SQLite it keeps its key columns only: the models' index has one
column list for both databases (the migrations test compares them), and SQLite has no INCLUDE.

Why: at 10 million people the search of a district centre spent 60 ms probing
``ix_dose_signatures_current`` once per candidate dose and 160 ms reading each candidate person
for the name filter and the Vietnamese sort (issue 16). With the columns on the dose the search
is an index-only scan of ``ix_doses_signing_search``.

Triggers (PostgreSQL: plpgsql; SQLite: row triggers):

- doses, on INSERT and on UPDATE OF person_id: the name columns from people (and, on INSERT,
  signed_version, NULL but for a dose id that has signatures already).
- people, AFTER UPDATE OF full_name, name_key when one changed: the person's doses.
- dose_signatures, AFTER INSERT / UPDATE / DELETE: the affected doses' signed_version. On
  PostgreSQL these are statement triggers over the transition tables: a batch of 3,000
  signatures is one UPDATE of doses, not 3,000. AFTER TRUNCATE (PostgreSQL): every dose
  unsigned.

Concurrent writers (PostgreSQL, READ COMMITTED): each value is computed from what is
committed once the rows it depends on are locked, so the last of two writers cannot store a
value computed without the other's change. A dose's insert or move reads its person FOR NO
KEY UPDATE (a rename in progress is waited for; the statistics' refresh of that person takes
the same lock next, so two writers of one person's doses take turns instead of deadlocking);
the signatures' trigger locks the affected doses, in id order, before it recomputes them in a
statement of its own. On SQLite writers are serialised anyway.

Every trigger writes a dose row only when a value changes (IS DISTINCT FROM), so that no row
version is made for nothing.

Locks and time: ADD COLUMN (nullable, no default) is a catalogue change, but it takes doses'
ACCESS EXCLUSIVE lock until the end of the migration's transaction; the fill then writes a new
version of every doses row in one UPDATE (ix_doses_signing_search is dropped before it and
rebuilt after; the other doses indexes get an entry per row: run VACUUM (ANALYZE) doses
afterwards) and the people and signatures are read once each. Writers and readers of doses wait
for all of it: run it in a maintenance window. Measured on PostgreSQL 15 here, from 0015 on
bench/platform_search.py's data at 200,000 people (494,858 doses, 53 % signed), load 0.7: 11 s.
At 10 million people (24.7 million doses, bench/platform_search.py's data, 2 CPUs, load 1-1.5):
1,179 s, then 55 s for VACUUM ANALYZE doses; the table and ix_doses_signing_search take 5.4 GB
and 3.2 GB afterwards (2.2 GB and 1.0 GB before; the table's old row versions are reused by
later writes, not returned to the disk).

Cost on writes, same data: a statement storing 3,000 signatures took 300 ms instead of 55 ms
(the trigger's one UPDATE of 3,000 doses rows, each a new row version with an entry in each of
the doses indexes (five before this migration dropped one): signed_version is in
ix_doses_signing_search, so no HOT update), i.e. about 80 us per signed dose, well inside the
1,000 signed doses/s bar.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_doses_search_columns"
down_revision = "0015_people_phone_name"
branch_labels = None
depends_on = None

KEY = ["facility_id", "vaccinated_on", "person_id", "version"]
INCLUDED = ["id", "signed_version", "person_name_key", "person_name"]


def signed_version_of(dose_id: str) -> str:
    """SQL for the signed_version of the dose ``dose_id`` (an SQL expression), both backends."""
    aggregate = (
        "CASE WHEN count(*) = 0 THEN NULL ELSE coalesce(max(CASE WHEN"
        " s.superseded_at IS NULL THEN s.dose_version END), 0) END"
    )
    return f"(SELECT {aggregate} FROM dose_signatures AS s WHERE s.dose_id = {dose_id})"  # noqa: S608 - fixed SQL


# Set-based fill: one pass, one new version of each doses row (SQLite >= 3.33 has
# UPDATE ... FROM). Also bench/platform_search.py's, after its bulk load.
FILL = (
    "UPDATE doses SET person_name = f.full_name, person_name_key = f.name_key,"
    " signed_version = f.signed_version"
    " FROM (SELECT d.id, p.full_name, p.name_key, s.v AS signed_version"
    " FROM doses AS d JOIN people AS p ON p.id = d.person_id"
    " LEFT JOIN (SELECT dose_id, coalesce(max(CASE WHEN superseded_at IS NULL"
    " THEN dose_version END), 0) AS v FROM dose_signatures GROUP BY dose_id) AS s"
    " ON s.dose_id = d.id) AS f"
    " WHERE f.id = doses.id"
)

POSTGRESQL = [
    f"""
    CREATE FUNCTION doses_search_columns() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' OR NEW.person_id IS DISTINCT FROM OLD.person_id THEN
            -- Locked: a rename of this person not committed yet is waited for, then read.
            -- Without it the copy would be the old name, and the rename's own UPDATE of the
            -- person's doses cannot see this dose until it commits: stale for good. NO KEY
            -- UPDATE, the lock the statistics' refresh (stats/summary.py) takes on the same
            -- row after the insert: with FOR SHARE two transactions adding a dose to one
            -- person would each hold a share the other's refresh waits for (a deadlock).
            SELECT p.full_name, p.name_key INTO NEW.person_name, NEW.person_name_key
            FROM people AS p WHERE p.id = NEW.person_id FOR NO KEY UPDATE;
        END IF;
        IF TG_OP = 'INSERT' THEN
            NEW.signed_version := {signed_version_of("NEW.id")};
        END IF;
        RETURN NEW;
    END $$
    """,  # noqa: S608 - fixed SQL, no input
    """
    CREATE TRIGGER doses_search_columns BEFORE INSERT OR UPDATE OF person_id ON doses
    FOR EACH ROW EXECUTE FUNCTION doses_search_columns()
    """,
    """
    CREATE FUNCTION people_name_to_doses() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE doses SET person_name = NEW.full_name, person_name_key = NEW.name_key
        WHERE person_id = NEW.id
          AND (person_name IS DISTINCT FROM NEW.full_name
               OR person_name_key IS DISTINCT FROM NEW.name_key);
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER people_name_to_doses AFTER UPDATE OF full_name, name_key ON people
    FOR EACH ROW WHEN (OLD.full_name IS DISTINCT FROM NEW.full_name
                       OR OLD.name_key IS DISTINCT FROM NEW.name_key)
    EXECUTE FUNCTION people_name_to_doses()
    """,
    # The doses of the changed signatures, once each, in one UPDATE. The transition tables
    # (changed_new / changed_old) exist only for the operations that have them; an UPDATE
    # trigger with transition tables cannot name columns, so the function keeps the rows
    # whose dose, version or superseded_at changed.
    f"""
    CREATE FUNCTION dose_signatures_to_doses() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        affected integer[];
    BEGIN
        IF TG_OP = 'INSERT' THEN
            SELECT array_agg(DISTINCT n.dose_id) INTO affected FROM changed_new AS n;
        ELSIF TG_OP = 'DELETE' THEN
            SELECT array_agg(DISTINCT o.dose_id) INTO affected FROM changed_old AS o;
        ELSE
            SELECT array_agg(DISTINCT d.dose_id) INTO affected FROM (
                SELECT o.dose_id, n.dose_id AS new_dose_id FROM changed_old AS o
                JOIN changed_new AS n ON n.id = o.id
                WHERE o.dose_id IS DISTINCT FROM n.dose_id
                   OR o.dose_version IS DISTINCT FROM n.dose_version
                   OR o.superseded_at IS DISTINCT FROM n.superseded_at
            ) AS c CROSS JOIN LATERAL (VALUES (c.dose_id), (c.new_dose_id)) AS d(dose_id);
        END IF;
        IF affected IS NOT NULL THEN
            -- Lock the doses first, in id order; the UPDATE, a statement of its own, then
            -- reads the signatures with a snapshot taken after any other transaction that
            -- changed this dose's signatures (and so locked it here) has committed. Without
            -- it the last of two concurrent writers would store what it computed from a
            -- snapshot without the other's change.
            PERFORM 1 FROM doses WHERE id = ANY(affected) ORDER BY id FOR NO KEY UPDATE;
            UPDATE doses SET signed_version = r.v
            FROM (SELECT a.dose_id, {signed_version_of("a.dose_id")} AS v
                  FROM unnest(affected) AS a(dose_id)) AS r
            WHERE doses.id = r.dose_id AND doses.signed_version IS DISTINCT FROM r.v;
        END IF;
        RETURN NULL;
    END $$
    """,  # noqa: S608 - fixed SQL, no input
    """
    CREATE TRIGGER dose_signatures_inserted AFTER INSERT ON dose_signatures
    REFERENCING NEW TABLE AS changed_new
    FOR EACH STATEMENT EXECUTE FUNCTION dose_signatures_to_doses()
    """,
    """
    CREATE TRIGGER dose_signatures_updated AFTER UPDATE ON dose_signatures
    REFERENCING OLD TABLE AS changed_old NEW TABLE AS changed_new
    FOR EACH STATEMENT EXECUTE FUNCTION dose_signatures_to_doses()
    """,
    """
    CREATE TRIGGER dose_signatures_deleted AFTER DELETE ON dose_signatures
    REFERENCING OLD TABLE AS changed_old
    FOR EACH STATEMENT EXECUTE FUNCTION dose_signatures_to_doses()
    """,
    # TRUNCATE fires no DELETE trigger: every dose is then unsigned.
    """
    CREATE FUNCTION dose_signatures_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE doses SET signed_version = NULL WHERE signed_version IS NOT NULL;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER dose_signatures_truncated AFTER TRUNCATE ON dose_signatures
    FOR EACH STATEMENT EXECUTE FUNCTION dose_signatures_truncated()
    """,
]


def _sqlite_refresh(dose_id: str) -> str:
    """SQLite: set signed_version of the dose ``dose_id`` when it changes."""
    value = signed_version_of(dose_id)
    where = f"id = {dose_id} AND signed_version IS NOT {value}"
    return f"UPDATE doses SET signed_version = {value} WHERE {where};"  # noqa: S608 - fixed SQL


SQLITE = [
    f"""
    CREATE TRIGGER doses_search_columns_inserted AFTER INSERT ON doses
    BEGIN
        UPDATE doses SET
            person_name = (SELECT p.full_name FROM people AS p WHERE p.id = NEW.person_id),
            person_name_key = (SELECT p.name_key FROM people AS p WHERE p.id = NEW.person_id),
            signed_version = {signed_version_of("NEW.id")}
        WHERE id = NEW.id;
    END
    """,  # noqa: S608 - fixed SQL, no input
    """
    CREATE TRIGGER doses_search_columns_person AFTER UPDATE OF person_id ON doses
    WHEN OLD.person_id IS NOT NEW.person_id
    BEGIN
        UPDATE doses SET
            person_name = (SELECT p.full_name FROM people AS p WHERE p.id = NEW.person_id),
            person_name_key = (SELECT p.name_key FROM people AS p WHERE p.id = NEW.person_id)
        WHERE id = NEW.id;
    END
    """,
    """
    CREATE TRIGGER people_name_to_doses AFTER UPDATE OF full_name, name_key ON people
    WHEN OLD.full_name IS NOT NEW.full_name OR OLD.name_key IS NOT NEW.name_key
    BEGIN
        UPDATE doses SET person_name = NEW.full_name, person_name_key = NEW.name_key
        WHERE person_id = NEW.id
          AND (person_name IS NOT NEW.full_name OR person_name_key IS NOT NEW.name_key);
    END
    """,
    f"""
    CREATE TRIGGER dose_signatures_inserted AFTER INSERT ON dose_signatures
    BEGIN
        {_sqlite_refresh("NEW.dose_id")}
    END
    """,
    f"""
    CREATE TRIGGER dose_signatures_updated
    AFTER UPDATE OF superseded_at, dose_version, dose_id ON dose_signatures
    BEGIN
        {_sqlite_refresh("OLD.dose_id")}
        {_sqlite_refresh("NEW.dose_id")}
    END
    """,
    f"""
    CREATE TRIGGER dose_signatures_deleted AFTER DELETE ON dose_signatures
    BEGIN
        {_sqlite_refresh("OLD.dose_id")}
    END
    """,
]

TRIGGERS = [
    ("doses", "doses_search_columns"),
    ("doses", "doses_search_columns_inserted"),
    ("doses", "doses_search_columns_person"),
    ("people", "people_name_to_doses"),
    ("dose_signatures", "dose_signatures_inserted"),
    ("dose_signatures", "dose_signatures_updated"),
    ("dose_signatures", "dose_signatures_deleted"),
    ("dose_signatures", "dose_signatures_truncated"),
]
FUNCTIONS = [
    "doses_search_columns",
    "people_name_to_doses",
    "dose_signatures_to_doses",
    "dose_signatures_truncated",
]


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    with op.batch_alter_table("doses", schema=None) as batch_op:
        batch_op.add_column(sa.Column("signed_version", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("person_name", sa.String(length=120), nullable=True))
        batch_op.add_column(sa.Column("person_name_key", sa.String(length=120), nullable=True))
    # Triggers first: from here on no write can leave a column behind. The index is rebuilt
    # anyway: dropped before the fill, which then has one index fewer to write into.
    for statement in POSTGRESQL if postgresql else SQLITE:
        op.execute(statement)
    op.drop_index("ix_doses_signing_search", table_name="doses")
    # Its two columns lead ix_doses_signing_search: it serves nothing that index does not, and
    # costs an entry per signed dose now that signing rewrites the dose's row.
    op.drop_index("ix_doses_facility_date", table_name="doses")
    op.execute(FILL)
    op.create_index("ix_doses_signing_search", "doses", KEY, postgresql_include=INCLUDED)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table, name in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (f" ON {table}" if postgresql else ""))
    if postgresql:
        for name in FUNCTIONS:
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    op.drop_index("ix_doses_signing_search", table_name="doses")
    op.create_index("ix_doses_signing_search", "doses", KEY, postgresql_include=["id"])
    op.create_index("ix_doses_facility_date", "doses", ["facility_id", "vaccinated_on"])
    # Plain DROP COLUMN (SQLite >= 3.35: no index names them any more), not a batch copy of
    # the table.
    for name in ("person_name_key", "person_name", "signed_version"):
        op.drop_column("doses", name)
