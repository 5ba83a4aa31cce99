"""``python -m zltrace._cli.bench``: the same as ``python -m zltrace bench``."""

from .cli import main

raise SystemExit(main())
