"""Entry point of the ``servers`` stack (Pulumi runs this file)."""

import servers_stack

servers_stack.main()
