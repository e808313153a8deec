"""The ``tenantctl`` command line: a thin front-end over ``reconcile``.

Belongs here: argument parsing, output formatting (tables, JSON), exit codes.
Not here: any decision about what a subscription should be.
"""
