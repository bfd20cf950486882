"""stats: the people of a verification status by area, index-only

Revision ID: 0014_stats_people_area
Revises: 0013_stats_people

- ix_people_status_area on people (verification_status, area_id, id): the chart per area
  groups invalid people by area of residence. A national administrator's chart counts every
  invalid person (with or without a dose, as the counts do): with this index an index-only
  scan of the invalid people's entries instead of a visit of each of their rows (1.3 s at 10
  million people, 1.5 million of them invalid). The id lets a station's chart match those
  entries with the station's doses without visiting the rows either.

The build takes a share lock on people (writes wait) for one pass over the table and a sort
(not measured at 10 million people; about 1 s at 1 million): run it in a maintenance window,
as 0013.
"""

from __future__ import annotations

from alembic import op

revision = "0014_stats_people_area"
down_revision = "0013_stats_people"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_people_status_area", "people", ["verification_status", "area_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_people_status_area", table_name="people")
