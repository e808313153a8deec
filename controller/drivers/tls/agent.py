"""The remote half of the tls driver: the ``tls`` entry of the agent (standard library
and ``controller.agent`` only: it runs on the server, from the zipapp).

* ``op: challenges``: write HTTP-01 files ``{user: {token: content}}`` under
  ``ACME_ROOT/<user>/.well-known/acme-challenge/`` (nginx serves them, no reload).
* ``op: apply``: one transaction (``controller.agent.transaction``: journaled, ``nginx
  -t`` once, one verified reload, rolled back on failure) over each subscription's
  certificate bundle and the TLS include of each site, bundle first (a file never names
  a certificate that is not there yet, whenever the agent is killed); includes of sites
  the subscription no longer has are pruned in it. Then the challenge directories of
  ``clear`` are emptied.
* ``op: check``: drift of the installed files, one pass.
"""

from __future__ import annotations

import os
import shutil

from controller.agent import check, files, jobs, transaction

ACME_ROOT = "/var/lib/tenantctl-acme"


def challenge_dir(user: str) -> str:
    if not user.isalnum():
        raise ValueError(f"not a user: {user!r}")
    return os.path.join(ACME_ROOT, user, ".well-known", "acme-challenge")


def challenges(job: jobs.Job) -> jobs.Outcome:
    os.makedirs(ACME_ROOT, mode=0o755, exist_ok=True)
    os.chmod(ACME_ROOT, 0o755)
    for user, tokens in job.put.items():
        d = challenge_dir(user)
        os.makedirs(d, mode=0o755, exist_ok=True)
        for token, content in tokens.items():
            if "/" in token or token.startswith("."):
                raise ValueError(f"not a token: {token!r}")
            files.write(os.path.join(d, token), content.encode(), 0o644)
    return jobs.Outcome(jobs.VERSION)


def handle(job: jobs.Job, stage: str) -> jobs.Outcome:
    if job.op == "challenges":
        return challenges(job)
    if job.op == "check":
        return jobs.Outcome(jobs.VERSION, drift=check.drift(job.expect))
    out = transaction.Transaction(job, stage).run()
    for user in job.clear:
        challenge_dir(user)  # refuses what is not a user name
        shutil.rmtree(os.path.join(ACME_ROOT, user), ignore_errors=True)
    return out
