"""archive pages kept with each send; first and last names and attributes

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 23:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sends", schema=None) as batch_op:
        batch_op.add_column(sa.Column("title", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("issue_date", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("web_html", sa.Text(), nullable=True))
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("first_name", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("last_name", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("attributes", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.drop_column("attributes")
        batch_op.drop_column("last_name")
        batch_op.drop_column("first_name")
    with op.batch_alter_table("sends", schema=None) as batch_op:
        batch_op.drop_column("web_html")
        batch_op.drop_column("issue_date")
        batch_op.drop_column("title")
