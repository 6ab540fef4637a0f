"""``python -m viz``: the feature-map visualiser's command line."""

from .cli import main

raise SystemExit(main())
