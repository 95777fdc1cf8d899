"""Bounded retries with exponential backoff for transient infrastructure errors."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class ServiceUnavailable(Exception):
    """A service stayed unreachable through every retry of a call. The message names the
    service and the call (shown on the failed run in the UI); the original error is the
    cause."""


def with_retries(
    fn: Callable[[], T],
    *,
    retry_on: tuple[type[BaseException], ...],
    what: str,
    attempts: int = 4,
    base_delay: float = 0.5,
    max_delay: float = 8.0,
) -> T:
    """Call ``fn``; on a transient error wait (0.5 s, 1 s, 2 s, …) and try again.

    After ``attempts`` tries ``ServiceUnavailable`` is raised (naming ``what``), so the
    run fails loudly and Dagster's run retry or the sensor's relaunch takes over. Each
    retry is logged as a warning, which a run stores as an event: a run that is still
    retrying is visibly alive (see the sensor's ghost-run watchdog).
    """
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except retry_on as exc:
            if attempt == attempts:
                first_line = (str(exc).strip().splitlines() or [""])[0][:200]
                raise ServiceUnavailable(
                    f"{what} failed after {attempts} attempts: {type(exc).__name__}"
                    + (f": {first_line}" if first_line else "")
                ) from exc
            delay = min(max_delay, base_delay * 2 ** (attempt - 1))
            log.warning(
                "%s failed (%s), attempt %d of %d; retrying in %.1fs",
                what,
                type(exc).__name__,
                attempt,
                attempts,
                delay,
            )
            time.sleep(delay)
    raise AssertionError("unreachable")


class CallTimedOut(Exception):
    pass


def bounded_call(fn: Callable[[], T], timeout: float, what: str) -> T:
    """Run ``fn`` in a daemon thread and give up after ``timeout`` seconds.

    Some kafka-python metadata calls wait without a deadline while the broker is
    down; a sensor tick must never hang, so its Kafka calls go through here.
    """
    result: dict[str, object] = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:
            result["error"] = exc

    t = threading.Thread(target=target, name=f"bounded:{what}", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise CallTimedOut(f"{what} did not answer within {timeout:.0f}s")
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result["value"]  # type: ignore[return-value]
