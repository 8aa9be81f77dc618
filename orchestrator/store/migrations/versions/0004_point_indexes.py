"""Indexes by point on the plans and results: a point's history, the rules its last changes put in place (the
empty-group guard), and each point's stored plans from a time on (hit and flow-log evidence) are read by point
and time, which without them scans every run's rows."""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_point_plans_point", "point_plans", ["point", "recorded_at"])
    op.create_index("ix_point_results_point", "point_results", ["point", "updated_at"])


def downgrade() -> None:
    op.drop_index("ix_point_results_point", table_name="point_results")
    op.drop_index("ix_point_plans_point", table_name="point_plans")
