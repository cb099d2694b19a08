"""Cron schedules: validation and next run times. Times are UTC, everywhere."""

from __future__ import annotations

from datetime import datetime, timezone

from hfuv.errors import ConfigError

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def cron_expression(schedule: str) -> str:
    """`@daily` and friends as their 5-field cron expressions; others unchanged."""
    return ALIASES.get(schedule.strip().lower(), schedule.strip())


def next_runs(schedule: str, after: datetime | None = None, count: int = 1) -> list[datetime]:
    """The next `count` run times (UTC) strictly after `after` (default: now)."""
    from cronsim import CronSim, CronSimError

    start = after or datetime.now(timezone.utc)
    try:
        runs = CronSim(cron_expression(schedule), start.replace(microsecond=0))
        return [next(runs) for _ in range(count)]
    except (CronSimError, StopIteration, ValueError) as exc:
        raise ConfigError(
            f"invalid schedule {schedule!r}: {exc}",
            hint="use 5 cron fields (minute hour day month weekday, in UTC) or "
            "@hourly/@daily/@weekly/@monthly/@yearly",
        ) from None


def validate(schedule: str) -> str:
    next_runs(schedule)
    return schedule


def utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
