"""timestamp queue: stored signatures waiting for their RFC 3161 time-stamp

Revision ID: 0012_timestamp_queue
Revises: 0011_evidence

- timestamp_queue: one entry per stored signature (per record: the batch item; batch mode: the
  batch signature) until ``kyso-platform signing timestamp`` has made it CAdES-T. Signatures
  stored before this revision were time-stamped in-line and need no entry.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_timestamp_queue"
down_revision = "0011_evidence"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "timestamp_queue",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=True),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["batch_id"], ["signing_batches.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_timestamp_queue_due", "timestamp_queue", ["next_attempt_at", "id"])
    op.create_index("ix_timestamp_queue_batch", "timestamp_queue", ["batch_id", "position"])


def downgrade() -> None:
    op.drop_index("ix_timestamp_queue_batch", table_name="timestamp_queue")
    op.drop_index("ix_timestamp_queue_due", table_name="timestamp_queue")
    op.drop_table("timestamp_queue")
