"""scheduled sends, skipped deliveries, the outbox, bounce scores and events

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 23:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

SEND_STATES = ("scheduled", "late", "cancelled", "sending", "paused", "done")
OLD_SEND_STATES = ("sending", "paused", "done")
DELIVERY_STATES = ("pending", "sent", "failed", "bounced", "skipped")
OLD_DELIVERY_STATES = ("pending", "sent", "failed", "bounced")


def _allowed(column: str, values) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    with op.batch_alter_table("sends", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scheduled_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.drop_constraint("send_state", type_="check")
        batch_op.create_check_constraint("send_state", _allowed("state", SEND_STATES))
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_constraint("delivery_state", type_="check")
        batch_op.create_check_constraint("delivery_state", _allowed("state", DELIVERY_STATES))
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("bounce_score", sa.Float(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("last_bounce_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("values", sa.Text(), nullable=False),
        sa.Column(
            "state",
            sa.Enum("pending", "sent", "failed", name="outbox_state", native_enum=False,
                    create_constraint=True, length=16),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_reply", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )  # fmt: skip
    op.create_index("ix_outbox_state_next", "outbox", ["state", "next_attempt_at"])
    op.create_table(
        "bounce_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("detail", sa.String(length=500), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscribers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_bounce_events_subscriber_id", "bounce_events", ["subscriber_id"])


def downgrade() -> None:
    op.drop_index("ix_bounce_events_subscriber_id", table_name="bounce_events")
    op.drop_table("bounce_events")
    op.drop_index("ix_outbox_state_next", table_name="outbox")
    op.drop_table("outbox")
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.drop_column("last_bounce_at")
        batch_op.drop_column("bounce_score")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_constraint("delivery_state", type_="check")
        batch_op.create_check_constraint("delivery_state", _allowed("state", OLD_DELIVERY_STATES))
    with op.batch_alter_table("sends", schema=None) as batch_op:
        batch_op.drop_constraint("send_state", type_="check")
        batch_op.create_check_constraint("send_state", _allowed("state", OLD_SEND_STATES))
        batch_op.drop_column("scheduled_at")
