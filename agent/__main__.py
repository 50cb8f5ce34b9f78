"""`python -m agent` is the same as the `edge-agent` command."""

from agent.cli import main

raise SystemExit(main())
