"""Jobs: the job store (SQLite), job specs, local worker processes, the Ray backend and batches.

Nothing here knows of HTTP; ``t23d.serve`` builds the web platform on top of it. The store is the
source of truth: every state change is one transaction, workers are stateless and may die at any
moment, and a job that is run again resumes from its run directory's checkpoint (``--resume``).
"""
