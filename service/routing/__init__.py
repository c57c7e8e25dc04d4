"""Traffic routing: assignment of units to arms, arm policies, and the per-request router."""
