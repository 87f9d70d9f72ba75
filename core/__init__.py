"""The bottom layer that `pipeline`, `features` and `stages` may all import.

It knows nothing of images, banks, DVC or params.yaml: writing files atomically and telling
a full disk apart from other write errors. It imports no torch at import time.
"""
