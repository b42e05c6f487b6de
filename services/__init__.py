"""Berth's server processes. Each sub-package is one process; `common` is the shared kit."""
