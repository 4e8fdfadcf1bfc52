"""``python -m service.cli``: the same app as the ``window-advisor`` script."""

from service.cli import main

main()
