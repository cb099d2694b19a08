# /// script
# requires-python = ">=3.10"
# dependencies = []
# ///
"""The smallest job: no dependencies, prints where it runs."""

import os
import platform

print(f"Hello from job {os.environ.get('JOB_ID', '?')} on Python {platform.python_version()}")
