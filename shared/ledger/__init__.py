"""The ledger: the one source of truth about what has been synced (see ARCHITECTURE.md).

Tables in :mod:`.models`, state changes in :mod:`.states` (the only writer of a record's state),
the flows' repository in :mod:`.repo`, engines in :mod:`.db`, migrations in :mod:`.migrate`,
encryption of connection secrets in :mod:`.secrets`.
"""
