"""signing search: people's name prefix index covers the id

Revision ID: 0003_search_indexes
Revises: 0002
Create Date: 2026-11-28 09:00:00.000000

- ix_people_name_key becomes (name_key varchar_pattern_ops, id): a name prefix as broad as
  "nguyen van" in a district is then an index-only scan instead of ~20,000 heap blocks read
  (bench/README.md). The one-column index it replaces is a prefix of it, so nothing that used
  the old one loses anything; keeping both would only cost writes.
"""

from __future__ import annotations

from alembic import op

revision = "0003_search_indexes"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("people", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_people_name_key", postgresql_ops={"name_key": "varchar_pattern_ops"}
        )
        batch_op.create_index(
            "ix_people_name_key",
            ["name_key", "id"],
            unique=False,
            postgresql_ops={"name_key": "varchar_pattern_ops"},
        )


def downgrade() -> None:
    with op.batch_alter_table("people", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_people_name_key", postgresql_ops={"name_key": "varchar_pattern_ops"}
        )
        batch_op.create_index(
            "ix_people_name_key",
            ["name_key"],
            unique=False,
            postgresql_ops={"name_key": "varchar_pattern_ops"},
        )
