"""``python -m agent`` is the ``nyckelfri`` command."""

from agent.cli import main

main()
