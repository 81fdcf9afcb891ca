"""The serve app's own structure: the request's store on `g` and its teardown."""

from __future__ import annotations

from publisher.serve import prepare
from publisher.serve.db import get_store
from publisher.store import Store


def test_a_transaction_a_failed_request_left_open_is_rolled_back_at_teardown(sample_root):
    app, _, _ = prepare(None, None, None, start=sample_root)

    @app.post("/careless")
    def careless():  # a future view that opens a transaction by hand and then fails
        get_store().conn.execute("BEGIN IMMEDIATE")
        raise RuntimeError("bug")

    @app.post("/add/<address>")
    def add(address: str):
        get_store().add(address, goal="5k")
        return "added"

    client = app.test_client()  # one thread: both requests use its one connection
    assert client.post("/careless").status_code == 500
    assert client.post("/add/after@example.net").status_code == 200
    with Store.open(sample_root / "subscribers" / "runletter.db") as store:
        assert store.get("after@example.net") is not None  # committed, not left pending
