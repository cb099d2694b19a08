"""The compatibility matrix: every `HfApi` job, scheduled-job and webhook method, and every
`hf jobs …` and `hf webhooks …` command of huggingface_hub 2.4.0, run against one real
`hfuv server` (the rows that ship local files through a bucket, against a second one on
podman: bucket volumes need a container runtime), each row asserting what the user sees
(exit code, output, the server's state).

A row passes (`works`: the call does what it does on the Hub; `refused`: the server cannot do
it and the user gets one clear error saying so), or is skipped with a reason that names what
the server cannot do. `test_the_matrix_is_whole` fails when the client grows a method or a
command that has no row.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import PYENV_VERSION, ServerProcess, needs_python, write
from tests.helpers import FakeHost, Reply
from tests.images import busybox_image, podman_problem, uv_image

huggingface_hub = pytest.importorskip("huggingface_hub")
pytestmark = [
    needs_python("3.12"),
    pytest.mark.filterwarnings("ignore:'HfApi.*' is experimental:UserWarning"),
]

HF = str(Path(sys.executable).parent / "hf")
NS = "me"
IMAGE = "python:3.12"  # not used on the host runtime: the command runs on this machine
COUNT = "import time\nfor i in range(3):\n    print('line', i, flush=True)\n    time.sleep(0.2)\n"
SCRIPT = """\
# /// script
# requires-python = ">=3.10"
# dependencies = []
# ///
import os, sys
print("uv script", sys.argv[1:], os.environ.get("MODE", "-"))
"""

# Rows that ship a local file: the official client uploads it to a storage bucket (Xet) and
# mounts the bucket at /data. They run on a podman server, in the test images.
BUCKET_ROWS = frozenset({
    "HfApi.run_uv_job[local script]",
    "HfApi.create_scheduled_uv_job[local script]",
    "HfApi.sync_job_volume[local dir]",
    "hf jobs run[-v ./dir:/mnt]",
    "hf jobs run[-v hf://buckets/NS/NAME:/mnt]",
    "hf jobs uv run[local script]",
    "hf jobs uv run[URL]",  # the CLI downloads a URL script and uploads it like a local one
    "hf jobs scheduled uv run[local script]",
    "hf jobs scheduled uv run[URL]",
})  # fmt: skip
# Rows the server cannot do at all (beyond a clear refusal a row can assert).
CANNOT = {
    "hf jobs ssh[ID]": "hfuv server has no SSH access to jobs (`ssh` is refused at create)",
}


@dataclass
class Matrix:
    """What a row gets: the server, an HfApi on it, `hf` on it, a file host on 127.0.0.1."""

    server: ServerProcess
    files: FakeHost
    tmp: Path
    created: list[str] = field(default_factory=list)
    before: set[str] = field(default_factory=set)  # the namespace's jobs of earlier rows
    image: str = IMAGE  # what `job` runs in (the host runtime runs the command here)
    uv_image: str | None = None  # on podman: an image with uv, for `uv run` jobs

    def uv_flags(self) -> list[str]:
        return ["--image", self.uv_image] if self.uv_image else []

    def fresh(self, ids: list[str]) -> list[str]:
        """`ids` less the jobs of earlier rows (a listing shows every job of the namespace)."""
        return [job_id for job_id in ids if job_id not in self.before]

    def listed(self, **filters) -> list[str]:
        return self.fresh([j.id for j in self.api.list_jobs(namespace=NS, **filters)])

    @property
    def api(self):
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.server.url, token=ServerProcess.TOKENS[NS])

    def hf(self, *args: str, user: str = NS, input: str | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess:  # fmt: skip
        env = {**os.environ, **self.server.env(user), "HF_HUB_DISABLE_UPDATE_CHECK": "1",
               "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_EXPERIMENTAL_WARNING": "1",
               "NO_COLOR": "1", "COLUMNS": "250"}  # fmt: skip
        return subprocess.run([HF, *args], env=env, cwd=self.tmp, input=input,
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip

    def ok(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        done = self.hf(*args, **kwargs)
        assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done

    def refused(self, *args: str, says: str) -> None:
        """`hf …` fails with one `Error:` naming what the server cannot do, and no traceback."""
        done = self.hf(*args)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "Error:" in done.stderr and says in done.stderr, done.stderr
        assert "Traceback" not in done.stderr

    def job(self, command: list[str] | None = None, **kwargs):
        job = self.api.run_job(image=self.image, command=command or ["python3", "-c", COUNT],
                               namespace=NS, **kwargs)  # fmt: skip
        self.created.append(job.id)
        return job

    def done_job(self, command: list[str] | None = None, **kwargs):
        job = self.job(command, **kwargs)
        return self.api.wait_for_job(job_id=job.id, namespace=NS, timeout=60)

    def sleeper(self, **kwargs):
        job = self.job(["sleep", "120"], **kwargs)
        self.until(lambda: self.stage(job.id) == "RUNNING")
        return job

    def stage(self, job_id: str) -> str:
        return self.api.inspect_job(job_id=job_id, namespace=NS).status.stage

    def until(self, check: Callable[[], object], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.1)

    def schedule(self, **kwargs):
        kwargs.setdefault("schedule", "@yearly")
        return self.api.create_scheduled_job(image=IMAGE, command=["echo", "scheduled run"],
                                             namespace=NS, **kwargs)  # fmt: skip

    def webhook(self, **kwargs):
        source = self.done_job(["echo", "source"])
        kwargs.setdefault("watched", [{"type": "dataset", "name": "org/ds"}])
        return self.api.create_webhook(job_id=source.id, **kwargs)

    def script_url(self, text: str = SCRIPT, name: str = "script.py") -> str:
        self.files.routes[f"/{name}"] = Reply.text(text)
        return f"{self.files.url}/{name}"

    def raw(self, path: str) -> dict:
        """The server's JSON for `path`, as it is on the wire."""
        import httpx

        token = ServerProcess.TOKENS[NS]
        answer = httpx.get(self.server.url + path, headers={"authorization": f"Bearer {token}"})
        answer.raise_for_status()
        return answer.json()

    def logs(self, job_id: str) -> list[str]:
        return list(self.api.fetch_job_logs(job_id=job_id, namespace=NS))


ROWS: dict[str, Callable[[Matrix], None]] = {}


def row(name: str) -> Callable[[Callable[[Matrix], None]], Callable[[Matrix], None]]:
    """Register a row: `HfApi.METHOD[variant]` or `hf COMMAND PATH[variant]`."""

    def register(function: Callable[[Matrix], None]) -> Callable[[Matrix], None]:
        assert name not in ROWS, name
        ROWS[name] = function
        return function

    return register


def kind(name: str) -> str:
    return "refused" if "refused" in name else "works"


# --- HfApi: jobs -------------------------------------------------------------------------------


@row("HfApi.run_job[command, logs followed]")
def _(m: Matrix) -> None:
    job = m.job()
    assert len(job.id) == 24 and job.status.stage in ("SCHEDULING", "RUNNING")
    assert job.owner.name == NS and job.url == f"{m.server.url}/jobs/{NS}/{job.id}"
    followed = list(m.api.fetch_job_logs(job_id=job.id, namespace=NS, follow=True))
    assert followed == ["line 0", "line 1", "line 2"]


@row("HfApi.run_job[env, secrets, labels, name, flavor, timeout]")
def _(m: Matrix) -> None:
    job = m.done_job(["sh", "-c", 'echo "$MODE $TOKEN"'], env={"MODE": "fast"},
                     secrets={"TOKEN": "s3cr3t"}, labels={"team": "ml"}, name="named",
                     flavor="cpu-upgrade", timeout="5m")  # fmt: skip
    assert job.status.stage == "COMPLETED" and m.logs(job.id) == ["fast s3cr3t"]
    assert job.labels == {"team": "ml", "name": "named"} and job.flavor == "cpu-upgrade"
    assert job.environment == {"MODE": "fast"}
    wire = m.raw(f"/api/jobs/{NS}/{job.id}")
    assert wire["timeout"] == 300 and wire["secrets"] == ["TOKEN"]
    assert "s3cr3t" not in json.dumps(wire)


