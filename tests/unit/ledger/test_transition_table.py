"""The sync-record transition table, as a specification (no database)."""

from __future__ import annotations

import itertools

import pytest

from shared.ledger import states
from shared.ledger.errors import IllegalTransition

P, G, D, M, F, K = "pending", "posting", "posted", "marked", "failed", "parked"

EXPECTED_ALLOWED = {
    (P, G),
    (G, D),
    (D, M),
    (P, F),
    (G, F),
    (F, P),
    (P, K),
    (G, K),
    (F, K),
    (K, P),
}
EXPECTED_FORCE_ONLY = {(D, G), (M, G)}
EXPECTED_IN_DOUBT_ONLY = {(G, P)}

ALL_PAIRS = list(itertools.product(states.STATES, repeat=2))


def test_states_are_the_six_of_the_architecture():
    assert set(states.STATES) == {P, G, D, M, F, K}


def test_transition_table_is_exactly_the_specified_edges():
    assert states.ALLOWED == EXPECTED_ALLOWED
    assert states.FORCE_ONLY == EXPECTED_FORCE_ONLY
    assert states.IN_DOUBT_ONLY == EXPECTED_IN_DOUBT_ONLY


@pytest.mark.parametrize(("old", "new"), ALL_PAIRS)
@pytest.mark.parametrize(("force", "in_doubt"), [(False, False), (True, False), (False, True), (True, True)])
def test_is_allowed_matches_table_for_every_pair(old, new, force, in_doubt):
    expected = (
        (old, new) in EXPECTED_ALLOWED
        or (force and (old, new) in EXPECTED_FORCE_ONLY)
        or (in_doubt and (old, new) in EXPECTED_IN_DOUBT_ONLY)
    )
    assert states.is_allowed(old, new, force=force, in_doubt=in_doubt) is expected


@pytest.mark.parametrize("state", states.STATES)
def test_check_transition_to_same_state_is_always_illegal(state):
    with pytest.raises(IllegalTransition, match=f"illegal transition {state} -> {state}"):
        states.check_transition(state, state, force=True, in_doubt=True)


def test_check_transition_posted_to_posting_without_force_names_replay_force():
    with pytest.raises(IllegalTransition, match=r"posted -> posting for invoice:8ad0 \(.*replay --force"):
        states.check_transition(D, G, subject="invoice:8ad0")


def test_check_transition_posting_to_pending_names_resume_in_doubt():
    with pytest.raises(IllegalTransition, match="only resume_in_doubt"):
        states.check_transition(G, P)


def test_check_transition_from_marked_lists_no_normal_successor():
    with pytest.raises(IllegalTransition, match=r"marked -> failed for record \(from marked only: nothing\)"):
        states.check_transition(M, F)


def test_check_transition_lists_allowed_successors():
    with pytest.raises(IllegalTransition, match=r"\(from pending only: failed, parked, posting\)"):
        states.check_transition(P, M)
