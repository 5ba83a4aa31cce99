"""The raw log's memory pool and its worker's wake discipline.

Unit tests drive the caller's side (``RawInlet``) with a real queue and no worker thread, so
what they check is exact; the tracer tests run real traffic against a loopback server and
observe the worker through its counters, never through timing.
"""

from __future__ import annotations

import hashlib
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any

import urllib3
from support.server import Request, ScriptedServer, Step, response

import zltrace
from zltrace._pipeline.events import DATA, SEND, START
from zltrace._pipeline.rawpool import RawInlet
from zltrace._pipeline.sizes import EVENT_COST

POOL = 64 * 1024  # Config's smallest memory_pool_size
SLOT = 2048


def _inlet(pool: int = POOL, buffer_size: int = 100) -> tuple[RawInlet, queue.SimpleQueue[Any]]:
    q: queue.SimpleQueue[Any] = queue.SimpleQueue()
    return RawInlet(q.put, pool, buffer_size, slot=SLOT, pooled=frozenset((SEND, DATA))), q


def _drain(q: queue.SimpleQueue[Any]) -> list[Any]:
    return [q.get_nowait() for _ in range(q.qsize())]


def _wait(cond: Any, what: str) -> None:
    """Poll ``cond()`` (bounded: a correctness wait, not a timing assertion)."""
    deadline = time.monotonic() + 20
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_small_payloads_are_copied_into_the_pool_and_the_callers_bytes_let_go() -> None:
    """A small payload travels as a view of the pool, equal to it; the queue holds no
    reference to the caller's ``bytes``; a payload over a slot goes by reference."""
    inlet, q = _inlet()
    data = bytes(range(256)) * 4
    refs = sys.getrefcount(data)
    inlet.put((DATA, 1, data, 5))
    inlet.put((SEND, 1, b"GET / HTTP/1.1\r\n\r\n", 6))
    big = b"x" * (SLOT + 1)
    inlet.put((DATA, 1, big, 7))
    [ev, send, by_ref] = _drain(q)
    assert isinstance(ev[2], memoryview) and ev[2] == data and ev[:2] == (DATA, 1) and ev[3] == 5
    assert sys.getrefcount(data) == refs
    assert isinstance(send[2], memoryview) and bytes(send[2]) == b"GET / HTTP/1.1\r\n\r\n"
    assert by_ref[2] is big and inlet.ref_bytes == len(big) + EVENT_COST


def test_only_the_pooled_kinds_are_copied() -> None:
    """By default request bytes are copied and response bytes go by reference (measured)."""
    q: queue.SimpleQueue[Any] = queue.SimpleQueue()
    inlet = RawInlet(q.put, POOL, 100)
    data = b"abc"
    inlet.put((DATA, 1, data, 0))
    inlet.put((SEND, 1, data, 0))
    [read, sent] = _drain(q)
    assert read[2] is data and len(read) == 4
    assert isinstance(sent[2], memoryview) and sent[2] == data


def test_released_slots_are_reused_and_a_full_pool_goes_by_reference() -> None:
    """The pool's slots come round again once the worker released them; with none free a
    payload goes by reference (counted, the worker woken)."""
    inlet, q = _inlet()
    assert inlet.slots == POOL // SLOT
    for i in range(inlet.slots):
        inlet.put((DATA, 1, b"%06d" % i, i))
    first = _drain(q)
    assert all(isinstance(ev[2], memoryview) for ev in first)
    assert inlet.in_use == POOL
    inlet.wake.clear()
    overflow = b"over"
    inlet.put((DATA, 1, overflow, 0))
    [full] = _drain(q)
    assert full[2] is overflow and len(full) == 4 and inlet.overflows == 1
    assert inlet.wakes["pool_full"] == 1 and inlet.wake.is_set()
    inlet.release(ev[4] for ev in first)
    assert inlet.in_use == 0
    for i in range(inlet.slots):
        inlet.put((DATA, 2, b"%06d" % -i, i))
    again = _drain(q)
    assert inlet.overflows == 1
    # Same memory, new contents; the first round's views now show the second's.
    assert [bytes(ev[2]) for ev in again] == [b"%06d" % -i for i in range(inlet.slots)]
    assert all(ev[2].obj is first[0][2].obj for ev in again)
    assert sorted(ev[4] for ev in again) == list(range(inlet.slots))


