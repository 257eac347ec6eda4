"""The tables as the older `create_all` made them: the bank's (customers, cards,
transactions, disputes, handoffs) and the agent console's (console_*).

Adoption: a database made by `create_all` before migrations existed has some or all of
these tables and no alembic_version. This revision creates only the tables that are
missing (with their indexes) and leaves the others and their rows as they are; a table
that exists is the same as the one below (create_all made it from the same models).

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""
from typing import Iterable, Tuple

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _create(name: str, *elements: sa.schema.SchemaItem, indexes: Iterable[Tuple[str, str]] = ()) -> None:
    """CREATE TABLE name and its indexes ((index, column)), unless the table exists."""
    if sa.inspect(op.get_bind()).has_table(name):
        return
    op.create_table(name, *elements)
    for index, column in indexes:
        op.create_index(index, name, [column], unique=False)


def upgrade() -> None:
    _create(
        "customers",
        sa.Column("customer_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("email", sa.String(length=200), nullable=True),
        sa.Column("balance_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.PrimaryKeyConstraint("customer_id"),
    )
    _create(
        "handoffs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sender_id", sa.String(length=255), nullable=False),
        sa.Column("customer_id", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=300), nullable=False),
        sa.Column("requested_at", sa.DateTime(), nullable=False),
        sa.Column("released_at", sa.DateTime(), nullable=True),
        sa.Column("released_by", sa.String(length=120), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        indexes=[("ix_handoffs_sender_id", "sender_id")],
    )
    _create(
        "cards",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.String(length=32), nullable=False),
        sa.Column("last4", sa.String(length=4), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("replacement_ordered", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.customer_id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("customer_id", "last4", name="uq_cards_customer_last4"),
        indexes=[("ix_cards_customer_id", "customer_id")],
    )
    _create(
        "disputes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reference", sa.String(length=32), nullable=True),
        sa.Column("customer_id", sa.String(length=32), nullable=False),
        sa.Column("transaction_reference", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("sender_id", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.customer_id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("reference"),
        indexes=[("ix_disputes_customer_id", "customer_id"),
                 ("ix_disputes_transaction_reference", "transaction_reference")],
    )
    _create(
        "transactions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reference", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("counterparty", sa.String(length=120), nullable=False),
        sa.Column("card_last4", sa.String(length=4), nullable=True),
        sa.Column("international", sa.Boolean(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_date", sa.Date(), nullable=True),
        sa.Column("detail", sa.String(length=300), nullable=True),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.customer_id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("reference"),
        indexes=[("ix_transactions_customer_id", "customer_id")],
    )
    _create(
        "console_agents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=120), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    _create(
        "console_claims",
        sa.Column("handoff_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("sender_id", sa.String(length=255), nullable=False),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("claimed_at", sa.DateTime(), nullable=True),
        sa.Column("first_reply_at", sa.DateTime(), nullable=True),
        sa.Column("replies", sa.Integer(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.PrimaryKeyConstraint("handoff_id"),
        indexes=[("ix_console_claims_sender_id", "sender_id")],
    )
    _create(
        "console_notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sender_id", sa.String(length=255), nullable=False),
        sa.Column("handoff_id", sa.Integer(), nullable=True),
        sa.Column("author", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        indexes=[("ix_console_notes_sender_id", "sender_id")],
    )
    _create(
        "console_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("agent", sa.String(length=64), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("token_hash"),
        indexes=[("ix_console_sessions_agent", "agent")],
    )


def downgrade() -> None:
    for name in ("console_sessions", "console_notes", "console_claims", "console_agents",
                 "transactions", "disputes", "cards", "handoffs", "customers"):
        op.drop_table(name)
