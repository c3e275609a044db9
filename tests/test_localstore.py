"""A local directory as a store: its listing pages, in key order, the first one short when asked."""
from __future__ import annotations

from pipeline.store import StoreSpec, open_store


def test_listing_pages_every_file_in_key_order_with_a_short_first_page(tmp_path):
    names = ["a", "b/c", "b/d/e", "b/f", "g", "h/i"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(name.encode())
    store = open_store(StoreSpec("local", str(tmp_path)))
    pages = [[o.key for o in page] for page in store.list("", page_size=2, first_page_size=1)]
    assert [len(page) for page in pages if page] == [1, 2, 2, 1]
    assert sum(pages, []) == names
    assert [o.size for page in store.list("b/", page_size=10) for o in page] == [3, 5, 3]
    after = [o.key for page in store.list("", start_after="b/d/e", first_page_size=1) for o in page]
    assert after == ["b/f", "g", "h/i"]
