"""``python -m central`` is the ``nyckelfri-central`` command."""

from central.cli import main

main()
