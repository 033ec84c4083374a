"""The in-memory store's own parts (the rest of its contract is in test_contract.py, with the databases)."""

from __future__ import annotations

import uuid

import pytest

from reconciler.adapters.memory_store import MemoryDatabase, MemoryStore
from reconciler.errors import LockHeldError, StoreError


def test_environment_locks_are_shared_by_every_store_on_one_database() -> None:
    database = MemoryDatabase()
    one, two = MemoryStore(database), MemoryStore(database)
    env = str(uuid.uuid4())
    assert one.try_lock_environment(env) and one.try_lock_environment(env)  # re-entrant within the holder
    assert not two.try_lock_environment(env)
    assert two.try_lock_environment(str(uuid.uuid4()))  # other environments are independent
    one.unlock_environment(env)
    assert two.try_lock_environment(env) and not one.try_lock_environment(env)
    assert one.held_locks() == frozenset() and env in two.held_locks()
    two.close()  # closing releases what it held
    assert one.try_lock_environment(env)
    assert MemoryStore().try_lock_environment(env)  # another database knows nothing of it


def test_one_daemon_per_database_and_a_closed_store_refuses_work() -> None:
    database = MemoryDatabase()
    one, two = MemoryStore(database), MemoryStore(database)
    one.acquire_daemon_lock()
    with pytest.raises(LockHeldError):
        two.acquire_daemon_lock()
    one.close()
    two.acquire_daemon_lock()
    with pytest.raises(StoreError, match="closed"):
        one.observe()


def test_the_unique_pair_can_be_switched_off_like_a_database_without_it() -> None:
    store = MemoryStore(MemoryDatabase(unique_pair=False))
    assert not store.unique_image_per_environment
