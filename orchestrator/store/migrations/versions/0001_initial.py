"""Initial state store schema: runs, plans, checkpoints, results, audit events, point locks."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _per_point(table: str, *columns: sa.Column[object]) -> None:
    """A table keyed by (run, point) with the given columns."""
    op.create_table(
        table,
        sa.Column("run_id", sa.String(40), nullable=False),
        sa.Column("point", sa.String(255), nullable=False),
        *columns,
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=f"fk_{table}_run_id_runs"),
        sa.PrimaryKeyConstraint("run_id", "point", name=f"pk_{table}"),
    )


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("ticket", sa.String(255), nullable=True),
        sa.Column("origin_host", sa.String(255), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        _ts("started_at"),
        _ts("finished_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
    )
    op.create_index("ix_runs_kind", "runs", ["kind"])
    op.create_index("ix_runs_started_at", "runs", ["started_at"])
    _per_point("point_plans", sa.Column("plan", sa.JSON(), nullable=False), _ts("recorded_at"))
    _per_point("checkpoints", sa.Column("checkpoint", sa.JSON(), nullable=False), _ts("recorded_at"))
    _per_point(
        "point_results",
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        _ts("updated_at"),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        _ts("at"),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("run_id", sa.String(40), nullable=True),
        sa.Column("point", sa.String(255), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_audit_events_run_id_runs"),
        sa.PrimaryKeyConstraint("id", name="pk_audit_events"),
    )
    op.create_index("ix_audit_events_run_id", "audit_events", ["run_id"])
    op.create_table(
        "point_locks",
        sa.Column("point", sa.String(255), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        _ts("acquired_at"),
        _ts("expires_at"),
        sa.PrimaryKeyConstraint("point", name="pk_point_locks"),
    )


def downgrade() -> None:
    for table in ("point_locks", "audit_events", "point_results", "checkpoints", "point_plans", "runs"):
        op.drop_table(table)
