"""`make bench`: Skyport side by side with CNCF Distribution on the same machine and backend.

Run ``python -m bench --help``. The README of this directory explains every figure.
"""
