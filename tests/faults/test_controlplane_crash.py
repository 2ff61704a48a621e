"""kill -9 the control plane in the middle of 1,000 creates from 8 clients (issue 13).

The scenario is :func:`tests.faults.crash.run_crash` (``bench/bench_faults.py`` runs it with more kills
and clients). Once about half of the creates are acknowledged the server gets SIGKILL and is restarted
on the same data directory. What must hold: the SQLite file passes ``PRAGMA integrity_check``; every
acknowledged create is there and whole; an in-flight create is whole or absent; nothing half-written or
unsent; the clients end with exactly 1,000 after retrying; each watcher, resuming from its last
resourceVersion, saw every create exactly once, in revision order, with no gap against the final LIST.

Why the store keeps this promise: a create is answered only after its group commit's COMMIT returned,
the WAL runs with ``synchronous=FULL``, and a watch from a revision older than the restarted server's
watch cache is replayed from the store's history (410 Gone only for a compacted revision).
"""

from __future__ import annotations

from pathlib import Path

from controlplane.store.sqlite import SQLiteBackend

from .crash import run_crash


async def test_kill_9_mid_creates(tmp_path: Path) -> None:
    result = await run_crash(tmp_path, total=1000, clients=8, watchers=3, kills=1)
    print(f"\ncrash: {result.summary()}")
    assert result.acked_at_kill[0] >= 500  # the kill came mid-run, not after it
    assert result.acked_at_kill[0] < 1000
    assert result.integrity == ["ok", "ok"]
    assert result.lost == 0
    assert result.torn == 0 and result.stray == 0
    assert not result.client_errors, result.client_errors[:5]
    assert result.final == 1000
    assert not result.watch_errors, result.watch_errors[:5]
    assert result.duplicates == 0 and result.gaps == 0 and result.out_of_order == 0
    assert result.ok()


async def test_commits_are_fsynced(tmp_path: Path) -> None:
    """What kill -9 cannot show (the page cache outlives a killed process; it does not outlive a power
    cut): the write connection runs WAL with ``synchronous=FULL``, so COMMIT, and with it the answer to
    every write of the batch, waits for the WAL's fsync."""
    backend = SQLiteBackend(tmp_path / "db")
    await backend.start()
    try:
        conn = backend._writer_conn
        assert conn is not None
        assert (await conn.execute_fetchall("PRAGMA journal_mode"))[0][0] == "wal"  # type: ignore[index]
        assert (await conn.execute_fetchall("PRAGMA synchronous"))[0][0] == 2  # type: ignore[index]  # FULL
    finally:
        await backend.close()
