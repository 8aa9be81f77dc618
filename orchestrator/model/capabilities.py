"""What an enforcement point can express: the compiler's view of a target platform.

Capabilities are plain data.  A driver declares its defaults; the inventory
may override limits per point (an AWS account with a raised quota, a switch
with a small TCAM).  The compiler reads them to pick the right semantics
(first-match vs. allow-only), to split rules into the shapes a platform
accepts, and to refuse — at compile time, with a clear message — what a
platform cannot hold.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.model.rules import Action, Direction, Ordering


class Capabilities(BaseModel):
    """Semantics and limits of one enforcement point."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    actions: frozenset[Action] = frozenset({Action.PERMIT, Action.DENY})
    ordering: Ordering = Ordering.FIRST_MATCH
    directions: frozenset[Direction] = frozenset({Direction.INGRESS, Direction.EGRESS})
    stateful: bool = True
    ipv6: bool = True
    logging: bool = True
    monitor_mode: bool = True
    monitor_by_log: bool = Field(default=False, description=(
        "monitor mode marks would-deny rules by logging them (permit + log: switch ACLs), so a rule's own log "
        "flag is not kept while monitoring"))
    max_rules: int | None = Field(
        default=None, ge=1, description="rules per direction (per family if counted separately)"
    )
    count_families_separately: bool = Field(
        default=False, description="IPv4 and IPv6 rules have separate quotas (AWS)"
    )
    max_prefixes_per_rule: int | None = Field(default=None, ge=1, description="addresses per side of one rule")
    max_port_ranges_per_rule: int | None = Field(default=None, ge=1, description="port ranges per side of one rule")
    mixed_families_per_rule: bool = Field(default=True, description="one rule may hold IPv4 and IPv6 prefixes")
    scope_implicit: bool = Field(
        default=False,
        description="rules cannot name the protected side: it is always all members (AWS SG)",
    )
    icmp_types: bool = Field(default=True, description="rules can match an ICMP type/code (Azure: no)")
    tcp_established: bool = Field(default=False, description=(
        "rules can match TCP segments with ACK or RST set (IOS/NX-OS/EOS `established`, Junos `tcp-established`): "
        "a stateless point lets TCP replies back with them instead of port-swapped permits"))
    protocols: frozenset[int] | None = Field(
        default=None, description="IP protocol numbers rules can name (None: any); 'any' is always expressible"
    )
    atomic_replace: bool = False
    native_confirm: bool = False

    @property
    def allow_only(self) -> bool:
        return Action.DENY not in self.actions

    def merged(self, overrides: dict[str, object]) -> Capabilities:
        """These capabilities with inventory overrides applied (validated)."""
        return Capabilities.model_validate({**self.model_dump(), **overrides})


GENERIC = Capabilities()
