"""The port through which a client with no broker reaches a worker in its own process.

``rewardq`` never imports the workers: what it needs of a local worker is declared here
(:class:`LocalWorker`), and the worker side registers its implementation as an entry point of the group
``rewardq.local_worker`` (``rewardq[worker]``'s embedded worker). Found and loaded only when a client
without a broker first needs it; missing, it is :class:`~rewardq.wire.errors.EmbeddedUnavailable`.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Protocol

from rewardq.wire.errors import EmbeddedUnavailable
from rewardq.wire.settings import Settings

if TYPE_CHECKING:
    from celery import Celery

ENTRY_POINT_GROUP = "rewardq.local_worker"
ENTRY_POINT_NAME = "embedded"


class LocalWorker(Protocol):
    """A worker serving every configured reward in this process, on the in-memory broker."""

    @property
    def app(self) -> Celery:
        """The Celery app to send tasks through and gather results from."""
        ...

    def fingerprint(self, reward: str) -> str:
        """The scorer fingerprint ``reward`` is scored with."""
        ...

    def stop(self) -> None:
        """Stop consuming and close what the worker holds."""
        ...


class StartLocalWorker(Protocol):
    """What the entry point names: started with the client's settings, ready when it returns."""

    def __call__(self, settings: Settings) -> LocalWorker: ...


def start_local_worker(settings: Settings) -> LocalWorker:
    """Start the local worker registered under ``rewardq.local_worker``."""
    found = entry_points(group=ENTRY_POINT_GROUP, name=ENTRY_POINT_NAME)
    try:
        if not found:
            raise ImportError(f"no {ENTRY_POINT_GROUP!r} entry point {ENTRY_POINT_NAME!r} is installed")
        start: StartLocalWorker = next(iter(found)).load()
    except ImportError as e:
        raise EmbeddedUnavailable(
            "no broker configured (REWARDQ_BROKER_URL) and the embedded worker needs the worker extras: "
            f"pip install 'rewardq[worker]' ({e})"
        ) from e
    return start(settings)
