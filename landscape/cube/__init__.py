"""The cube, the contract between the engine and its readers: its schema (names, codes, what a cube
says it is), the store (create, open, write one cell) and the verification of finished cells.
Imports no torch and nothing of the package but its errors and bounded reads."""
from landscape.cube.schema import STATUS_DIVERGED, STATUS_DONE, STATUS_PENDING
from landscape.cube.store import (METADATA_LIMIT, PROBE_PREFIX, REQUIRED_ATTRS, SPEC_DEPTH, VERSIONED, check_replaceable,
                                  create, library_versions, not_own_cube, open_cube, standard_attrs, stored_spec,
                                  template, write_cell)
from landscape.cube.verify import STATUSES, Damage, checksums, describe_damage, verify_cells

__all__ = ["METADATA_LIMIT", "PROBE_PREFIX", "REQUIRED_ATTRS", "SPEC_DEPTH", "STATUSES", "STATUS_DIVERGED",
           "STATUS_DONE", "STATUS_PENDING", "VERSIONED", "Damage", "check_replaceable", "checksums", "create",
           "describe_damage", "library_versions", "not_own_cube", "open_cube", "standard_attrs", "stored_spec",
           "template", "verify_cells", "write_cell"]
