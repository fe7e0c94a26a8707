"""``movieid batch``: annotate whole archives, resumably, on one machine or a Ray cluster."""
from .jobs import Job, find_jobs
from .journal import Journal
from .runner import BatchOptions, Summary, run_batch, status

__all__ = ["BatchOptions", "Job", "Journal", "Summary", "find_jobs", "run_batch", "status"]
