"""Agent-side entry only: see agent.py (the controller side lives in controller/drivers/backup/)."""
