"""The desired state: every validated document, indexed by kind and name."""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.model import kinds
from controller.model.loader import Document


@dataclass
class DesiredState:
    """Typed views of the documents; ``docs`` keeps their origin for error messages."""

    regions: dict[str, kinds.RegionSpec] = field(default_factory=dict)
    servers: dict[str, kinds.ServerSpec] = field(default_factory=dict)
    plans: dict[str, kinds.PlanBody] = field(default_factory=dict)
    addons: dict[str, kinds.PlanBody] = field(default_factory=dict)
    customers: dict[str, kinds.CustomerSpec] = field(default_factory=dict)
    subscriptions: dict[str, kinds.SubscriptionSpec] = field(default_factory=dict)
    docs: dict[tuple[str, str], Document] = field(default_factory=dict)

    def releases(self) -> dict[str, kinds.Release]:
        """Server -> the Debian release it runs (its PHP, MariaDB, PostgreSQL versions)."""
        return {name: spec.release for name, spec in self.servers.items()}

    def table(self, kind: str) -> dict[str, kinds.Strict]:
        return {  # type: ignore[return-value]
            "Region": self.regions,
            "Server": self.servers,
            "ServicePlan": self.plans,
            "AddOnPlan": self.addons,
            "Customer": self.customers,
            "Subscription": self.subscriptions,
        }[kind]
