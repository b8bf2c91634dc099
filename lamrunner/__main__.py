"""`python -m lamrunner` is the `lamrunner` command."""

from lamrunner.cli.main import main

raise SystemExit(main())
