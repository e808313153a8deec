"""The public surface of controller.state is what we mean it to be (httpx style)."""

from __future__ import annotations

import controller.state


def test_exports() -> None:
    assert sorted(controller.state.__all__) == [
        "BackoffRecord",
        "Condition",
        "ConditionStatus",
        "CorruptStore",
        "Event",
        "NotAStore",
        "ReadOnlyStore",
        "Run",
        "SchemaTooNew",
        "Store",
        "StoreInUse",
        "SubscriptionRecord",
        "TransferRecord",
        "default_path",
    ]
    for name in controller.state.__all__:
        assert getattr(controller.state, name).__module__.startswith("controller.state") or name == "ConditionStatus"
