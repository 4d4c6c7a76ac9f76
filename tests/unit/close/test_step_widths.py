"""How many entries the post and the mark step keep in flight, from a connection's API limits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.close.fanout import MAX_CONCURRENCY, step_widths


@pytest.mark.parametrize(
    ("zuora", "erp", "expected"),
    [
        (20, 2, (4, 20)),  # an Acumatica licence of 2: two entries on the ERP while two are on Zuora
        (20, 1, (2, 20)),
        (20, 32, (MAX_CONCURRENCY, 20)),
        (3, 10, (13, 3)),  # Zuora is the scarcer: the ERP's requests plus Zuora's
        (20, None, (1, 20)),  # the file export writes one entry at a time; marking is Zuora only
        (1000, 1000, (MAX_CONCURRENCY, MAX_CONCURRENCY)),
    ],
)
def test_widths_follow_the_scarcer_api_and_never_pass_the_cap(zuora, erp, expected):
    assert step_widths(zuora, erp) == expected


@given(zuora=st.integers(1, 500), erp=st.integers(1, 500))
def test_posting_keeps_the_erp_busy_without_queueing_more_than_both_apis_hold(zuora, erp):
    post, mark = step_widths(zuora, erp)
    assert 1 <= post <= MAX_CONCURRENCY and 1 <= mark <= MAX_CONCURRENCY
    assert post >= min(erp, MAX_CONCURRENCY)  # never fewer entries than ERP requests allowed
    assert post <= erp + zuora  # never more than both APIs could hold at once
    assert mark == min(zuora, MAX_CONCURRENCY)
