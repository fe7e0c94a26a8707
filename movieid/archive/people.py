"""People across the archive: the films' unknown people grouped into archive people.

Each film already groups its tracks into film-wide people (``identity``); here the films'
unknown people are grouped across films by the same rule: average linkage on their
embeddings (the mean of their faces'), merging only while the groups' mean similarity reaches
the face model's clustering threshold, and never two people of one film (the film has already
told them apart: they were seen together, or are not alike). An extra archive person costs less
than two people made one. Each group gets ``Archive unknown n``, numbered by first appearance
(films in order of their key, then time in the film).

The embeddings are not in the sidecars: a batch stores them from its analysis; ``movieid index``
keeps them for sidecars that have not changed.
"""
from __future__ import annotations

import sqlite3

import numpy as np

from ..identity import cluster_threshold_for, cluster_tracks
from ..records import FilmAnnotation, unit
from .store import ARCHIVE_PREFIX


def person_embeddings(annotation: FilmAnnotation) -> dict[tuple[int, str], tuple[np.ndarray, int]]:
    """(cluster, label) of each unknown film-wide person -> (unit mean of its faces' embeddings, faces)."""
    faces: dict[tuple[int, str], list[np.ndarray]] = {}
    for shot in annotation.shots:
        for person in shot.people.people:
            if person.name is None:
                faces.setdefault((person.cluster, person.display_name), []).extend(
                    f.embedding for f in person.track.faces)
    return {key: (unit(np.mean(vectors, axis=0)).astype(np.float32), len(vectors)) for key, vectors in faces.items()}


def cluster_threshold(face_model: str) -> float | None:
    """The film-wide clustering threshold of the backend that made ``face_model``'s embeddings."""
    if face_model.startswith("dlib"):
        from ..faces.dlib_backend import DlibBackend as backend
    elif face_model.startswith("insightface"):
        from ..faces.insightface_backend import InsightFaceBackend as backend
    else:
        return None
    return backend.cluster_threshold or cluster_threshold_for(backend.match_threshold)


def archive_label(number: int) -> str:
    return f"{ARCHIVE_PREFIX} {number}"


def parse_archive_label(name: str) -> int | None:
    prefix, _, number = name.strip().rpartition(" ")
    if prefix.lower() == ARCHIVE_PREFIX.lower() and number.isdigit():
        return int(number)
    return None


def recluster(db: sqlite3.Connection) -> int:
    """Assign every unknown person with an embedding its archive person; returns how many
    archive people there are."""
    rows = db.execute(
        "SELECT p.id, p.film, f.face_model, p.embedding FROM persons p JOIN films f ON f.id = p.film"
        " WHERE p.in_cast = 0 AND p.embedding IS NOT NULL"
        " ORDER BY f.key, (SELECT min(s.start) FROM people pe JOIN shots s ON s.id = pe.shot"
        "                  WHERE pe.person = p.id), p.cluster").fetchall()
    db.execute("UPDATE persons SET archive = NULL WHERE archive IS NOT NULL")
    groups: list[list[int]] = []            # person ids, by first appearance
    for model in dict.fromkeys(r[2] for r in rows):
        members = [r for r in rows if r[2] == model]
        vectors = [np.frombuffer(r[3], "<f4") for r in members]
        threshold = cluster_threshold(model)
        if threshold is None or len({v.shape for v in vectors}) != 1:
            clusters = [[i] for i in range(len(members))]      # unknown model: nobody is merged
        else:
            films = np.array([r[1] for r in members])
            clusters = cluster_tracks(np.stack(vectors), films[:, None] == films[None, :], threshold)
        groups += [[members[i][0] for i in c] for c in clusters]
    order = {r[0]: n for n, r in enumerate(rows)}
    groups.sort(key=lambda g: min(order[i] for i in g))
    db.executemany("UPDATE persons SET archive = ? WHERE id = ?",
                   [(number, pid) for number, group in enumerate(groups, 1) for pid in group])
    return len(groups)
