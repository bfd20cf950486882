"""throttle: one table of attempts for every throttled action; unrouted citizen feedback

Revision ID: 0007_throttle
Revises: 0006_feedback

- throttle_attempts replaces login_attempts, passport_lookups and feedback_attempts: one
  throttling policy (kyso.platform.throttle) counts login, passport lookup, feedback and
  feedback status attempts by scope, subject (hashed), address and time. The old rows are
  throttling state of the last minutes only and are not carried over;
- feedback.facility_id may be empty: a report that matched nobody is kept unrouted (the
  citizen's answer must not tell whether their details matched a person).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_throttle"
down_revision = "0006_feedback"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "throttle_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=24), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_throttle_attempts")),
    )
    with op.batch_alter_table("throttle_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_throttle_attempts_ip", ["scope", "ip", "at"], unique=False)
        batch_op.create_index(
            "ix_throttle_attempts_subject", ["scope", "subject", "at"], unique=False
        )

    with op.batch_alter_table("login_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_login_attempts_username"))
        batch_op.drop_index(batch_op.f("ix_login_attempts_ip"))
        batch_op.drop_index(batch_op.f("ix_login_attempts_at"))
    op.drop_table("login_attempts")
    with op.batch_alter_table("passport_lookups", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_passport_lookups_subject"))
        batch_op.drop_index(batch_op.f("ix_passport_lookups_ip"))
        batch_op.drop_index(batch_op.f("ix_passport_lookups_at"))
    op.drop_table("passport_lookups")
    with op.batch_alter_table("feedback_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_feedback_attempts_subject_at")
        batch_op.drop_index("ix_feedback_attempts_ip_at")
    op.drop_table("feedback_attempts")

    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.alter_column("facility_id", existing_type=sa.Integer(), nullable=True)


def downgrade() -> None:
    # Unrouted reports cannot go back under a NOT NULL facility: they are removed with their
    # replies (they belong to no facility's inbox).
    op.execute(
        "DELETE FROM feedback_replies WHERE feedback_id IN "
        "(SELECT id FROM feedback WHERE facility_id IS NULL)"
    )
    op.execute("DELETE FROM feedback WHERE facility_id IS NULL")
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.alter_column("facility_id", existing_type=sa.Integer(), nullable=False)

    op.create_table(
        "feedback_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback_attempts")),
    )
    with op.batch_alter_table("feedback_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_feedback_attempts_ip_at", ["kind", "ip", "at"], unique=False)
        batch_op.create_index(
            "ix_feedback_attempts_subject_at", ["kind", "subject", "at"], unique=False
        )
    op.create_table(
        "passport_lookups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_passport_lookups")),
    )
    with op.batch_alter_table("passport_lookups", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_passport_lookups_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_passport_lookups_ip"), ["ip"], unique=False)
        batch_op.create_index(batch_op.f("ix_passport_lookups_subject"), ["subject"], unique=False)
    op.create_table(
        "login_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_attempts")),
    )
    with op.batch_alter_table("login_attempts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_login_attempts_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_login_attempts_ip"), ["ip"], unique=False)
        batch_op.create_index(batch_op.f("ix_login_attempts_username"), ["username"], unique=False)

    with op.batch_alter_table("throttle_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_throttle_attempts_subject")
        batch_op.drop_index("ix_throttle_attempts_ip")
    op.drop_table("throttle_attempts")
