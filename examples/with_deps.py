# /// script
# requires-python = ">=3.10"
# dependencies = ["six>=1.16", "idna>=3"]
# ///
"""A job with two small dependencies, installed from the lock."""

import idna
import six

print(f"six {six.__version__}, idna {idna.__version__}")
print(idna.encode("bücher.example").decode())
