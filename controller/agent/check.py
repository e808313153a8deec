"""Drift: compare the server with what the controller expects (digests, users, homes),
every subscription of the batch in one pass."""

from __future__ import annotations

import os
import pwd

from controller.agent import files, jobs


def drift(expect: list[jobs.Expect]) -> dict[str, str]:
    """``{name: what differs}`` for the subscriptions that drifted."""
    out: dict[str, str] = {}
    users: set[str] | None = None
    for e in expect:
        what = []
        if e.user is not None:
            if users is None:
                users = {p.pw_name for p in pwd.getpwall()}
            if e.user.name not in users:
                what.append(f"user {e.user.name} missing")
            if not os.path.isdir(e.user.home):
                what.append(f"home {e.user.home} missing")
        for path, want in e.expect.items():
            data = files.read(path)
            if want is None and data is not None:
                what.append(f"{path} should not exist")
            elif want is not None and data is None:
                what.append(f"{path} missing")
            elif want is not None and data is not None and files.digest(data) != want:
                what.append(f"{path} changed")
        if what:
            out[e.name] = "; ".join(what)
    return out
