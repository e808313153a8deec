"""Entry point of the ``dns`` stack (Pulumi runs this file)."""

import dns_stack

dns_stack.main()
