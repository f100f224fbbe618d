"""``python -m defectspace``: the command line."""

from __future__ import annotations

from defectspace.cli import main

raise SystemExit(main())