@row("HfApi.run_job[attempts]")
def _(m: Matrix) -> None:
    marker = m.tmp / "tried"
    script = f"import os,sys\np={str(marker)!r}\nif os.path.exists(p): print('second'); sys.exit(0)\nopen(p,'w').close(); print('first'); sys.exit(3)\n"  # noqa: E501
    job = m.done_job(["python3", "-c", script], attempts=2)
    assert job.status.stage == "COMPLETED" and job.retry == 1
    lines = m.logs(job.id)
    assert [line for line in lines if not line.startswith("=====")] == ["first", "second"]
    assert "===== Attempt 2 of 2 (attempt 1 failed with exit code: 3) =====" in lines


@row("HfApi.run_job[expose, expose_public]")
def _(m: Matrix) -> None:
    job = m.job(["sleep", "60"], expose=[8017], expose_public=[8018])
    assert job.expose == [8017, 8018] and job.expose_public == [8018]
    assert job.status.expose_urls == [
        f"http://{job.id}--8017.localhost:{m.server.port}",
        f"http://{job.id}--8018.localhost:{m.server.port}",
    ]


@row("HfApi.run_job[Space image]")
def _(m: Matrix) -> None:
    job = m.api.run_job(image="hf.co/spaces/org/duckdb", command=["echo", "from a space"],
                        namespace=NS)  # fmt: skip
    job = m.api.wait_for_job(job_id=job.id, namespace=NS, timeout=60)
    assert job.space_id == "org/duckdb" and job.docker_image is None
    assert m.logs(job.id) == ["from a space"]


@row("HfApi.run_job[a namespace the token cannot use]")
def _(m: Matrix) -> None:
    with pytest.raises(huggingface_hub.errors.HfHubHTTPError) as denied:
        m.api.run_job(image=IMAGE, command=["true"], namespace="someone-else")
    assert "You don't have access to the namespace someone-else" in str(denied.value)


@row("HfApi.run_job[hf:// dataset volume, refused on the host runtime]")
def _(m: Matrix) -> None:
    from huggingface_hub import Volume

    with pytest.raises(huggingface_hub.errors.BadRequestError) as refused:
        m.job(["ls", "/ds"], volumes=[Volume(type="dataset", source="org/ds", mount_path="/ds")])
    assert "the host runtime cannot mount a volume at an absolute path" in str(refused.value)


@row("HfApi.run_job[ssh, refused]")
def _(m: Matrix) -> None:
    with pytest.raises(huggingface_hub.errors.BadRequestError) as refused:
        m.job(["true"], ssh=True)
    assert "`ssh` is not supported: hfuv server has no SSH access to jobs" in str(refused.value)


@row("HfApi.run_job[network_group, refused]")
def _(m: Matrix) -> None:
    with pytest.raises(huggingface_hub.errors.BadRequestError) as refused:
        m.job(["true"], network_group="train", network_aliases=["master"])
    assert "hfuv server has no network groups between jobs" in str(refused.value)


@row("HfApi.run_job[resource_group_id, refused]")
def _(m: Matrix) -> None:
    with pytest.raises(huggingface_hub.errors.BadRequestError) as refused:
        m.job(["true"], resource_group_id="66980ecfc1e12a49c8f0e42d")
    assert "`resourceGroupId` is not supported: hfuv server has no resource groups" in str(
        refused.value
    )
    assert m.listed() == [], "nothing was stored"


@row("HfApi.run_uv_job[URL script, args, env]")
def _(m: Matrix) -> None:
    job = m.api.run_uv_job(m.script_url(), script_args=["--n", "1"], env={"MODE": "url"},
                           namespace=NS)  # fmt: skip
    assert job.command == ["uv", "run", m.script_url(), "--n", "1"]
    job = m.api.wait_for_job(job_id=job.id, namespace=NS, timeout=120)
    assert job.status.stage == "COMPLETED", job.status.message
    assert m.logs(job.id) == ["uv script ['--n', '1'] url"]


@row("HfApi.run_uv_job[URL script, dependencies, python]")
def _(m: Matrix) -> None:
    uses = "import hfuv_demo_a, sys\nprint(hfuv_demo_a.VALUE, '%d.%d' % sys.version_info[:2])\n"
    job = m.api.run_uv_job(m.script_url(uses, "deps.py"), dependencies=["hfuv-demo-a"],
                           python="3.12", namespace=NS)  # fmt: skip
    assert job.command[:6] == ["uv", "run", "--with", "hfuv-demo-a", "--python", "3.12"]
    job = m.api.wait_for_job(job_id=job.id, namespace=NS, timeout=120)
    assert job.status.stage == "COMPLETED", job.status.message
    assert m.logs(job.id)[-1] == "a-1.1.0 3.12"  # the newest in the index


@row("HfApi.run_uv_job[local script]")
def _(m: Matrix) -> None:
    path = write(m.tmp / "local.py", SCRIPT)
    job = m.api.run_uv_job(str(path), image=m.uv_image, namespace=NS)
    job = m.api.wait_for_job(job_id=job.id, namespace=NS, timeout=120)
    assert m.logs(job.id) == ["uv script [] -"]


@row("HfApi.fetch_job_logs[no follow]")
def _(m: Matrix) -> None:
    job = m.done_job()
    assert m.logs(job.id) == ["line 0", "line 1", "line 2"]


@row("HfApi.fetch_job_logs[follow a running job]")
def _(m: Matrix) -> None:
    job = m.job(
        ["python3", "-c", "import time\nfor i in range(4): print(i, flush=True); time.sleep(0.5)"]
    )
    m.until(lambda: m.stage(job.id) == "RUNNING")
    assert list(m.api.fetch_job_logs(job_id=job.id, namespace=NS, follow=True)) == list("0123")


@row("HfApi.fetch_job_logs[tail]")
def _(m: Matrix) -> None:
    job = m.done_job()
    assert list(m.api.fetch_job_logs(job_id=job.id, namespace=NS, tail=2)) == ["line 1", "line 2"]


@row("HfApi.fetch_job_metrics[first sample]")
def _(m: Matrix) -> None:
    job = m.sleeper()
    sample = next(iter(m.api.fetch_job_metrics(job_id=job.id, namespace=NS)))
    assert {"cpu_usage_pct", "memory_used_bytes", "memory_total_bytes"} <= set(sample)
    assert sample["memory_total_bytes"] > 0


@row("HfApi.fetch_job_metrics[follow until the job ends]")
def _(m: Matrix) -> None:
    job = m.job(["sleep", "2.5"])
    m.until(lambda: m.stage(job.id) == "RUNNING")
    samples = list(m.api.fetch_job_metrics(job_id=job.id, namespace=NS, follow=True))
    assert 1 <= len(samples) <= 5 and m.stage(job.id) == "COMPLETED"


@row("HfApi.list_jobs[all, by status, by label]")
def _(m: Matrix) -> None:
    done = m.done_job(["true"], labels={"team": "a"})
    running = m.sleeper(labels={"team": "b"})
    assert m.listed() == [running.id, done.id]
    assert m.listed(status="RUNNING") == [running.id]
    assert m.listed(status=["COMPLETED", "ERROR"]) == [done.id]
    assert m.listed(labels={"team": "a"}) == [done.id]


