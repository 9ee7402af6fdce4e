"""The routine's binder on the web: server-rendered pages for the routine's principals.

Importing this package loads nothing; :mod:`central.web.db` holds the tables (sign-in
passwords and sessions, migration 0007), :mod:`central.web.app` the pages.
"""
