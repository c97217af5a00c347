"""What the worker runs when: jobs with an interval or a cron trigger.

Without ``HANDOFF_SCHEDULE_FILE`` the schedule is: ``sync`` every
``HANDOFF_SYNC_INTERVAL_SECONDS`` (first run at start), and ``weekly-reset`` at Monday
08:00 in each distinct time zone of the active reps, so the queue is offered again as
soon as a rep's new week (and capacity) begins. A schedule file replaces it::

    version: 1
    jobs:
      sync: {every_seconds: 180}
      weekly-reset: {cron: "0 8 * * mon", timezone: reps}   # one job per rep time zone
      nightly: {cron: "30 2 * * *", timezone: Europe/Berlin}
      salesforce-fast: {every_seconds: 60, crms: [salesforce]}   # pulls Salesforce only

Every job runs one cycle; all of them share one lease, so cycles never overlap. ``crms``
names the CRMs a job pulls (default: all): a short Salesforce interval beside a longer full
cycle. A job that does not pull a CRM leaves its watermarks alone (the next job that pulls
it reads everything since), but still writes there what a handoff needs (the rep's task).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from crm_handoff.errors import ConfigError
from mappings.models import MappingSet
from sync.settings import Settings

REP_ZONES = "reps"


class JobSpec(BaseModel):
    """One job of the schedule file: exactly one of ``every_seconds`` and ``cron``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    every_seconds: int | None = Field(None, ge=1)
    cron: str | None = None
    timezone: str = "UTC"
    enabled: bool = True
    crms: tuple[Literal["hubspot", "salesforce"], ...] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_trigger(self) -> JobSpec:
        if (self.every_seconds is None) == (self.cron is None):
            raise ValueError("give exactly one of every_seconds and cron")
        return self


class ScheduleFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(1, ge=1, le=1)
    jobs: dict[str, JobSpec]


@dataclass(frozen=True)
class Job:
    """A scheduled job: its name, its trigger, and whether it runs once at start."""

    name: str
    trigger: BaseTrigger
    run_at_start: bool = False
    crms: tuple[str, ...] | None = None  # the CRMs it pulls (None: all)

    def describe(self) -> str:
        return f"{self.name}: {self.trigger}"


WEEKLY_RESET = JobSpec(every_seconds=None, cron="0 8 * * mon", timezone=REP_ZONES)


def rep_zones(mapping: MappingSet) -> list[str]:
    """The distinct time zones of the active reps, sorted."""
    return sorted({r.timezone for r in mapping.reps.reps if r.active})


def _zone(name: str, where: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{where}.timezone: unknown IANA time zone {name!r}") from None


def _jobs_for(name: str, spec: JobSpec, mapping: MappingSet, where: str) -> list[Job]:
    if spec.every_seconds is not None:
        trigger = IntervalTrigger(seconds=spec.every_seconds, timezone="UTC")
        return [Job(name, trigger, run_at_start=True, crms=spec.crms)]
    zones = rep_zones(mapping) if spec.timezone == REP_ZONES else [spec.timezone]
    out = []
    for zone in zones:
        try:
            trigger = CronTrigger.from_crontab(spec.cron or "", timezone=_zone(zone, where))
        except ValueError as exc:
            raise ConfigError(f"{where}.cron: {exc} (expected 'minute hour day month weekday')") from None
        out.append(Job(f"{name}@{zone}" if spec.timezone == REP_ZONES else name, trigger, crms=spec.crms))
    return out


def read_schedule_file(path: Path) -> dict[str, JobSpec]:
    """Job specs from a schedule file; ConfigError naming the file and field."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"HANDOFF_SCHEDULE_FILE: cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    try:
        return dict(ScheduleFile.model_validate(data).jobs)
    except ValidationError as exc:
        raise ConfigError(
            [
                f"{path}: {'.'.join(str(p) for p in e['loc']) or 'top level'}: {e['msg']}"
                for e in exc.errors(include_input=False)
            ]
        ) from None


def load_schedule(settings: Settings, mapping: MappingSet) -> list[Job]:
    """The worker's jobs, from the schedule file or the defaults."""
    if settings.handoff_schedule_file:
        specs, source = (
            read_schedule_file(settings.handoff_schedule_file),
            str(settings.handoff_schedule_file),
        )
    else:
        specs = {"sync": JobSpec(every_seconds=settings.handoff_sync_interval_seconds, cron=None)}
        specs["weekly-reset"] = WEEKLY_RESET
        source = "schedule"
    jobs: list[Job] = []
    for name, spec in specs.items():
        if spec.enabled:
            jobs += _jobs_for(name, spec, mapping, f"{source}: jobs.{name}")
    if not jobs:
        raise ConfigError(f"{source}: no enabled job")
    return jobs
