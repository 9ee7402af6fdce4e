"""Alembic migrations of the central store (configured in code: central.db.alembic_config)."""
