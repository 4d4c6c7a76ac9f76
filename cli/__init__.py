"""The `ledgerbridge` command: what engineers run from a shell (rendering only; the work is in shared/)."""
