"""`python -m lamrunner` is the `lamrunner` command."""

from .cli import main

raise SystemExit(main())
