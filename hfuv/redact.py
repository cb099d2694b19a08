"""What hfuv shows of a job: never a secret value, nor an env value under a secret-looking name.

Secrets are shown by name only. An env variable whose name looks like a credential (HF_TOKEN,
*_TOKEN, *_KEY, *SECRET*, *PASSWORD*, in any case) is shown as `***` too: its value was most
likely meant to be a secret, and dry runs, `check` and `inspect` output get pasted into issues
and CI logs. The official client shows env values in full; hfuv does not, since nothing but the
display changes: the job still gets the value it was given.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MASK = "***"
# SECRETS (plural) names a list more often than a value: SHOW_SECRETS, SECRETS_DIR.
_SECRET_NAME = re.compile(r"(^|_)(TOKEN|KEY)$|SECRET(?!S)|PASSWORD", re.IGNORECASE)


def looks_secret(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def env(environment: Mapping[str, str]) -> dict[str, str]:
    return {key: MASK if looks_secret(key) else value for key, value in environment.items()}


def shown(item: Mapping[str, Any]) -> dict[str, Any]:
    """A job body, job, scheduled job or webhook (as sent or as answered) for display."""
    item = dict(item)
    secrets = item.get("secrets")
    if isinstance(secrets, Mapping):  # the Hub answers names; a body (or an old server) values
        item["secrets"] = dict.fromkeys(secrets, MASK)
    if isinstance(item.get("environment"), Mapping):
        item["environment"] = env(item["environment"])
    for nested in ("jobSpec", "job"):  # a scheduled job's spec, a webhook's job
        if isinstance(item.get(nested), Mapping):
            item[nested] = shown(item[nested])
    if item.get("secret"):  # a webhook's, sent by the Hub as X-Webhook-Secret
        item["secret"] = MASK
    return item