@row("HfApi.list_jobs_hardware[]")
def _(m: Matrix) -> None:
    hardware = {h.name: h for h in m.api.list_jobs_hardware()}
    assert {"cpu-basic", "cpu-upgrade", "t4-small", "a10g-small", "h200x8"} <= set(hardware)
    assert hardware["a10g-small"].accelerator.model == "A10G"
    assert hardware["cpu-basic"].unit_label == "minute" and hardware["cpu-basic"].cpu


@row("HfApi.inspect_job[the Hub's fields]")
def _(m: Matrix) -> None:
    job = m.done_job(["true"])
    assert job.status.stage == "COMPLETED" and job.finished_at >= job.started_at
    assert job.initiator.type == "user" and job.initiator.name == NS
    assert job.durations.total_secs is not None
    wire = m.raw(f"/api/jobs/{NS}/{job.id}")
    assert wire["createdBy"] == {"id": job.owner.id, "name": NS}
    avatar = wire["owner"]["avatarUrl"]
    assert avatar == f"/avatars/{job.owner.id}.svg" and wire["initiator"]["avatarUrl"] == avatar
    import httpx

    picture = httpx.get(m.server.url + avatar)  # public, as on the Hub
    assert picture.status_code == 200 and picture.text.startswith("<svg")


@row("HfApi.inspect_job[a queued job says what it waits for]")
def _(m: Matrix) -> None:
    for _ in range(8):  # the server runs 8 at a time (--max-parallel 8)
        m.job(["sleep", "120"])
    m.until(lambda: len(m.listed(status="RUNNING")) == 8)
    queued = m.job(["true"])
    assert queued.status.message == "Queued: waiting for the server to start it"
    m.until(lambda: m.api.inspect_job(job_id=queued.id, namespace=NS).status.message
            != queued.status.message)  # fmt: skip
    seen = m.api.inspect_job(job_id=queued.id, namespace=NS)
    assert seen.status.stage == "SCHEDULING"
    assert seen.status.message == "Waiting for a free slot: 8 of 8 jobs running (--max-parallel)"
    wire = m.raw(f"/api/jobs/{NS}/{queued.id}")
    for absent in ("startedAt", "finishedAt", "timeout"):  # absent, not null, as on the Hub
        assert absent not in wire
    assert "runningSecs" not in wire["durations"]


@row("HfApi.wait_for_job[one, several, timeout]")
def _(m: Matrix) -> None:
    first, second = m.job(["true"]), m.job(["sh", "-c", "exit 4"])
    ended = m.api.wait_for_job([first.id, second.id], namespace=NS, timeout=60)
    assert [j.status.stage for j in ended] == ["COMPLETED", "ERROR"]
    assert ended[1].status.message.startswith("Job failed with exit code: 4")
    sleeper = m.sleeper()
    with pytest.raises(TimeoutError):
        m.api.wait_for_job(job_id=sleeper.id, namespace=NS, timeout=1)
    running = m.api.wait_for_job(job_id=sleeper.id, namespace=NS, stages=["RUNNING"])
    assert running.status.stage == "RUNNING"


@row("HfApi.rerun_job[]")
def _(m: Matrix) -> None:
    original = m.done_job(env={"MODE": "x"})
    again = m.api.rerun_job(job_id=original.id, namespace=NS)
    assert again.id != original.id and again.initiator.type == "duplicated-job"
    assert again.initiator.id == original.id and again.environment == {"MODE": "x"}
    m.api.wait_for_job(job_id=again.id, namespace=NS, timeout=60)
    assert m.logs(again.id) == ["line 0", "line 1", "line 2"]


@row("HfApi.cancel_job[]")
def _(m: Matrix) -> None:
    job = m.sleeper()
    m.api.cancel_job(job_id=job.id, namespace=NS)
    m.until(lambda: m.stage(job.id) == "CANCELED")


@row("HfApi.update_job_expose[replace, clear]")
def _(m: Matrix) -> None:
    job = m.sleeper(expose=[8021])
    updated = m.api.update_job_expose(job_id=job.id, namespace=NS, expose=[8021],
                                      expose_public=[8021])  # fmt: skip
    assert updated.expose == [8021] and updated.expose_public == [8021]
    cleared = m.api.update_job_expose(job_id=job.id, namespace=NS)
    assert cleared.expose is None and cleared.status.expose_urls is None


@row("HfApi.update_job_labels[]")
def _(m: Matrix) -> None:
    job = m.done_job(["true"], labels={"old": "1"})
    updated = m.api.update_job_labels(job_id=job.id, namespace=NS, labels={"new": "2"})
    assert updated.labels == {"new": "2"}
    assert m.listed(labels={"new": "2"}) == [job.id]
    assert m.listed(labels={"old": "1"}) == []


# --- HfApi: scheduled jobs ---------------------------------------------------------------------


@row("HfApi.create_scheduled_job[cron, flags, fields]")
def _(m: Matrix) -> None:
    made = m.schedule(schedule="0 9 * * 1", concurrency=True, env={"MODE": "s"},
                      labels={"team": "ml"}, timeout="10m")  # fmt: skip
    assert made.schedule == "0 9 * * 1" and made.concurrency is True and made.suspend is False
    assert made.job_spec.timeout == 600 and made.job_spec.environment == {"MODE": "s"}
    assert made.status.next_job_run_at.weekday() == 0 and made.status.last_job is None
    wire = m.raw(f"/api/scheduled-jobs/{NS}/{made.id}")
    assert "lastJob" not in wire["status"] and wire["owner"]["avatarUrl"].endswith(".svg")
    assert wire["createdBy"]["name"] == NS


@row("HfApi.create_scheduled_job[suspended]")
def _(m: Matrix) -> None:
    made = m.schedule(suspend=True)
    assert made.suspend is True and made.status.next_job_run_at is None
    assert "nextJobRunAt" not in m.raw(f"/api/scheduled-jobs/{NS}/{made.id}")["status"]


@row("HfApi.create_scheduled_job[bad cron, refused]")
def _(m: Matrix) -> None:
    with pytest.raises(huggingface_hub.errors.BadRequestError):
        m.schedule(schedule="every tuesday")
    assert m.api.list_scheduled_jobs(namespace=NS) == []


@row("HfApi.create_scheduled_job[resource_group_id, refused]")
def _(m: Matrix) -> None:
    with pytest.raises(huggingface_hub.errors.BadRequestError) as refused:
        m.schedule(resource_group_id="66980ecfc1e12a49c8f0e42d")
    assert "hfuv server has no resource groups" in str(refused.value)


@row("HfApi.create_scheduled_uv_job[URL script]")
def _(m: Matrix) -> None:
    made = m.api.create_scheduled_uv_job(m.script_url(), script_args=["x"], schedule="@daily",
                                         namespace=NS)  # fmt: skip
    assert made.job_spec.command == ["uv", "run", m.script_url(), "x"]
    job = m.api.trigger_scheduled_job(scheduled_job_id=made.id, namespace=NS)
    job = m.api.wait_for_job(job_id=job.id, namespace=NS, timeout=120)
    assert job.status.stage == "COMPLETED" and m.logs(job.id) == ["uv script ['x'] -"]


@row("HfApi.create_scheduled_uv_job[local script]")
def _(m: Matrix) -> None:
    path = write(m.tmp / "local.py", SCRIPT)
    made = m.api.create_scheduled_uv_job(str(path), schedule="@daily", image=m.uv_image,
                                         namespace=NS)  # fmt: skip
    job = m.api.trigger_scheduled_job(scheduled_job_id=made.id, namespace=NS)
    job = m.api.wait_for_job(job_id=job.id, namespace=NS, timeout=120)
    assert m.logs(job.id) == ["uv script [] -"]


