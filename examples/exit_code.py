# /// script
# requires-python = ">=3.10"
# dependencies = []
# ///
"""Exits with the code given as its first argument (default 3): the job's exit code."""

import sys

code = int(sys.argv[1]) if len(sys.argv) > 1 else 3
print(f"exiting with {code}", file=sys.stderr)
sys.exit(code)
