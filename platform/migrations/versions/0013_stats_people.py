"""stats summary: the people of each province, kept with the records

Revision ID: 0013_stats_people
Revises: 0012_timestamp_queue

- stats_people: one row per (province, person) for every province where the person has a dose,
  with the person's verification status, area, first dose's province and latest dose date
  (doses at a facility in no province under province 0)
  (``kyso.platform.stats.summary``). Filled here from the doses in one INSERT … SELECT (one
  pass over the doses, set-based: minutes at 25 million doses), the statement
  ``kyso-platform stats rebuild`` runs.

Upgrading without downtime: the previous release writes doses without keeping the summary, so
once every server runs this release run ``kyso-platform stats check --repair``
(docs/deployment.md, sections 5 and 13).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_stats_people"
down_revision = "0012_timestamp_queue"
branch_labels = None
depends_on = None


# The summary of everyone from the doses: the statement of ``stats.summary.rebuild``, written
# out (a migration does not import the application); a test runs it against the same data as
# ``rebuild`` and compares.
BACKFILL = """
    INSERT INTO stats_people (province_id, person_id, verification_status, area_id,
                              first_province_id, latest_dose_on)
    SELECT ranked.province_id, ranked.person_id, people.verification_status,
           people.area_id, ranked.first_province_id, ranked.latest
    FROM (
        SELECT per_province.person_id, per_province.province_id,
               first_value(per_province.province_id) OVER (
                   PARTITION BY per_province.person_id ORDER BY per_province.first_id
               ) AS first_province_id,
               max(per_province.latest) OVER (
                   PARTITION BY per_province.person_id
               ) AS latest
        FROM (
            SELECT doses.person_id AS person_id,
                   coalesce(areas.province_id, 0) AS province_id,
                   min(doses.id) AS first_id, max(doses.vaccinated_on) AS latest
            FROM doses
            JOIN facilities ON facilities.id = doses.facility_id
            LEFT OUTER JOIN areas ON areas.id = facilities.area_id
            GROUP BY doses.person_id, coalesce(areas.province_id, 0)
        ) AS per_province
    ) AS ranked
    JOIN people ON people.id = ranked.person_id
"""


def upgrade() -> None:
    op.create_table(
        "stats_people",
        sa.Column("province_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("person_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column(
            "verification_status",
            sa.Enum(
                "pending",
                "verified",
                "no_identity",
                "old_id_only",
                "wrong_format",
                "mismatch",
                "unavailable",
                name="verification_status",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("area_id", sa.Integer(), nullable=True),
        sa.Column("first_province_id", sa.Integer(), nullable=False),
        sa.Column("latest_dose_on", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("province_id", "person_id", name=op.f("pk_stats_people")),
    )
    # The backfill before the indexes (faster to build once than to maintain row by row).
    op.execute(BACKFILL)
    op.create_index(
        "ix_stats_people_counts",
        "stats_people",
        ["province_id", "verification_status", "area_id", "first_province_id", "latest_dose_on"],
    )
    op.create_index("ix_stats_people_person", "stats_people", ["person_id"])
    op.create_index(
        "ix_stats_people_first",
        "stats_people",
        ["verification_status", "area_id", "latest_dose_on"],
        postgresql_where=sa.text("province_id = first_province_id"),
        sqlite_where=sa.text("province_id = first_province_id"),
    )
    # The planner's statistics now (a province's list needs them to page by the primary key);
    # the visibility map that makes the counts index-only comes with the next (auto)vacuum, or
    # run VACUUM ANALYZE stats_people after the upgrade (docs/deployment.md).
    op.execute("ANALYZE stats_people")


def downgrade() -> None:
    op.drop_index("ix_stats_people_first", table_name="stats_people")
    op.drop_index("ix_stats_people_person", table_name="stats_people")
    op.drop_index("ix_stats_people_counts", table_name="stats_people")
    op.drop_table("stats_people")
