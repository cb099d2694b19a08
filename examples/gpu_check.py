# /// script
# requires-python = ">=3.10"
# dependencies = []
# ///
"""Reports the GPUs the job sees, and says so plainly when there are none."""

import os
import shutil
import subprocess

accelerator = os.environ.get("ACCELERATOR", "")
smi = shutil.which("nvidia-smi")
if smi is None:
    print(f"no GPU visible (nvidia-smi not found; flavor accelerator: {accelerator or 'none'})")
else:
    query = [smi, "--query-gpu=name,memory.total", "--format=csv,noheader"]
    result = subprocess.run(query, capture_output=True, text=True, check=False)
    gpus = [line for line in result.stdout.splitlines() if line.strip()]
    print(f"{len(gpus)} GPU(s): " + "; ".join(gpus) if gpus else "no GPU visible")
