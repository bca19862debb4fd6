"""The server configuration's first schema: clients, services, endpoints, rights, local groups, audit trail.

Revision ID: sc0001
Revises:
Create Date: 2025-04-01
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "sc0001"
down_revision = None
branch_labels = None
depends_on = None


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.Integer(), primary_key=True)


def upgrade() -> None:
    """Create every table of revision sc0001 and the change counter's row."""
    counter = op.create_table(
        "change_counter",
        _id(),
        sa.Column("generation", sa.String(36), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_change_counter"),
    )
    # A fresh generation per database: a store created anew never repeats an old marker.
    op.bulk_insert(counter, [{"id": 1, "generation": str(uuid.uuid4()), "value": 0}])
    op.create_table(
        "clients",
        _id(),
        sa.Column("client_id", sa.String(1100), nullable=False),
        sa.Column("connection", sa.String(16), nullable=False),
        sa.Column("token_required", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_clients"),
        sa.UniqueConstraint("client_id", name="uq_clients_client_id"),
    )
    op.create_table(
        "client_certificates",
        _id(),
        sa.Column("client_ref", sa.Integer(), nullable=False),
        sa.Column("pem", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_client_certificates"),
        sa.ForeignKeyConstraint(["client_ref"], ["clients.id"], name="fk_client_certificates_client_ref"),
        sa.UniqueConstraint(
            "client_ref", "fingerprint", name="uq_client_certificates_client_ref_fingerprint"
        ),
    )
    op.create_table(
        "services",
        _id(),
        sa.Column("service_id", sa.String(1600), nullable=False),
        sa.Column("provider", sa.String(1100), nullable=False),
        sa.Column("service_code", sa.String(255), nullable=False),
        sa.Column("service_version", sa.String(255), nullable=False),
        sa.Column("protocol", sa.String(8), nullable=False),
        sa.Column("base_url", sa.String(2048), nullable=False),
        sa.Column("timeout_s", sa.Float(), nullable=False),
        sa.Column("wsdl_url", sa.String(2048), nullable=True),
        sa.Column("openapi_url", sa.String(2048), nullable=True),
        sa.Column("verify_tls", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_services"),
        sa.UniqueConstraint("service_id", name="uq_services_service_id"),
        sa.UniqueConstraint(
            "provider",
            "service_code",
            "service_version",
            name="uq_services_provider_service_code_service_version",
        ),
    )
    op.create_table(
        "endpoints",
        _id(),
        sa.Column("service_ref", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("from_openapi", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_endpoints"),
        sa.ForeignKeyConstraint(["service_ref"], ["services.id"], name="fk_endpoints_service_ref"),
        sa.UniqueConstraint("service_ref", "method", "path", name="uq_endpoints_service_ref_method_path"),
    )
    op.create_table(
        "access_grants",
        _id(),
        sa.Column("provider", sa.String(1100), nullable=False),
        sa.Column("service_code", sa.String(255), nullable=False),
        sa.Column("subject", sa.String(1200), nullable=False),
        sa.Column("endpoint_ref", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_access_grants"),
        sa.ForeignKeyConstraint(["endpoint_ref"], ["endpoints.id"], name="fk_access_grants_endpoint_ref"),
    )
    # NULLs are distinct in a unique constraint, so whole-service rights get an index of their own.
    op.create_index(
        "uq_access_grants_service",
        "access_grants",
        ["provider", "service_code", "subject"],
        unique=True,
        sqlite_where=sa.text("endpoint_ref IS NULL"),
        postgresql_where=sa.text("endpoint_ref IS NULL"),
    )
    op.create_index(
        "uq_access_grants_endpoint",
        "access_grants",
        ["provider", "service_code", "subject", "endpoint_ref"],
        unique=True,
        sqlite_where=sa.text("endpoint_ref IS NOT NULL"),
        postgresql_where=sa.text("endpoint_ref IS NOT NULL"),
    )
    op.create_table(
        "local_groups",
        _id(),
        sa.Column("code", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_local_groups"),
        sa.UniqueConstraint("code", name="uq_local_groups_code"),
    )
    op.create_table(
        "local_group_members",
        _id(),
        sa.Column("group_ref", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.String(1100), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_local_group_members"),
        sa.ForeignKeyConstraint(["group_ref"], ["local_groups.id"], name="fk_local_group_members_group_ref"),
        sa.UniqueConstraint("group_ref", "client_id", name="uq_local_group_members_group_ref_client_id"),
    )
    op.create_table(
        "audit_trail",
        _id(),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.Column("correlation_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_trail"),
    )


def downgrade() -> None:
    """Drop every table of revision sc0001."""
    for table in (
        "audit_trail",
        "local_group_members",
        "local_groups",
        "access_grants",
        "endpoints",
        "services",
        "client_certificates",
        "clients",
        "change_counter",
    ):
        op.drop_table(table)
