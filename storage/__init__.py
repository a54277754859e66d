"""The output store: where generated files live. The database holds only their keys."""

from storage.base import (
    OutputStore,
    StoredObject,
    get_store,
    make_store,
    output_key,
    set_store,
)

__all__ = ["OutputStore", "StoredObject", "get_store", "make_store", "output_key", "set_store"]
