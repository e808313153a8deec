"""Web and PHP provisioning on the servers (issue 3): system users, web spaces, nginx
vhosts, PHP-FPM pools, suspension and deletion.

``render`` is pure (files from slices), ``agent`` is the stdlib-only program that runs
ON the server once per batch, ``drivers`` holds ``WebDriver`` and ``PhpDriver``. What
does not belong here: databases, DNS, TLS (their own concerns), how batches are formed
(``reconcile``).
"""

from controller.drivers.hosting.drivers import PhpDriver, WebDriver

__all__ = ["PhpDriver", "WebDriver"]
