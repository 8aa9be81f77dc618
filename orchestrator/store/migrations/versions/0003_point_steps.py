"""Per-point steps run by Celery workers: claim, lease and answer of each (run, point, step)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "point_steps",
        sa.Column("run_id", sa.String(40), nullable=False),
        sa.Column("point", sa.String(255), nullable=False),
        sa.Column("step", sa.String(16), nullable=False),
        sa.Column("worker", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("answer", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_point_steps_run_id_runs"),
        sa.PrimaryKeyConstraint("run_id", "point", "step", name="pk_point_steps"),
    )


def downgrade() -> None:
    op.drop_table("point_steps")
