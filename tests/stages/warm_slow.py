"""Preloaded by a test server of tests/stages/test_warm.py: an import that takes a while, so
that a client can queue while the server is still importing."""

import time

time.sleep(3)
