"""``python -m sfd.training`` / ``accelerate launch -m sfd.training``: see `sfd.training.cli`."""

from .cli import main

raise SystemExit(main())
