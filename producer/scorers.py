"""One scorer per reward: the scorer fingerprints live workers announce, and the ones a run is pinned to.

A worker announces ``fingerprints: {reward: fingerprint}`` with its heartbeat
(rewardq.workers.runtime.heartbeat);
the fingerprint is the one the audit stores in ``scores.scorer`` (``Reward.fingerprint``: kind, version,
a hash of the options and identity). A worker from before fingerprints were announced counts as one
whose fingerprint is unknown (None): it differs from every known one.

A run's first batch pins, per reward, the fingerprint the workers serve it with in the Redis hash
``rewardq:run:<run_id>:scorers`` (HSETNX: the first client of the run wins, and a trainer restarted to
resume the run finds the pins of its earlier process). A later batch whose reward is served with another
fingerprint is refused (ScorerChangedError) unless the caller opts in, which re-pins the run. The hash
expires ``RUN_SCORERS_TTL_S`` after the last client process pinned the run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rewardq.wire.announcement import Announcement
from rewardq.wire.errors import ScorerChangedError, ScorerMismatchError
from rewardq.wire.keys import run_scorers_key

RUN_SCORERS_TTL_S = 30 * 86400
Scorers = dict[str, dict[str | None, list[str]]]  # reward -> fingerprint (None: not announced) -> nodes


def short(fingerprint: str | None) -> str:
    """A fingerprint as a table shows it: kind@version and the first 6 hex digits; '?' when unknown."""
    if fingerprint is None:
        return "?"
    head, _, digest = fingerprint.partition(":")
    return f"{head}:{digest[:6]}" if digest else fingerprint


def _named(fingerprint: str | None) -> str:
    return fingerprint or "none announced (a worker from before fingerprints)"


def _listed(found: Mapping[str | None, list[str]]) -> str:
    """Each fingerprint with the nodes that serve it, for an error line."""
    return "; ".join(f"{_named(fp)} on {', '.join(sorted(nodes))}" for fp, nodes in found.items())


def scorers_of(announcements: Iterable[Announcement]) -> Scorers:
    """For each reward these workers serve, each fingerprint it is served with and by which nodes."""
    found: Scorers = {}
    for entry in announcements:
        for reward in entry.rewards:
            found.setdefault(reward, {}).setdefault(entry.fingerprints.get(reward), []).append(entry.node)
    return found


def served_fingerprint(scorers: Scorers, reward: str) -> str | None:
    """The one fingerprint live workers serve ``reward`` with (None: not announced or not served);
    raises ScorerMismatchError when they serve it with several."""
    found = scorers.get(reward, {})
    if len(found) <= 1:
        return next(iter(found), None)
    raise ScorerMismatchError(
        f"reward {reward!r} is served by live workers with different scorers ({_listed(found)}); nothing was "
        "enqueued: stop the workers of all but one scorer (rewardq status lists each worker's fingerprints), "
        "or give the changed reward a new name"
    )


def refuse_conflicts(announcements: Iterable[Announcement], node: str, own: Mapping[str, str | None]) -> None:
    """Raise ScorerMismatchError when another live worker than ``node`` serves one of ``own``'s rewards
    with another fingerprint (or announces none): a worker about to start then refuses."""
    others = scorers_of(a for a in announcements if a.node != node)
    for reward, fingerprint in own.items():
        theirs = {fp: nodes for fp, nodes in others.get(reward, {}).items() if fp != fingerprint}
        if theirs:
            raise ScorerMismatchError(
                f"reward {reward!r} is served by live workers with scorer {_listed(theirs)}, and this worker "
                f"would score it with {fingerprint}: give the changed reward a new name, or stop the old "
                "workers first"
            )


class RunPins:
    """The fingerprints runs are pinned to, read from and written to Redis once per run and reward by
    this client process, then kept here."""

    def __init__(self) -> None:
        self._pinned: dict[tuple[str, str], str] = {}

    def check(
        self, redis: Any, run_id: str, served: Mapping[str, str | None], *, allow_change: bool = False
    ) -> None:
        """Pin each reward of ``served`` whose fingerprint is known to ``run_id`` if the run has no pin
        for it yet; raise ScorerChangedError for one whose pin differs (re-pin it with ``allow_change``)."""
        known = {reward: fp for reward, fp in served.items() if fp is not None}
        unread = [reward for reward in known if (run_id, reward) not in self._pinned]
        if unread:
            key = run_scorers_key(run_id)
            pipe = redis.pipeline(transaction=True)  # pins and reads them in one step
            for reward in unread:
                pipe.hsetnx(key, reward, known[reward])
            pipe.hmget(key, unread)
            pipe.expire(key, RUN_SCORERS_TTL_S)
            *_, pins, _ = pipe.execute()
            for reward, pin in zip(unread, pins, strict=True):
                self._pinned[(run_id, reward)] = pin.decode()
        for reward, fp in known.items():
            pinned = self._pinned[(run_id, reward)]
            if pinned == fp:
                continue
            if not allow_change:
                raise ScorerChangedError(run_id, reward, pinned, fp)
            redis.hset(run_scorers_key(run_id), reward, fp)
            self._pinned[(run_id, reward)] = fp
