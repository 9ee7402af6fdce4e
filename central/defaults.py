"""Where a centre process looks for its database and listens, unless told otherwise.

Shared by the server (:mod:`central.server`) and the command line
(:mod:`central.cli_base`), which must agree and must not import each other.
"""

DATABASE_ENV = "NYCKELFRI_CENTRAL_DB"  # SQLite path or postgresql:// DSN
DEFAULT_DATABASE = "./nyckelfri-central.db"
DEFAULT_PORT = 8443
