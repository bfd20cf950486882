"""signing search: people by phone prefix and name prefix together, in one index

Revision ID: 0015_people_phone_name
Revises: 0014_stats_people_area

- ix_people_phone_name on people (phone varchar_pattern_ops, (name_key || '')
  text_pattern_ops): a name with a phone prefix of 4 or 5 digits ("tran thanh" + "0928") was
  slow on PostgreSQL (p95 101-282 ms at 10 million people): about 28,000 people share a 4-digit
  prefix, and either ix_people_name_key was walked and the phone checked on each row, or
  ix_people_phone_prefix was walked and the name checked on each row. With both in one index
  both prefixes are index conditions: the name is checked on the index entries, and only the
  people matching both are read. The name is the expression name_key || '' (what the search
  writes from 4 digits, search.person_conditions) rather than name_key, so that no other index
  can serve that condition: with name_key itself PostgreSQL still walked ix_people_name_key for
  any name narrower than its histogram buckets (estimated 26 rows, 1,575 read for "huynh thi"
  at 300,000 people).
  On PostgreSQL it INCLUDEs what the search reads of the people it finds (id, full_name, and
  name_key, which PostgreSQL needs present to evaluate the expression from the index): an
  index-only scan. At 10 million people "nguyen thi" + "0855" matched 2,518 people, whose rows
  took 34 ms to read (default memory settings); 7 ms from the index, which takes 896 MB instead
  of 439 MB.
- ix_people_phone_prefix is dropped: the new index serves a phone prefix alone as well (its
  leading column, same operator class), and one index fewer is written on every insert.
  ix_people_phone (default operator class) stays: it serves equality (feedback's lookup of a
  person by number) and SQLite's phone ranges.

The build takes a share lock on people (writes wait) for one pass over the table and a sort;
the drop then takes an exclusive lock on people for an instant. About 0.5 s at 300,000 people
(load 2.5; not measured at 1 or 10 million): run it in a maintenance window, as 0013. SQLite
ignores the operator classes.
"""

from __future__ import annotations

from alembic import op

revision = "0015_people_phone_name"
down_revision = "0014_stats_people_area"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # An expression with operator classes: written out (models/signing.py declares the same).
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE INDEX ix_people_phone_name ON people "
            "(phone varchar_pattern_ops, (name_key || '') text_pattern_ops) "
            "INCLUDE (id, full_name, name_key)"
        )
    else:
        op.execute("CREATE INDEX ix_people_phone_name ON people (phone, (name_key || ''))")
    op.drop_index("ix_people_phone_prefix", table_name="people")


def downgrade() -> None:
    op.create_index(
        "ix_people_phone_prefix",
        "people",
        ["phone"],
        postgresql_ops={"phone": "varchar_pattern_ops"},
    )
    op.drop_index("ix_people_phone_name", table_name="people")
