"""Imported by the test server of tests/stages/test_warm.py: sets a variable at import time,
as torch and faiss do (an import-time prefix, so a client's own value of it matters)."""

import os

os.environ.setdefault("OMP_TAILBANK_TEST", "set-by-import")
