"""Maintenance announcements security servers made: each request id is used once.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the maintenance_requests table."""
    op.create_table(
        "maintenance_requests",
        sa.Column("request_id", sa.String(32), nullable=False),
        sa.Column("server", sa.String(1100), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("certificate_fingerprint", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("request_id", name="pk_maintenance_requests"),
    )


def downgrade() -> None:
    """Drop the maintenance_requests table."""
    op.drop_table("maintenance_requests")
