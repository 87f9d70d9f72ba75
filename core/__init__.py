"""The bottom layer that `pipeline`, `features` and `stages` may all import.

It knows nothing of images, banks, DVC or params.yaml: the root error type (`errors`), the one
device resolver (`devices`), the split names (`splits`), shot groups (`shots`), declared config
constraints (`constraints`), and writing files atomically (`atomic`). It imports no torch at
import time.
"""
