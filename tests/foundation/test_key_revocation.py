"""`frugal keys revoke` takes a key's prefix, the whole key, or its numeric id.

A prefix is 8 random hex characters, so about 1 key in 40 has an all-digit prefix; CI once failed
because such a prefix was read as an id.  These tests pin the rule: an 8-hex ident is a prefix
first, an id only if no key has that prefix.
"""

from __future__ import annotations

import pytest

from service.auth import create_key, hash_key, revoke_key
from service.errors import NotFound
from service.store import keys as key_store


def _insert(db, prefix: str, name: str):
    from service.auth import utcnow

    secret = f"frg_{prefix}_{'x' * 43}{name}"
    with db.unit_of_work() as session:
        record = key_store.insert(session, name=name, prefix=prefix, key_hash=hash_key(secret), scope="read", now=utcnow())
    return record, secret


def _active(db) -> dict[str, bool]:
    with db.unit_of_work() as session:
        return {r.name: r.active for r in key_store.list_all(session)}


def test_all_digit_prefix_is_revoked_as_a_prefix(app):
    db = app.extensions["frugal"].db
    _insert(db, "12345678", "digits")
    _insert(db, "abcdef01", "other")
    record = revoke_key(db, "12345678")
    assert record.name == "digits"
    assert _active(db) == {"digits": False, "other": True}


def test_whole_key_and_numeric_id_revoke_the_right_key(app):
    db = app.extensions["frugal"].db
    first = create_key(db, name="first", scope="sdk")
    second = create_key(db, name="second", scope="read")
    third = create_key(db, name="third", scope="admin")
    assert revoke_key(db, first.secret).name == "first"
    assert revoke_key(db, str(second.record.id)).name == "second"
    assert _active(db) == {"first": False, "second": False, "third": True}


def test_unknown_ident_is_not_found_and_revokes_nothing(app):
    db = app.extensions["frugal"].db
    create_key(db, name="kept", scope="read")
    for ident in ("99999999", "deadbeef", "frg_00000000_whatever", "424242"):
        with pytest.raises(NotFound, match=ident):
            revoke_key(db, ident)
    assert _active(db) == {"kept": True}
