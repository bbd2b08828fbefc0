"""One contract for the control plane, run against SQLite and the machine's PostgreSQL."""

from pathlib import Path

import pytest
import sqlalchemy as sa

from services.common.controlplane import ControlPlane, make_engine


async def _key(cp: ControlPlane, project_id: str, name: str, created: int, digest: str) -> str:
    record = await cp.create_key(
        project_id=project_id,
        name=name,
        prefix="cc_live_abc",
        secret_hash=digest,
        scopes=["logs:read"],
        now_ms=created,
        expires_at_ms=None,
    )
    return record.id


async def test_migrations_are_versioned_and_idempotent(cp: ControlPlane) -> None:
    assert await cp.migrate(2) == []


async def test_a_database_of_an_earlier_release_gains_the_owner_notice_column(
    cp: ControlPlane,
) -> None:
    """Migrations 7 and 8 on a `subscriptions` table made before them (their column and index
    dropped here to stand for one)."""
    async with cp.engine.begin() as conn:
        await conn.execute(sa.text("DROP INDEX ix_subscriptions_owner_notice"))
        await conn.execute(sa.text("ALTER TABLE subscriptions DROP COLUMN owner_notice_due_ms"))
        await conn.execute(sa.text("DELETE FROM cc_schema_migrations WHERE version >= 7"))
    assert await cp.migrate(3) == [7, 8]
    async with cp.engine.connect() as conn:
        columns = await conn.run_sync(lambda c: sa.inspect(c).get_columns("subscriptions"))
        indexes = await conn.run_sync(lambda c: sa.inspect(c).get_indexes("subscriptions"))
    assert "owner_notice_due_ms" in {c["name"] for c in columns}
    assert {"name": "ix_subscriptions_owner_notice", "column_names": ["owner_notice_due_ms"]} in [
        {"name": i["name"], "column_names": i["column_names"]} for i in indexes
    ]
    assert await cp.owner_notices_due(0, 10) == []
    assert await cp.migrate(4) == []


async def test_projects_round_trip_and_plan_change(cp: ControlPlane) -> None:
    project = await cp.create_project("acme", "free", 1000)
    assert project.id.startswith("prj_")
    assert await cp.get_project(project.id) == project
    changed = await cp.set_plan(project.id, "team")
    assert changed is not None and changed.plan == "team"
    assert await cp.set_plan("prj_missing", "team") is None
    assert await cp.get_project("prj_missing") is None


async def test_keys_are_found_by_hash_with_their_plan(cp: ControlPlane) -> None:
    project = await cp.create_project("acme", "pro", 1000)
    key_id = await _key(cp, project.id, "ci", 2000, "a" * 64)
    found = await cp.find_key("a" * 64)
    assert found is not None
    assert (found.id, found.project_id, found.plan, found.scopes) == (
        key_id,
        project.id,
        "pro",
        ["logs:read"],
    )
    assert await cp.find_key("b" * 64) is None


async def test_foreign_keys_are_invisible(cp: ControlPlane) -> None:
    mine = await cp.create_project("mine", "free", 1)
    theirs = await cp.create_project("theirs", "free", 1)
    their_key = await _key(cp, theirs.id, "k", 1, "c" * 64)
    assert await cp.get_key(mine.id, their_key) is None
    assert not await cp.revoke_key(mine.id, their_key, 5)
    assert await cp.get_key(theirs.id, their_key) is not None


async def test_listing_is_keyset_paged_and_hides_revoked_keys(cp: ControlPlane) -> None:
    project = await cp.create_project("acme", "free", 1)
    ids = [await _key(cp, project.id, f"k{i}", 100 + i // 2, f"{i:064d}") for i in range(7)]
    seen, after = [], None
    while True:
        page = await cp.list_keys(project.id, 3, after)
        seen += [k.id for k in page]
        if len(page) < 3:
            break
        after = (page[-1].created_at_ms, page[-1].id)
    assert seen == sorted(ids, key=lambda i: (100 + ids.index(i) // 2, i))
    assert await cp.revoke_key(project.id, ids[0], 500)
    assert not await cp.revoke_key(project.id, ids[0], 600)
    assert ids[0] not in [k.id for k in await cp.list_keys(project.id, 100, None)]
    revoked = await cp.get_key(project.id, ids[0])
    assert revoked is not None and revoked.revoked_at_ms == 500


async def test_last_used_times_are_batched_and_never_move_back(cp: ControlPlane) -> None:
    project = await cp.create_project("acme", "free", 1)
    first = await _key(cp, project.id, "a", 1, "d" * 64)
    second = await _key(cp, project.id, "b", 1, "e" * 64)
    await cp.record_key_use([(first, 500), (second, 700)])
    await cp.record_key_use([(first, 400)])
    a, b = await cp.get_key(project.id, first), await cp.get_key(project.id, second)
    assert a is not None and b is not None
    assert (a.last_used_at_ms, b.last_used_at_ms) == (500, 700)


async def test_ping_reports_a_dead_database(tmp_path: Path) -> None:
    from services.common.errors import Unavailable

    dead = ControlPlane(make_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none"))
    with pytest.raises(Unavailable):
        await dead.ping()
    await dead.close()
