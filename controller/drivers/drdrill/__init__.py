"""Agent-side entry only: see agent.py (the controller side is controller/drivers/backup/drdrill.py)."""
