"""knd.netns.nsfd.Pending: one hop answer, delivered once, awaited with a bound."""

from __future__ import annotations

import threading

import pytest

from knd.netns import nsfd
from knd.netns.errors import NetnsOpenError


def test_an_answer_is_kept_and_an_error_raised_on_every_call() -> None:
    done: nsfd.Pending[int] = nsfd.Pending()
    threading.Timer(0.01, done.deliver, (True, 7)).start()
    assert done.result() == 7
    assert done.result() == 7
    failed: nsfd.Pending[int] = nsfd.Pending()
    failed.deliver(False, ValueError("factory failed"))
    for _ in range(2):
        with pytest.raises(ValueError, match="factory failed"):
            failed.result()


def test_a_hop_thread_that_never_answers_fails_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bounded: a lost request is a NetnsOpenError after HOP_TIMEOUT_S, never a hung hook."""
    monkeypatch.setattr(nsfd, "HOP_TIMEOUT_S", 0.05)
    lost: nsfd.Pending[int] = nsfd.Pending()
    for _ in range(2):
        with pytest.raises(NetnsOpenError, match=r"did not answer within 0\.05 s"):
            lost.result()
    lost.deliver(True, 1)  # too late: the verdict stands
    with pytest.raises(NetnsOpenError):
        lost.result()