def test_the_slot_given_back_last_is_taken_next() -> None:
    """Hot memory is reused: a steady flow of small payloads, each released before the next,
    touches one slot, not the whole pool; out-of-order releases free exactly what they say."""
    inlet, q = _inlet()
    used = set()
    for i in range(100):
        inlet.put((SEND, 1, b"GET / HTTP/1.1\r\n\r\n", i))
        [ev] = _drain(q)
        used.add(ev[4])
        inlet.release([ev[4]])
    assert used == {0} and inlet.in_use == 0
    for i in range(4):
        inlet.put((DATA, 1, b"abc", i))
    evs = _drain(q)
    inlet.release([evs[1][4], evs[3][4]])
    assert inlet.in_use == 2 * SLOT
    inlet.put((DATA, 1, b"xyz", 9))
    [nxt] = _drain(q)
    assert nxt[4] == evs[3][4]


def test_the_worker_is_woken_at_the_marks_and_not_per_event() -> None:
    """Callers wake the worker once ``buffer_size`` exchanges started, once the pool is half
    full and once half the pool passed by reference -- and for nothing else."""
    inlet, q = _inlet(buffer_size=5)
    for ex in range(1, 12):
        inlet.put((START, ex, 0, ex, 0, "http", "h", 80, "GET", "/"))
        inlet.put((SEND, ex, b"GET / HTTP/1.1\r\n\r\n", 0))
    assert inlet.wakes == {"exchanges": 2, "high_water": 0, "pool_full": 0, "idle": 0}
    for _ in range(inlet.slots // 2 - 11 + 1):
        inlet.put((DATA, 1, b"x", 0))
    assert inlet.wakes["high_water"] == 1
    inlet.put((DATA, 1, b"y" * (POOL // 2), 0))
    assert inlet.wakes["high_water"] == 2
    _drain(q)
    inlet.wake.clear()
    inlet.idle = True  # what the worker sets before it sleeps until told
    inlet.put((DATA, 1, b"z", 0))
    assert inlet.wakes["idle"] == 1 and inlet.wake.is_set() and not inlet.idle


def _tracer(tmp_path: Path, **cfg: Any) -> zltrace.Tracer:
    return zltrace.Tracer(
        zltrace.Config(dir=str(tmp_path / "t"), format="raw", handle_signals=False, **cfg)
    )


def test_a_busy_worker_wakes_per_buffer_size_exchanges_not_per_event(tmp_path: Path) -> None:
    """With flush_ms an hour away, the worker still writes, woken every ``buffer_size``
    exchanges: a few wakes for 60 exchanges paced apart, not one per exchange or event."""
    with ScriptedServer([response(200, b"ok")]) as srv:
        t = _tracer(tmp_path, flush_ms=3_600_000, buffer_size=20)
        pool = t.wrap(urllib3.HTTPConnectionPool(srv.host, srv.port))
        for i in range(60):
            assert pool.request("GET", f"/r/{i}").data == b"ok"
            time.sleep(0.004)  # pacing: a worker woken by events would wake for each one
        w: Any = t._worker
        _wait(lambda: t.stats()["records_written"] > 0, "nothing written before flush_ms")
        assert w.inlet.wakes["exchanges"] >= 2
        assert 1 <= t.stats()["worker_wakeups"] <= 15
        assert t.close()
    assert len(list(zltrace.read(tmp_path / "t"))) == 60


def test_the_pool_passing_half_full_wakes_the_worker(tmp_path: Path) -> None:
    """A body read in many small pieces fills the pool: the worker is woken by the mark and
    writes before flush_ms (an hour) and before buffer_size exchanges."""
    body = bytes(range(256)) * 200  # 51,200 bytes read 100 at a time: 512 slots
    with ScriptedServer([response(200, body)]) as srv:
        t = _tracer(tmp_path, flush_ms=3_600_000, buffer_size=100_000, memory_pool_size=POOL)
        pool = t.wrap(urllib3.HTTPConnectionPool(srv.host, srv.port))
        r = pool.request("GET", "/big", preload_content=False)
        got = b"".join(r.stream(100))
        w: Any = t._worker
        _wait(lambda: t.stats()["records_written"] > 0, "nothing written before flush_ms")
        assert w.inlet.wakes["high_water"] >= 1
        r.release_conn()
        assert t.close()
    [ex] = zltrace.read(tmp_path / "t")
    assert got == body and ex.response is not None and ex.response.body == body


def _reply(req: Request) -> list[Step]:
    n = int(req.target.rsplit("/", 1)[1])
    return response(200, hashlib.sha256(b"%d" % n).digest() * (1 + n % 40))


def test_many_threads_record_every_byte_once_and_in_order(tmp_path: Path) -> None:
    """Eight threads at once on the smallest pool (pooled, overflowed and by-reference
    payloads mixed): every request and response body reads back whole, once, in order."""
    threads, per = 8, 40
    with ScriptedServer(_reply) as srv:
        t = _tracer(tmp_path, memory_pool_size=POOL, flush_ms=20)
        pool = t.wrap(urllib3.HTTPConnectionPool(srv.host, srv.port, maxsize=threads))
        errors: list[BaseException] = []

        def run(k: int) -> None:
            try:
                for j in range(per):
                    n = k * per + j
                    sent = (b"%d:" % n) * (1 + n % 700)  # up to ~4 KB: both sides of a slot
                    r = pool.request("POST", f"/r/{n}", body=sent, preload_content=False)
                    got = b"".join(r.stream(7 + n % 50))
                    assert got == _reply_body(n)
                    r.release_conn()
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        workers = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
        for th in workers:
            th.start()
        for th in workers:
            th.join()
        assert not errors, errors[0]
        w: Any = t._worker
        assert t.close()
        assert w.inlet.in_use == 0
        s = t.stats()
        assert s["pool_bytes"] == POOL and s["pool_overflows"] == w.inlet.overflows
    seen: dict[int, zltrace.Exchange] = {}
    for ex in zltrace.read(tmp_path / "t"):
        n = int(ex.request.url.rsplit("/", 1)[1])
        assert n not in seen
        seen[n] = ex
    assert sorted(seen) == list(range(threads * per))
    for n, ex in seen.items():
        assert ex.outcome == "complete"
        assert ex.request.body == (b"%d:" % n) * (1 + n % 700)
        assert ex.response is not None and ex.response.body == _reply_body(n)


def _reply_body(n: int) -> bytes:
    return hashlib.sha256(b"%d" % n).digest() * (1 + n % 40)


def test_a_caller_over_the_by_reference_quota_waits_for_the_worker_to_encode() -> None:
    """Response bytes by reference past a quarter of the pool: the caller wakes the worker
    and waits until the worker's count of encoded bytes brings the backlog under the quota."""
    inlet, q = _inlet(pool=8 * SLOT)  # quota: 2 slots' worth
    big = b"x" * (SLOT + 1)
    inlet.put((DATA, 1, big, 1))
    assert inlet.holds == 0 and not inlet.wake.is_set()
    encoded = threading.Event()

    def worker() -> None:
        inlet.wake.wait(20)
        for ev in _drain(q):
            inlet.ref_done += len(ev[2]) + EVENT_COST
        encoded.set()

    t = threading.Thread(target=worker)
    t.start()
    inlet.put((DATA, 1, big, 2))  # the backlog passes the quota: held until encoded
    assert encoded.is_set() and inlet.holds == 1
    assert inlet.ref_bytes - inlet.ref_done <= inlet.ref_quota
    t.join()


def test_a_caller_is_never_held_for_good_by_a_worker_that_is_gone() -> None:
    """Nobody encodes: the caller waits at most THROTTLE_WAIT_S per event, then goes on."""
    inlet, q = _inlet(pool=8 * SLOT)
    big = b"x" * (SLOT + 1)
    for i in range(3):
        inlet.put((DATA, 1, big, i))
    assert inlet.holds == 2 and len(_drain(q)) == 3