@row("HfApi.list_scheduled_jobs[all, by label]")
def _(m: Matrix) -> None:
    first, second = m.schedule(labels={"team": "a"}), m.schedule(labels={"team": "b"})
    assert {s.id for s in m.api.list_scheduled_jobs(namespace=NS)} == {first.id, second.id}
    labelled = m.api.list_scheduled_jobs(namespace=NS, labels={"team": "b"})
    assert [s.id for s in labelled] == [second.id]


@row("HfApi.inspect_scheduled_job[]")
def _(m: Matrix) -> None:
    made = m.schedule()
    seen = m.api.inspect_scheduled_job(scheduled_job_id=made.id, namespace=NS)
    assert seen.id == made.id and seen.job_spec.command == ["echo", "scheduled run"]
    assert seen.owner.name == NS


@row("HfApi.delete_scheduled_job[]")
def _(m: Matrix) -> None:
    made = m.schedule()
    m.api.delete_scheduled_job(scheduled_job_id=made.id, namespace=NS)
    assert m.api.list_scheduled_jobs(namespace=NS) == []
    with pytest.raises(huggingface_hub.errors.HfHubHTTPError):
        m.api.inspect_scheduled_job(scheduled_job_id=made.id, namespace=NS)


@row("HfApi.suspend_scheduled_job[]")
def _(m: Matrix) -> None:
    made = m.schedule()
    m.api.suspend_scheduled_job(scheduled_job_id=made.id, namespace=NS)
    seen = m.api.inspect_scheduled_job(scheduled_job_id=made.id, namespace=NS)
    assert seen.suspend is True and seen.status.next_job_run_at is None


@row("HfApi.resume_scheduled_job[]")
def _(m: Matrix) -> None:
    made = m.schedule(suspend=True)
    m.api.resume_scheduled_job(scheduled_job_id=made.id, namespace=NS)
    seen = m.api.inspect_scheduled_job(scheduled_job_id=made.id, namespace=NS)
    assert seen.suspend is False and seen.status.next_job_run_at is not None


@row("HfApi.update_scheduled_job_schedule[]")
def _(m: Matrix) -> None:
    made = m.schedule()
    seen = m.api.update_scheduled_job_schedule(scheduled_job_id=made.id, schedule="@hourly",
                                               namespace=NS)  # fmt: skip
    assert seen.schedule == "@hourly" and seen.status.next_job_run_at.minute == 0


@row("HfApi.trigger_scheduled_job[run now, 409 while running]")
def _(m: Matrix) -> None:
    made = m.api.create_scheduled_job(image=IMAGE, command=["sleep", "60"], schedule="@yearly",
                                      namespace=NS)  # fmt: skip
    job = m.api.trigger_scheduled_job(scheduled_job_id=made.id, namespace=NS)
    m.created.append(job.id)
    assert job.initiator.type == "scheduled-job" and job.initiator.id == made.id
    with pytest.raises(huggingface_hub.errors.HfHubHTTPError) as busy:
        m.api.trigger_scheduled_job(scheduled_job_id=made.id, namespace=NS)
    assert busy.value.response.status_code == 409
    seen = m.api.inspect_scheduled_job(scheduled_job_id=made.id, namespace=NS)
    assert seen.status.last_job.id == job.id


@row("HfApi.update_scheduled_job_labels[]")
def _(m: Matrix) -> None:
    made = m.schedule(labels={"old": "1"})
    seen = m.api.update_scheduled_job_labels(scheduled_job_id=made.id, labels={"new": "2"},
                                             namespace=NS)  # fmt: skip
    assert seen.job_spec.labels == {"new": "2"}


@row("HfApi.sync_job_volume[local dir]")
def _(m: Matrix) -> None:
    folder = m.tmp / "inputs"
    write(folder / "data.csv", "a,b\n")
    volume = m.api.sync_job_volume(folder, "/inputs", namespace=NS)
    job = m.done_job(["cat", "/inputs/data.csv"], volumes=[volume])
    assert m.logs(job.id) == ["a,b"]


# --- HfApi: webhooks ---------------------------------------------------------------------------


@row("HfApi.create_webhook[job webhook]")
def _(m: Matrix) -> None:
    webhook = m.webhook(domains=["repo"], secret="sig", secrets={"HF_TOKEN": "hf_x"})
    assert webhook.job is not None and webhook.job.command == ["echo", "source"]
    assert webhook.domains == ["repo"] and webhook.disabled is False
    assert webhook.secret == "***" and webhook.url is None  # never the secret's value
    wire = m.raw(f"/api/settings/webhooks/{webhook.id}")["webhook"]
    assert "url" not in wire and "hf_x" not in json.dumps(wire)


@row("HfApi.create_webhook[URL webhook, refused]")
def _(m: Matrix) -> None:
    with pytest.raises(huggingface_hub.errors.BadRequestError) as refused:
        m.api.create_webhook(url="https://example.com/hook", watched=[{"type": "user",
                             "name": NS}])  # fmt: skip
    assert "hfuv server runs job webhooks only" in str(refused.value)


@row("HfApi.get_webhook[]")
def _(m: Matrix) -> None:
    webhook = m.webhook()
    seen = m.api.get_webhook(webhook.id)
    assert seen.id == webhook.id and seen.watched[0].name == "org/ds" and seen.secret is None


@row("HfApi.list_webhooks[]")
def _(m: Matrix) -> None:
    webhook = m.webhook()
    assert [w.id for w in m.api.list_webhooks()] == [webhook.id]
    from huggingface_hub import HfApi

    other = HfApi(endpoint=m.server.url, token=ServerProcess.TOKENS["other"])
    assert other.list_webhooks() == []


@row("HfApi.update_webhook[watched, domains, secret, secrets, job]")
def _(m: Matrix) -> None:
    webhook = m.webhook(secrets={"A": "1", "B": "2"})
    new_source = m.done_job(["echo", "new source"])
    updated = m.api.update_webhook(webhook.id, watched=[{"type": "model", "name": "org/m"}],
                                   domains=["discussion"], secret="s2", job_id=new_source.id,
                                   secrets={"A": "", "C": "3"})  # fmt: skip
    assert [(w.type, w.name) for w in updated.watched] == [("model", "org/m")]
    assert updated.domains == ["discussion"] and updated.secret == "***"
    assert updated.job.command == ["echo", "new source"]
    assert sorted(updated.job.secrets) == ["B", "C"]  # "" removed A; B kept; C added
    assert m.api.get_webhook(webhook.id).domains == ["discussion"]


@row("HfApi.update_webhook[without watched: the list is kept]")
def _(m: Matrix) -> None:
    webhook = m.webhook()  # the client sends `watched: []` when it is not given
    updated = m.api.update_webhook(webhook.id, domains=["repo"])
    assert [(w.type, w.name) for w in updated.watched] == [("dataset", "org/ds")]
    assert updated.domains == ["repo"]


@row("HfApi.disable_webhook[]")
def _(m: Matrix) -> None:
    webhook = m.webhook()
    assert m.api.disable_webhook(webhook.id).disabled is True
    assert m.api.get_webhook(webhook.id).disabled is True


@row("HfApi.enable_webhook[]")
def _(m: Matrix) -> None:
    webhook = m.webhook()
    m.api.disable_webhook(webhook.id)
    assert m.api.enable_webhook(webhook.id).disabled is False


@row("HfApi.delete_webhook[]")
def _(m: Matrix) -> None:
    webhook = m.webhook()
    m.api.delete_webhook(webhook.id)
    assert m.api.list_webhooks() == []
    with pytest.raises(huggingface_hub.errors.HfHubHTTPError):
        m.api.get_webhook(webhook.id)


# --- hf jobs -----------------------------------------------------------------------------------


@row("hf jobs run[follow]")
def _(m: Matrix) -> None:
    done = m.ok("jobs", "run", IMAGE, "python3", "-c", COUNT)
    assert "line 0\nline 1\nline 2\n" in done.stdout
    assert "✓ Job started" in done.stdout and " completed" in done.stdout


