# /// script
# requires-python = ">=3.10"
# dependencies = []
# ///
"""Prints its arguments, one per line, then the job's environment (secret values hidden)."""

import os
import sys

for arg in sys.argv[1:]:
    print(f"arg: {arg}")
shown = ["JOB_ID", "ACCELERATOR", "CPU_CORES", "MEMORY"]
shown += sorted(k for k in os.environ if k.startswith("APP_"))
for key in shown:
    print(f"env: {key}={os.environ.get(key, '')}")
for key in sorted(os.environ.get("SHOW_SECRETS", "").split(",")):
    if key:
        print(f"secret: {key} is {'set' if os.environ.get(key) else 'missing'}")
