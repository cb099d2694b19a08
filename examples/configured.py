# /// script
# requires-python = ">=3.11"
# dependencies = []
#
# [tool.hfuv]
# flavor = "t4-small"
# timeout = "45m"
# env = { APP_MODE = "eval" }
# labels = { team = "research" }
# max-cost = 5
# ///
"""A job whose launch configuration lives in the script; flags still win."""

import os

print(f"mode={os.environ['APP_MODE']} accelerator={os.environ.get('ACCELERATOR') or 'none'}")
