"""The routine at the centre: cases of flows 2a/2b/3a/3b, binder, schedule, keys, tags.

:class:`central.cases.store.RoutineStore` keeps what :mod:`routine` decides: it
applies the routine's state machines to cases, records every step in an
append-only audit trail, carries out the steps' effects (documentation texts, the
"Digitala LÅS" inbox, the fitters' binder and shared schedule, the key register,
NFC tags, the clients' lock status in the reference data) and enforces who may do
what, per role and per unit, for the HTTP API and the CLI alike. Alerts and reports
(:mod:`central.cases.alerts`, :mod:`central.cases.reports`) are computed from the
same data with the routine's calendar and deadlines.

Kept import-light on purpose: the schema migration imports :mod:`central.cases.db`.
"""
