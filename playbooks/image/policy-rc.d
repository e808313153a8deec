#!/bin/sh
# No service may start while packages are installed (exit 101 = action forbidden).
exit 101
