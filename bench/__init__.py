"""The benchmark: ledgerbridge measured side by side with the obvious script, against the sandboxes.

Run by ``scripts/bench`` (``python -m bench``); not part of the product wheel.
"""
