"""The archive: every shot of every film of a batch output (or a folder of sidecars) in one
SQLite index, searchable by people, words and film, with people followed across films."""
from .build import index_film, rebuild, sync_with_journal
from .search import Hit, Query, search
from .store import INDEX_NAME, Index, open_index

__all__ = ["INDEX_NAME", "Hit", "Index", "Query", "index_film", "open_index", "rebuild", "search",
           "sync_with_journal"]
