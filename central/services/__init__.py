"""The routine's services at the centre, one per aggregate, each checking access itself.

Every public method takes the acting principal (``actor``: anything with ``name``,
``role`` and ``unit``) and decides, with :mod:`central.cases.access`, whether it may do
what it asks, so the HTTP API, the CLI and the web pages are thin callers that cannot
differ:

- :mod:`.cases`: cases of the four flows, their steps and audit trail, documentation texts;
- :mod:`.implementations`: the providers' and alarm group's implementations;
- :mod:`.inbox`: the "Digitala LÅS" inbox;
- :mod:`.binder`: the fitters' binder of jobs, a fitter's jobs and checkpoints;
- :mod:`.schedule`: the shared schedule (bookings, double bookings refused);
- :mod:`.keys`: the key register, receipts and key uses;
- :mod:`.tags`: NFC tags and the providers' stock;
- :mod:`.locks`: locks in the lock system and their secrets, verifications;
- :mod:`.reports`: alerts (what someone must act on now) and the reports;
- :mod:`.principals`: principals by name.

:class:`central.cases.store.RoutineStore` composes them over one
:class:`~central.services.base.Core` (the central store, the units, the key policy).
"""
