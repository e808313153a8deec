"""Nightly backups (BKP-1..7): restic repositories per region, copies, rotation, verification, restore."""