@row("hf jobs run[a queued job says what it waits for, on a terminal]")
def _(m: Matrix) -> None:
    import pty
    import threading

    sleepers = [m.job(["sleep", "120"]) for _ in range(8)]  # the server runs 8 at a time
    m.until(lambda: len(m.listed(status="RUNNING")) == 8)
    main, terminal = pty.openpty()  # the client shows its status line on a terminal only
    env = {**os.environ, **m.server.env(NS), "HF_HUB_DISABLE_UPDATE_CHECK": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1", "NO_COLOR": "1"}  # fmt: skip
    client = subprocess.Popen([HF, "jobs", "run", "--format", "human", IMAGE, "echo", "ran"],
                              env=env, cwd=m.tmp, stdout=subprocess.PIPE, stderr=terminal,
                              text=True)  # fmt: skip
    os.close(terminal)
    shown = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # the client has closed it
                return
            if not chunk:
                return
            shown.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    waiting = b"Waiting for a free slot: 8 of 8 jobs running (--max-parallel)"
    m.until(lambda: waiting in shown, timeout=30)
    m.api.cancel_job(job_id=sleepers[0].id, namespace=NS)  # a slot frees: the job starts
    out, _ = client.communicate(timeout=60)
    reader.join(timeout=5)
    os.close(main)
    assert client.returncode == 0 and "ran\n" in out


@row("hf jobs run[--detach, -e, -s, -l, --name, --flavor, --timeout]")
def _(m: Matrix) -> None:
    done = m.ok("jobs", "run", "-d", "-e", "MODE=cli", "-s", "TOKEN=t0k", "-l", "team=ml",
                "--name", "cli-named", "--flavor", "cpu-upgrade", "--timeout", "90s", IMAGE,
                "sh", "-c", 'echo "$MODE $TOKEN"')  # fmt: skip
    job_id = done.stdout.split("id: ")[1].split()[0]
    job = m.api.wait_for_job(job_id=job_id, namespace=NS, timeout=60)
    assert m.logs(job_id) == ["cli t0k"] and job.labels == {"team": "ml", "name": "cli-named"}
    assert m.raw(f"/api/jobs/{NS}/{job_id}")["timeout"] == 90 and job.flavor == "cpu-upgrade"


@row("hf jobs run[--env-file, --secrets-file]")
def _(m: Matrix) -> None:
    write(m.tmp / "env", "MODE=from-file\n")
    write(m.tmp / "secrets", "TOKEN=filed\n").chmod(0o600)
    done = m.ok("jobs", "run", "--env-file", "env", "--secrets-file", "secrets", IMAGE, "sh",
                "-c", 'echo "$MODE $TOKEN"')  # fmt: skip
    assert "from-file filed\n" in done.stdout


@row("hf jobs run[--attempts]")
def _(m: Matrix) -> None:
    done = m.hf("jobs", "run", "--attempts", "2", IMAGE, "sh", "-c", "echo try; exit 5")
    assert done.returncode == 1 and done.stdout.count("try") == 2
    assert "finished with stage 'ERROR': Job failed with exit code: 5 (attempt 2 of 2)" in (
        done.stderr
    )


@row("hf jobs run[--expose, --expose-public]")
def _(m: Matrix) -> None:
    done = m.ok("jobs", "run", "-d", "--expose", "8031", "--expose-public", "8032", IMAGE,
                "sleep", "30")  # fmt: skip
    job_id = done.stdout.split("id: ")[1].split()[0]
    m.created.append(job_id)
    assert f"http://{job_id}--8031.localhost:{m.server.port}" in done.stderr


@row("hf jobs run[--dry-run]")
def _(m: Matrix) -> None:
    done = m.ok("jobs", "run", "--dry-run", "-e", "A=1", IMAGE, "echo", "hi")
    assert "Job configuration" in done.stderr + done.stdout
    assert m.listed() == [], "nothing was submitted"


@row("hf jobs run[--format json]")
def _(m: Matrix) -> None:
    done = m.ok("jobs", "run", "-d", "--format", "json", IMAGE, "true")
    answer = json.loads(done.stdout)
    assert answer["url"] == f"{m.server.url}/jobs/{NS}/{answer['id']}"
    assert m.api.inspect_job(job_id=answer["id"], namespace=NS).labels == {"name": answer["name"]}


@row("hf jobs run[-d -q]")
def _(m: Matrix) -> None:
    done = m.ok("jobs", "run", "-d", "-q", IMAGE, "true")
    job_id = done.stdout.strip()
    assert m.api.inspect_job(job_id=job_id, namespace=NS).id == job_id


@row("hf jobs run[exit code of a failed job]")
def _(m: Matrix) -> None:
    done = m.hf("jobs", "run", IMAGE, "sh", "-c", "echo out; exit 3")
    assert done.returncode == 1 and "out\n" in done.stdout
    assert "finished with stage 'ERROR': Job failed with exit code: 3" in done.stderr


@row("hf jobs run[--namespace of another user, refused]")
def _(m: Matrix) -> None:
    m.refused("jobs", "run", "--namespace", "other", IMAGE, "true",
              says="You don't have access to the namespace other")  # fmt: skip


@row("hf jobs run[--token]")
def _(m: Matrix) -> None:
    done = m.hf("jobs", "run", "-d", "-q", "--token", ServerProcess.TOKENS["other"],
                "--namespace", "other", IMAGE, "true", user=NS)  # fmt: skip
    assert done.returncode == 0, done.stderr
    from huggingface_hub import HfApi

    theirs = HfApi(endpoint=m.server.url, token=ServerProcess.TOKENS["other"])
    job = theirs.inspect_job(job_id=done.stdout.strip(), namespace="other")
    assert job.owner.name == "other" and m.listed() == []


@row("hf jobs run[--ssh, refused]")
def _(m: Matrix) -> None:
    m.refused("jobs", "run", "--ssh", IMAGE, "true", says="hfuv server has no SSH access")


@row("hf jobs run[--network-group, refused]")
def _(m: Matrix) -> None:
    m.refused("jobs", "run", "--network-group", "g", IMAGE, "true",
              says="hfuv server has no network groups")  # fmt: skip


@row("hf jobs run[--resource-group-id, refused]")
def _(m: Matrix) -> None:
    m.refused("jobs", "run", "--resource-group-id", "abc", IMAGE, "true",
              says="hfuv server has no resource groups")  # fmt: skip


@row("hf jobs run[-v hf://datasets/ORG/NAME:/ds, refused on the host runtime]")
def _(m: Matrix) -> None:
    m.refused("jobs", "run", "-v", "hf://datasets/org/ds:/ds", IMAGE, "ls", "/ds",
              says="the host runtime cannot mount a volume")  # fmt: skip


@row("hf jobs run[-v ./dir:/mnt]")
def _(m: Matrix) -> None:
    write(m.tmp / "inputs" / "data.csv", "a,b\n")
    done = m.ok("jobs", "run", "-v", "./inputs:/inputs", m.image, "ls", "/inputs")
    assert "data.csv\n" in done.stdout


@row("hf jobs run[-v hf://buckets/NS/NAME:/mnt]")
def _(m: Matrix) -> None:
    m.api.create_bucket(f"{NS}/out", private=True, exist_ok=True)
    done = m.ok("jobs", "run", "-v", f"hf://buckets/{NS}/out:/out", m.image, "sh", "-c",
                "echo kept > /out/f && cat /out/f")  # fmt: skip
    assert "kept\n" in done.stdout


@row("hf jobs uv run[local script]")
def _(m: Matrix) -> None:
    write(m.tmp / "local.py", SCRIPT)
    done = m.ok("jobs", "uv", "run", *m.uv_flags(), "local.py", "--", "a")
    assert "uv script ['a'] -\n" in done.stdout


@row("hf jobs uv run[URL]")
def _(m: Matrix) -> None:
    done = m.ok("jobs", "uv", "run", *m.uv_flags(), m.script_url(), "b")
    assert "uv script ['b'] -\n" in done.stdout


@row("hf jobs uv run[a command, --with]")
def _(m: Matrix) -> None:
    # Not a file nor a URL: a command, run by `uv run` in the job with nothing to upload.
    done = m.ok("jobs", "uv", "run", "--with", "hfuv-demo-a", "python", "-c",
                "import hfuv_demo_a; print('demo', hfuv_demo_a.VALUE)")  # fmt: skip
    assert "demo a-1.1.0\n" in done.stdout


@row("hf jobs uv run[--dry-run]")
def _(m: Matrix) -> None:
    write(m.tmp / "local.py", SCRIPT)
    done = m.ok("jobs", "uv", "run", "--dry-run", "--with", "hfuv-demo-a", "local.py")
    assert "hfuv-demo-a" in done.stdout + done.stderr
    assert m.listed() == [], "nothing was submitted"


@row("hf jobs logs[ID]")
def _(m: Matrix) -> None:
    job = m.done_job()
    assert m.ok("jobs", "logs", f"{NS}/{job.id}").stdout == "line 0\nline 1\nline 2\n"


@row("hf jobs logs[-f]")
def _(m: Matrix) -> None:
    job = m.job()
    assert "line 0\nline 1\nline 2\n" in m.ok("jobs", "logs", "-f", job.id).stdout


@row("hf jobs logs[--tail]")
def _(m: Matrix) -> None:
    job = m.done_job()
    assert m.ok("jobs", "logs", "--tail", "1", job.id).stdout == "line 2\n"


@row("hf jobs logs[unknown job]")
def _(m: Matrix) -> None:
    done = m.hf("jobs", "logs", "0" * 24)
    assert done.returncode == 1 and "Job Not Found" in done.stderr


@row("hf jobs stats[ID]")
def _(m: Matrix) -> None:
    job = m.sleeper()
    done = m.ok("jobs", "stats", job.id)
    assert job.id[:18] in done.stdout and "CPU %" in done.stdout


@row("hf jobs stats[all running]")
def _(m: Matrix) -> None:
    job = m.sleeper()
    assert job.id[:18] in m.ok("jobs", "stats").stdout


@row("hf jobs list[default: running and scheduling]")
def _(m: Matrix) -> None:
    done, running = m.done_job(["true"]), m.sleeper()
    assert m.ok("jobs", "ps", "-q").stdout.split() == [running.id]
    assert done.id in m.ok("jobs", "ps", "-a", "-q").stdout.split()


@row("hf jobs list[-a, --format json]")
def _(m: Matrix) -> None:
    job = m.done_job(["true"])
    listed = json.loads(m.ok("jobs", "list", "-a", "--format", "json").stdout)
    mine = [j for j in listed if j["id"] not in m.before]
    assert [j["id"] for j in mine] == [job.id] and mine[0]["status"] == "COMPLETED"


@row("hf jobs list[--status, --label, --name]")
def _(m: Matrix) -> None:
    a = m.done_job(["true"], labels={"team": "a"}, name="alpha")
    b = m.done_job(["false"], labels={"team": "b"})
    errors = m.ok("jobs", "ls", "-q", "--status", "error").stdout.split()
    assert m.fresh(errors) == [b.id]
    assert m.ok("jobs", "ps", "-a", "-q", "--label", "team=a").stdout.split() == [a.id]
    assert m.ok("jobs", "ps", "-a", "-q", "--name", "alpha").stdout.split() == [a.id]


@row("hf jobs list[--limit]")
def _(m: Matrix) -> None:
    jobs = [m.done_job(["true"]) for _ in range(3)]
    assert m.ok("jobs", "ps", "-a", "-q", "--limit", "2").stdout.split() == [
        jobs[2].id, jobs[1].id,
    ]  # fmt: skip


@row("hf jobs hardware[]")
def _(m: Matrix) -> None:
    done = m.ok("jobs", "hardware")
    assert "cpu-basic" in done.stdout and "a10g-small" in done.stdout


@row("hf jobs inspect[one, several]")
def _(m: Matrix) -> None:
    a, b = m.done_job(["true"]), m.done_job(["true"])
    shown = json.loads(m.ok("jobs", "inspect", a.id, f"{NS}/{b.id}", "--format", "json").stdout)
    assert [j["id"] for j in shown] == [a.id, b.id]
    assert shown[0]["status"]["stage"] == "COMPLETED"


@row("hf jobs inspect[another user's job, not found]")
def _(m: Matrix) -> None:
    job = m.done_job(["true"])
    done = m.hf("jobs", "inspect", f"{NS}/{job.id}", user="other")
    assert done.returncode == 1 and "Error:" in done.stderr


@row("hf jobs rerun[--detach]")
def _(m: Matrix) -> None:
    job = m.done_job()
    done = m.ok("jobs", "rerun", "--detach", job.id)
    again = done.stdout.split("id: ")[1].split()[0]
    assert again != job.id
    assert m.api.wait_for_job(job_id=again, namespace=NS, timeout=60).status.stage == "COMPLETED"


@row("hf jobs rerun[follow]")
def _(m: Matrix) -> None:
    job = m.done_job()
    assert "line 0\nline 1\nline 2\n" in m.ok("jobs", "rerun", job.id).stdout


@row("hf jobs expose[PORT, --public, --clear]")
def _(m: Matrix) -> None:
    job = m.job(["sleep", "60"], expose=[8041])
    m.ok("jobs", "expose", job.id, "8041", "--public", "8041")
    assert m.api.inspect_job(job_id=job.id, namespace=NS).expose_public == [8041]
    m.ok("jobs", "expose", job.id, "--clear")
    assert m.api.inspect_job(job_id=job.id, namespace=NS).expose is None


@row("hf jobs cancel[]")
def _(m: Matrix) -> None:
    job = m.sleeper()
    assert "✓ Job cancelled" in m.ok("jobs", "cancel", job.id).stdout
    m.until(lambda: m.stage(job.id) == "CANCELED")


@row("hf jobs wait[]")
def _(m: Matrix) -> None:
    job = m.job()
    m.ok("jobs", "wait", job.id)
    assert m.stage(job.id) == "COMPLETED"


@row("hf jobs wait[failed job, --timeout]")
def _(m: Matrix) -> None:
    failed = m.job(["false"])
    assert m.hf("jobs", "wait", failed.id).returncode == 1
    sleeper = m.sleeper()
    timed = m.hf("jobs", "wait", "--timeout", "1", sleeper.id)
    assert timed.returncode != 0 and m.stage(sleeper.id) == "RUNNING"


@row("hf jobs labels[--label, --name, --clear]")
def _(m: Matrix) -> None:
    job = m.done_job(["true"], labels={"a": "1"})
    m.ok("jobs", "labels", job.id, "--label", "b=2", "--name", "renamed")
    assert m.api.inspect_job(job_id=job.id, namespace=NS).labels["name"] == "renamed"
    m.ok("jobs", "labels", job.id, "--clear")
    assert not m.api.inspect_job(job_id=job.id, namespace=NS).labels


@row("hf jobs ssh[ID]")
def _(m: Matrix) -> None:
    job = m.job(["sleep", "60"], ssh=True)  # refused at create: see CANNOT
    m.ok("jobs", "ssh", job.id)


@row("hf jobs ssh[a job without SSH, refused]")
def _(m: Matrix) -> None:
    job = m.sleeper()
    m.refused("jobs", "ssh", job.id, says="SSH is not enabled on this job")


# --- hf jobs scheduled -------------------------------------------------------------------------


@row("hf jobs scheduled run[schedule, --concurrency, -e]")
def _(m: Matrix) -> None:
    done = m.ok("jobs", "scheduled", "run", "--concurrency", "-e", "MODE=s", "@hourly", IMAGE,
                "echo", "hi")  # fmt: skip
    made = m.api.list_scheduled_jobs(namespace=NS)
    assert len(made) == 1 and made[0].id in done.stdout and made[0].concurrency is True
    assert made[0].schedule == "@hourly" and made[0].job_spec.environment == {"MODE": "s"}


@row("hf jobs scheduled run[--suspend]")
def _(m: Matrix) -> None:
    m.ok("jobs", "scheduled", "run", "--suspend", "0 3 * * *", IMAGE, "true")
    assert [s.suspend for s in m.api.list_scheduled_jobs(namespace=NS)] == [True]


@row("hf jobs scheduled run[--dry-run]")
def _(m: Matrix) -> None:
    m.ok("jobs", "scheduled", "run", "--dry-run", "@daily", IMAGE, "true")
    assert m.api.list_scheduled_jobs(namespace=NS) == []


@row("hf jobs scheduled run[bad cron, refused]")
def _(m: Matrix) -> None:
    done = m.hf("jobs", "scheduled", "run", "61 * * * *", IMAGE, "true")
    assert done.returncode == 1 and "Error:" in done.stderr and "Traceback" not in done.stderr


@row("hf jobs scheduled run[--resource-group-id, refused]")
def _(m: Matrix) -> None:
    m.refused("jobs", "scheduled", "run", "--resource-group-id", "abc", "@daily", IMAGE, "true",
              says="hfuv server has no resource groups")  # fmt: skip


@row("hf jobs scheduled list[default, -a, --format json]")
def _(m: Matrix) -> None:
    active, paused = m.schedule(), m.schedule(suspend=True)
    assert m.ok("jobs", "scheduled", "ps", "-q").stdout.split() == [active.id]
    listed = json.loads(m.ok("jobs", "scheduled", "list", "-a", "--format", "json").stdout)
    assert {s["id"] for s in listed} == {active.id, paused.id}


@row("hf jobs scheduled list[--label, --name]")
def _(m: Matrix) -> None:
    a, _b = m.schedule(labels={"team": "a"}, name="nightly"), m.schedule(labels={"team": "b"})
    assert m.ok("jobs", "scheduled", "ps", "-q", "--label", "team=a").stdout.split() == [a.id]
    assert m.ok("jobs", "scheduled", "ps", "-q", "--name", "nightly").stdout.split() == [a.id]


@row("hf jobs scheduled inspect[]")
def _(m: Matrix) -> None:
    made = m.schedule()
    shown = json.loads(m.ok("jobs", "scheduled", "inspect", made.id, "--format", "json").stdout)
    assert shown[0]["id"] == made.id and shown[0]["schedule"] == "@yearly"


@row("hf jobs scheduled delete[]")
def _(m: Matrix) -> None:
    made = m.schedule()
    m.ok("jobs", "scheduled", "delete", made.id)
    assert m.api.list_scheduled_jobs(namespace=NS) == []


@row("hf jobs scheduled suspend[]")
def _(m: Matrix) -> None:
    made = m.schedule()
    m.ok("jobs", "scheduled", "suspend", made.id)
    assert m.api.inspect_scheduled_job(scheduled_job_id=made.id, namespace=NS).suspend is True


@row("hf jobs scheduled resume[]")
def _(m: Matrix) -> None:
    made = m.schedule(suspend=True)
    m.ok("jobs", "scheduled", "resume", f"{NS}/{made.id}")
    assert m.api.inspect_scheduled_job(scheduled_job_id=made.id, namespace=NS).suspend is False


@row("hf jobs scheduled reschedule[]")
def _(m: Matrix) -> None:
    made = m.schedule()
    m.ok("jobs", "scheduled", "reschedule", made.id, "0 9 * * 1")
    seen = m.api.inspect_scheduled_job(scheduled_job_id=made.id, namespace=NS)
    assert seen.schedule == "0 9 * * 1"


@row("hf jobs scheduled trigger[]")
def _(m: Matrix) -> None:
    made = m.schedule()
    m.ok("jobs", "scheduled", "trigger", made.id)
    seen = m.api.inspect_scheduled_job(scheduled_job_id=made.id, namespace=NS)
    job = m.api.wait_for_job(job_id=seen.status.last_job.id, namespace=NS, timeout=60)
    assert m.logs(job.id) == ["scheduled run"]


@row("hf jobs scheduled labels[--label, --clear]")
def _(m: Matrix) -> None:
    made = m.schedule(labels={"a": "1"})
    m.ok("jobs", "scheduled", "labels", made.id, "--label", "b=2")
    seen = m.api.inspect_scheduled_job(scheduled_job_id=made.id, namespace=NS)
    assert seen.job_spec.labels["b"] == "2"
    m.ok("jobs", "scheduled", "labels", made.id, "--clear")
    assert not m.api.inspect_scheduled_job(scheduled_job_id=made.id, namespace=NS).job_spec.labels


@row("hf jobs scheduled uv run[local script]")
def _(m: Matrix) -> None:
    write(m.tmp / "local.py", SCRIPT)
    m.ok("jobs", "scheduled", "uv", "run", *m.uv_flags(), "@hourly", "local.py")
    made = m.api.list_scheduled_jobs(namespace=NS)[0]
    job = m.api.trigger_scheduled_job(scheduled_job_id=made.id, namespace=NS)
    m.api.wait_for_job(job_id=job.id, namespace=NS, timeout=120)
    assert m.logs(job.id) == ["uv script [] -"]


@row("hf jobs scheduled uv run[URL]")
def _(m: Matrix) -> None:
    m.ok("jobs", "scheduled", "uv", "run", *m.uv_flags(), "@hourly", m.script_url())
    made = m.api.list_scheduled_jobs(namespace=NS)[0]
    job = m.api.trigger_scheduled_job(scheduled_job_id=made.id, namespace=NS)
    m.api.wait_for_job(job_id=job.id, namespace=NS, timeout=120)
    assert m.logs(job.id) == ["uv script [] -"]


@row("hf jobs scheduled uv run[a command]")
def _(m: Matrix) -> None:
    m.ok("jobs", "scheduled", "uv", "run", "@hourly", "python", "-c", "print('scheduled uv')")
    made = m.api.list_scheduled_jobs(namespace=NS)[0]
    assert made.job_spec.command[:3] == ["uv", "run", "python"]
    job = m.api.trigger_scheduled_job(scheduled_job_id=made.id, namespace=NS)
    m.api.wait_for_job(job_id=job.id, namespace=NS, timeout=120)
    assert m.logs(job.id)[-1] == "scheduled uv"


@row("hf jobs scheduled uv run[--dry-run]")
def _(m: Matrix) -> None:
    write(m.tmp / "local.py", SCRIPT)
    m.ok("jobs", "scheduled", "uv", "run", "--dry-run", "@hourly", "local.py")
    assert m.api.list_scheduled_jobs(namespace=NS) == []


# --- hf webhooks -------------------------------------------------------------------------------


@row("hf webhooks create[--job-id, --watch, --domain, --secret, --secrets]")
def _(m: Matrix) -> None:
    source = m.done_job(["echo", "source"])
    done = m.ok("webhooks", "create", "--job-id", source.id, "--watch", "dataset:org/ds",
                "--domain", "repo", "--secret", "sig", "--secrets", "HF_TOKEN=hf_x")  # fmt: skip
    assert "✓ Webhook created" in done.stdout
    (webhook,) = m.api.list_webhooks()
    assert webhook.id in done.stdout and webhook.domains == ["repo"]
    assert sorted(webhook.job.secrets) == ["HF_TOKEN"]


@row("hf webhooks create[--url, refused]")
def _(m: Matrix) -> None:
    m.refused("webhooks", "create", "--url", "https://example.com/h", "--watch", "user:me",
              says="hfuv server runs job webhooks only")  # fmt: skip


@row("hf webhooks list[table, --format json]")
def _(m: Matrix) -> None:
    webhook = m.webhook()
    assert webhook.id in m.ok("webhooks", "list").stdout
    listed = json.loads(m.ok("webhooks", "list", "--format", "json").stdout)
    assert [w["id"] for w in listed] == [webhook.id]


@row("hf webhooks info[]")
def _(m: Matrix) -> None:
    webhook = m.webhook()
    done = m.ok("webhooks", "info", webhook.id)
    assert webhook.id in done.stdout and "org/ds" in done.stdout


@row("hf webhooks update[--watch, --domain]")
def _(m: Matrix) -> None:
    webhook = m.webhook()
    m.ok("webhooks", "update", webhook.id, "--watch", "model:org/m", "--domain", "repo")
    seen = m.api.get_webhook(webhook.id)
    assert [(w.type, w.name) for w in seen.watched] == [("model", "org/m")]
    assert seen.domains == ["repo"]


@row("hf webhooks update[--domain only: the watched list is kept]")
def _(m: Matrix) -> None:
    webhook = m.webhook()
    m.ok("webhooks", "update", webhook.id, "--domain", "discussion")
    seen = m.api.get_webhook(webhook.id)
    assert [(w.type, w.name) for w in seen.watched] == [("dataset", "org/ds")]
    assert seen.domains == ["discussion"]


@row("hf webhooks enable[]")
def _(m: Matrix) -> None:
    webhook = m.webhook()
    m.api.disable_webhook(webhook.id)
    m.ok("webhooks", "enable", webhook.id)
    assert m.api.get_webhook(webhook.id).disabled is False


@row("hf webhooks disable[]")
def _(m: Matrix) -> None:
    webhook = m.webhook()
    m.ok("webhooks", "disable", webhook.id)
    assert m.api.get_webhook(webhook.id).disabled is True


@row("hf webhooks delete[-y]")
def _(m: Matrix) -> None:
    webhook = m.webhook()
    m.ok("webhooks", "delete", "-y", webhook.id)
    assert m.api.list_webhooks() == []


# --- the matrix --------------------------------------------------------------------------------


def _marks(name: str) -> list[pytest.MarkDecorator]:
    if name in CANNOT:
        return [pytest.mark.skip(reason=CANNOT[name])]
    return []


@pytest.fixture(scope="module")
def matrix_server(tmp_path_factory: pytest.TempPathFactory, uv_cache: Path,
                  wheel_index: Path) -> Iterator[ServerProcess]:  # fmt: skip
    """One server for every row (each row cleans up after itself), started in the environment
    tests/conftest.py's isolated_env gives a test."""
    with pytest.MonkeyPatch.context() as patch:
        for key in list(os.environ):
            if key.startswith(("HFUV_", "UV_", "HF_", "HUGGING", "GITHUB_", "PIP_")):
                patch.delenv(key, raising=False)
        patch.delenv("VIRTUAL_ENV", raising=False)
        settings = {"UV_CACHE_DIR": str(uv_cache), "UV_PYTHON_DOWNLOADS": "never",
                    "UV_FIND_LINKS": str(wheel_index), "UV_NO_INDEX": "1",
                    "HFUV_RUNTIME": "host", "PYENV_VERSION": PYENV_VERSION}  # fmt: skip
        for key, value in settings.items():
            if value:
                patch.setenv(key, value)
        server = ServerProcess(tmp_path_factory.mktemp("matrix") / "data", "--max-parallel", "8")
        server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def files() -> Iterator[FakeHost]:
    host = FakeHost()
    yield host
    host.close()


@pytest.fixture(scope="module")
def bucket_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A podman server for the rows that mount buckets (they need a container runtime)."""
    if problem := podman_problem():
        pytest.skip(problem)
    server = ServerProcess(tmp_path_factory.mktemp("buckets") / "data", "--runtime", "podman",
                           "--max-parallel", "4").start()  # fmt: skip
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def matrix(request: pytest.FixtureRequest, files: FakeHost, tmp_path: Path) -> Iterator[Matrix]:
    if request.node.callspec.params.get("name") in BUCKET_ROWS:
        m = Matrix(request.getfixturevalue("bucket_server"), files, tmp_path,
                   image=busybox_image(), uv_image=uv_image())  # fmt: skip
    else:
        m = Matrix(request.getfixturevalue("matrix_server"), files, tmp_path)
    m.before = {job.id for job in m.api.list_jobs(namespace=NS)}
    try:
        yield m
    finally:  # the next row starts with nothing running, no schedule, webhook or label
        api = m.api
        for job in api.list_jobs(namespace=NS, status=["RUNNING", "SCHEDULING"]):
            api.cancel_job(job_id=job.id, namespace=NS)
        for schedule in api.list_scheduled_jobs(namespace=NS):
            api.delete_scheduled_job(scheduled_job_id=schedule.id, namespace=NS)
        for webhook in api.list_webhooks():
            api.delete_webhook(webhook.id)
        m.until(lambda: not list(api.list_jobs(namespace=NS, status=["RUNNING", "SCHEDULING"])))
        for job in api.list_jobs(namespace=NS):
            if job.labels:
                api.update_job_labels(job_id=job.id, namespace=NS, labels={})


@pytest.mark.parametrize("name", [pytest.param(n, marks=_marks(n), id=n) for n in ROWS])
def test_row(matrix: Matrix, name: str) -> None:
    ROWS[name](matrix)


def hfapi_job_methods() -> set[str]:
    from huggingface_hub import HfApi

    return {
        name
        for name in dir(HfApi)
        if not name.startswith("_") and callable(getattr(HfApi, name))
        and ("job" in name or "webhook" in name)
    }  # fmt: skip


def hf_commands() -> set[str]:
    """Every leaf command under `hf jobs` and `hf webhooks`, as `hf jobs scheduled uv run`."""
    import click
    from huggingface_hub.cli.hf import app

    context = click.Context(app)
    found: set[str] = set()

    def walk(command: click.Command, path: list[str]) -> None:
        if isinstance(command, click.Group):
            for name in command.list_commands(context):
                walk(command.get_command(context, name), [*path, name])
        else:
            found.add(" ".join(["hf", *path]))

    for top in ("jobs", "webhooks"):
        walk(app.get_command(context, top), [top])
    return found


def test_the_matrix_is_whole() -> None:
    """Every job/webhook method of HfApi and every `hf jobs`/`hf webhooks` command has a row,
    and no row names one that does not exist (a renamed method, a typo)."""
    covered = {name.split("[")[0] for name in ROWS}
    methods = {f"HfApi.{name}" for name in hfapi_job_methods()}
    commands = hf_commands()
    assert sorted(methods - covered) == [], "HfApi methods without a row"
    assert sorted(commands - covered) == [], "hf commands without a row"
    assert sorted(covered - methods - commands) == [], "rows of no method or command"
    assert set(ROWS) >= BUCKET_ROWS | set(CANNOT)
    # What rows exist, by kind (the report's figures come from here; `-s` prints them).
    tally: dict[str, int] = {}
    for name in ROWS:
        group = "HfApi" if name.startswith("HfApi.") else "hf"
        state = "skipped" if name in CANNOT else kind(name)
        tally[f"{group} {state}"] = tally.get(f"{group} {state}", 0) + 1
    print(json.dumps(tally, sort_keys=True))
