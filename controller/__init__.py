"""tenantctl: a reconciliation controller for a multi-region hosting business.

Layers, outermost first (an import may only go down this list)::

    cli | operator  >  reconcile  >  drivers  >  effective | placement  >  model  >  errors

Only ``drivers`` (and the ``state`` store they and ``reconcile`` share) do I/O.
"""

__version__ = "0.1.0"
