"""Entry point of the ``buckets`` stack (Pulumi runs this file)."""

import buckets_stack

buckets_stack.main()
