"""Running a grid: the plan of its cells (plan), the checks before any training (preflight), the
driver that writes the cube (driver), the executors that run cell batches with their progress
channels (executors, progress), the worker's side (worker), the cube's lock (lock) and the inputs
a resume must match (fingerprint)."""
