"""``python -m relaybox`` is the ``relaybox`` command."""

from relaybox.cli import main

main()
