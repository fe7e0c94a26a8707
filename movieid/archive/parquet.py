"""The archive index's tables as Parquet files (pyarrow), for DuckDB, pandas or Spark: the same
columns as the SQLite tables (``store``), embeddings as lists of float32, films the batch
journal does not record done left out as a reader of the index leaves them out."""
from __future__ import annotations

from pathlib import Path

from ..errors import MovieIdError, missing_dependency
from ..files import write_file
from .consistency import visible_films
from .store import NAME_SEPARATOR, open_index

TABLES = {
    "films": "SELECT id, key, sidecar, path, title, duration, frame_count, shot_count, engine, face_model, created,"
             " sha256, review FROM films",
    "shots": 'SELECT s.id, s.film, s.id - f.first_shot AS "index", s.start, s."end", s.thumb_frame, s.names,'
             " s.caption, s.description FROM shots s JOIN films f ON f.id = s.film",
    "persons": "SELECT id, film, cluster, name, in_cast, shots, seconds, archive, faces, embedding FROM persons",
    "people": "SELECT pe.shot, pe.person, p.film, pe.confidence FROM people pe JOIN persons p ON p.id = pe.person",
}
FILM_COLUMN = {"films": "id", "shots": "film", "persons": "film", "people": "film"}


def check_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError as exc:
        raise missing_dependency(exc, "--parquet", "parquet") from None


def write_parquet(out: Path, folder: Path) -> list[Path]:
    """``folder``/films.parquet, shots.parquet, persons.parquet and people.parquet."""
    check_pyarrow()
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MovieIdError(f"cannot create the folder ({exc.strerror or exc})", folder) from None
    written = []
    with open_index(out) as index:
        shown, _ = visible_films(index, Path(out))
        for name, sql in TABLES.items():
            with index.errors():
                cursor = index.db.execute(sql)
                columns = [d[0] for d in cursor.description]
                rows = cursor.fetchall()
            if shown is not None:
                at = columns.index(FILM_COLUMN[name])
                rows = [r for r in rows if r[at] in shown]
            data = {c: [r[i] for r in rows] for i, c in enumerate(columns)}
            if name == "shots":   # the names on screen, left to right, as a list
                data["names"] = [[n for n in names.split(NAME_SEPARATOR) if n] for names in data["names"]]
            if "embedding" in data:
                data["embedding"] = [None if b is None else np.frombuffer(b, "<f4").tolist() for b in data["embedding"]]
                table = pa.table({**{c: v for c, v in data.items() if c != "embedding"},
                                  "embedding": pa.array(data["embedding"], pa.list_(pa.float32()))})
            else:
                table = pa.table(data)
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink)
            written.append(write_file(folder / f"{name}.parquet", sink.getvalue().to_pybytes()))
    return written
