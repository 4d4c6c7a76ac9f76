"""The summary-GL close of one accounting period, as plain step functions over (zuora, erp, ledger).

A close run is a ledger row (:class:`~shared.ledger.models.CloseRun`) whose ``step`` names the
step to run next; each step is idempotent, records what it did in its typed state
(:mod:`.state`, stored in ``CloseRun.details[<step>]``) and returns a small result
(:mod:`.results`):

* ``Done(next_step)`` - the step is finished; ``next_step`` (or ``FINISHED``) is recorded as the
  run's step before anything else is enqueued;
* ``Wait(seconds)`` - not ready yet (a Zuora job is running, a rate limit, a transient
  failure); run the same step again after ``seconds`` (the worker turns this into
  ``self.retry(countdown=...)``, never a sleep);
* ``Stop(reason)`` - a person must act: the run becomes ``needs_attention`` with ``reason`` as
  its error, the reason goes to the run's timeline and to the notifier (through the notice
  outbox). Running the close again reopens the run at the stopped step as its next attempt
  (``post``/``mark``/``verify`` restart at ``check``, which re-validates and un-parks fixed
  entries).

A finished run is ``done`` (a dry run: ``dry_run``) and its step is ``FINISHED``.

Which module does what (each step module's docstring describes its steps):

======================  ======================================================================
module                  what it does
======================  ======================================================================
:mod:`.results`         the step names (``STEPS``, ``DRY_RUN_STEPS``, ``FINISHED``) and the
                        results: ``Done``, ``Wait``, ``Stop``, ``Stale``, ``StopClose``
:mod:`.state`           one pydantic model per step's state; ``step_state`` / ``save_state``
:mod:`.context`         ``CloseContext``; the run's entry rows; the command that reruns a close
:mod:`.hooks`           the named points the close passes (``reached``; no-op in production)
:mod:`.polling`         when to read a Zuora job again (``poll_delay``, ``next_poll_in``)
:mod:`.zuora_jobs`      steps 1-4: ``lookup``, ``trial_balance``, ``close_period``,
                        ``journal_run``
:mod:`.entries`         steps 5-6 and the dry run's last: ``fetch``, ``check``, ``discard``
:mod:`.post_and_mark`   steps 7-8: ``post``, ``mark`` (and the marker that marks while posting)
:mod:`.fanout`          many entries at a time within a budget (``each``, ``step_widths``)
:mod:`.transitions`     ``LateTransitions``: ``posted`` and ``marked`` committed in groups
:mod:`.journals`        the journal as stored when posted, and its totals per account
:mod:`.verification`    steps 9-10: ``verify``, ``reconcile``
:mod:`.driver`          one step per task under the close lock (``drive_step``, ``take_over``,
                        ``record_result``), ``open_close``, ``stuck_runs``, ``progress``
:mod:`.attempts`        the run's attempt: which one it is on, which one a resume drives, when
                        the attempt a caller follows has an outcome (``settled``)
:mod:`.notices`         what Finance is told: needs attention, or done
======================  ======================================================================

The close lock itself (one chain drives a period's close) is
:class:`shared.coordination.close_lock.CloseLock`; the Celery tasks are ``worker/tasks/close.py``.

Exactly once: per period, the close lock; per entry, the ledger's ``posting`` state (committed
before the ERP call) and the in-doubt lookup by natural key make a crash at any line harmless.
"""
