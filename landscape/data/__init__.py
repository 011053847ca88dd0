"""Data-set readers (file formats and embedded data), independent of any task."""
