"""Alembic revisions of the central store, oldest first; never edit one that has shipped."""
