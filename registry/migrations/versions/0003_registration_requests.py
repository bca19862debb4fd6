"""Registration requests: what security servers asked for, and what the registry decided.

Also makes a client hosted twice by one server impossible, which concurrent approvals
could otherwise write.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the registration_requests table."""
    op.create_table(
        "registration_requests",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("server", sa.String(1100), nullable=False),
        sa.Column("client", sa.String(1400), nullable=True),
        sa.Column("address", sa.String(300), nullable=True),
        sa.Column("auth_certificate_pem", sa.Text(), nullable=True),
        sa.Column("auth_certificate_fingerprint", sa.String(64), nullable=True),
        sa.Column("consent_by", sa.String(1100), nullable=False),
        sa.Column("server_certificate_fingerprint", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("signed_request", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_registration_requests"),
        sa.UniqueConstraint("digest", name="uq_registration_requests_digest"),
    )
    op.create_index("ix_registration_requests_status", "registration_requests", ["status"])
    pending_auth = sa.text("status = 'pending' AND kind = 'auth-cert'")
    op.create_index(
        "uq_registration_requests_pending_auth_certificate",
        "registration_requests",
        ["auth_certificate_fingerprint"],
        unique=True,
        sqlite_where=pending_auth,
        postgresql_where=pending_auth,
    )
    pending_client = sa.text("status = 'pending' AND kind = 'client'")
    op.create_index(
        "uq_registration_requests_pending_client",
        "registration_requests",
        ["server", "client"],
        unique=True,
        sqlite_where=pending_client,
        postgresql_where=pending_client,
    )
    subsystem = sa.text("subsystem_id IS NOT NULL")
    op.create_index(
        "uq_server_clients_subsystem",
        "server_clients",
        ["server_id", "subsystem_id"],
        unique=True,
        sqlite_where=subsystem,
        postgresql_where=subsystem,
    )
    member = sa.text("subsystem_id IS NULL")
    op.create_index(
        "uq_server_clients_member",
        "server_clients",
        ["server_id", "member_id"],
        unique=True,
        sqlite_where=member,
        postgresql_where=member,
    )


def downgrade() -> None:
    """Drop the registration_requests table and the server_clients uniqueness."""
    op.drop_index("uq_server_clients_member", table_name="server_clients")
    op.drop_index("uq_server_clients_subsystem", table_name="server_clients")
    op.drop_index("uq_registration_requests_pending_client", table_name="registration_requests")
    op.drop_index("uq_registration_requests_pending_auth_certificate", table_name="registration_requests")
    op.drop_index("ix_registration_requests_status", table_name="registration_requests")
    op.drop_table("registration_requests")
