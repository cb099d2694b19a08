"""GET /api/jobs/{ns} on a real `hfuv server`: pages, filters and order, as hfuv, HfApi and
`hf jobs ps` read them, with a few jobs or thousands."""

from __future__ import annotations

import json
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from hfuv.server.store import JobRecord, Store
from tests.conftest import ServerProcess, hfuv
from tests.test_official_client import hf
from tests.test_server import api, wait_stage

MANY = 1_234  # 24 pages of 50, the last one short


def get(server: ServerProcess, url: str, user: str = "me") -> tuple[int, list, str]:
    """Status, body and the `Link: rel="next"` URL ("" for none) of a GET of `url`."""
    token = ServerProcess.TOKENS[user]
    request = urllib.request.Request(url, headers={"authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            link = response.headers.get("Link") or ""
            nxt = link[link.index("<") + 1 : link.index(">")] if 'rel="next"' in link else ""
            return response.status, json.loads(response.read()), nxt
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), ""


def all_pages(server: ServerProcess, query: str) -> list[list[str]]:
    """The ids of each page, following the server's links from `?query`."""
    url, pages = f"{server.url}/api/jobs/me?{query}", []
    while url:
        status, jobs, url = get(server, url)
        assert status == 200, jobs
        pages.append([job["id"] for job in jobs])
    return pages


def create(server: ServerProcess, command: list[str], labels: dict[str, str]) -> str:
    body = {"command": command, "dockerImage": "python:3.12", "labels": labels}
    status, job = api(server, "/api/jobs/me", method="POST", body=body)
    assert status == 200, job
    return job["id"]


def test_pages_are_newest_first_and_a_new_job_shifts_no_page(server: ServerProcess) -> None:
    ids = [create(server, ["true"], {"n": str(i)}) for i in range(7)]
    pages = all_pages(server, "limit=3")
    assert pages == [ids[:3:-1], ids[3:0:-1], ids[:1]]
    status, first, nxt = get(server, f"{server.url}/api/jobs/me?limit=3&label=n")
    assert status == 200 and "label=n" in nxt and "limit=3" in nxt  # filters kept in the link
    newer = create(server, ["true"], {"n": "new"})
    _, second, _ = get(server, nxt)  # the page after the first, as it was: nothing repeated
    assert [j["id"] for j in first + second] == ids[:0:-1]
    assert all_pages(server, "limit=50")[0][0] == newer


def test_filters_by_stage_and_label(server: ServerProcess) -> None:
    ok = create(server, ["true"], {"team": "ml", "env": "prod"})
    failed = create(server, ["false"], {"team": "ml"})
    other = create(server, ["true"], {"team": "cv"})
    for job_id in (ok, failed, other):
        wait_stage(server, job_id, {"COMPLETED", "ERROR"})

    def listed(query: str) -> list[str]:
        return [job_id for page in all_pages(server, query) for job_id in page]

    assert listed("stage=ERROR") == [failed]
    assert listed("stage=completed") == [other, ok]  # stages in any case, as HfApi upper-cases
    assert listed("stage=COMPLETED&stage=ERROR&label=team=ml") == [failed, ok]
    assert listed("label=env=prod") == [ok] and listed("label=env=dev") == []
    assert listed("label=env") == [ok]  # a key alone: any value
    assert listed("label=team=ml&label=env") == [ok]  # every label must match
    assert listed("stage=RUNNING") == [] and listed("label=team=nlp") == []
    status, _ = api(server, f"/api/jobs/me/{ok}/labels", method="PUT",
                      body={"labels": {"team": "nlp"}})  # fmt: skip
    assert status == 200
    assert listed("label=team=nlp") == [ok] and listed("label=env") == []  # relabelled
    assert hfuv("ps", "-a", "--label", "team=ml", "--json", env=server.env()).json()[0]["id"] == (
        failed
    )


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=x", "limit=-1", "limit=%C2%B2",
                                   f"limit={'9' * 5000}", "cursor=nosuchjob"])  # fmt: skip
def test_a_bad_page_request_is_a_400_that_says_what_is_wrong(
    server: ServerProcess, query: str
) -> None:
    create(server, ["true"], {})
    status, body, _ = get(server, f"{server.url}/api/jobs/me?{query}")
    assert status == 400
    name = query.partition("=")[0]
    assert f"`{name}`" in body["error"]


def test_a_cursor_of_another_namespace_is_refused(server: ServerProcess) -> None:
    mine = create(server, ["true"], {})
    status, body, _ = get(server, f"{server.url}/api/jobs/other?cursor={mine}", user="other")
    assert status == 400 and "no job of other" in body["error"]


def fill(data_dir: Path, count: int) -> list[str]:
    """`count` ended jobs of `me` stored as the server stores them; their ids, newest first."""
    store = Store(data_dir / "jobs.db")
    owner = {"id": "0" * 24, "name": "me", "type": "user"}
    ids = []
    for index in range(count):
        spec = {"command": ["true"], "dockerImage": "python:3.12", "flavor": "cpu-basic",
                "environment": {"INDEX": str(index), "TEXT": "é\u2028\"\\"},
                "labels": {"parity": "odd" if index % 2 else "even"}}  # fmt: skip
        job_id = f"{index:024x}"
        stage = "ERROR" if index % 10 == 0 else "COMPLETED"
        store.create(JobRecord(job_id, "me", owner, owner, spec, stage=stage,
                               created_at=1e9 + index // 3))  # three jobs each second  # fmt: skip
        ids.append(job_id)
    store.close()
    return ids[::-1]


def test_a_namespace_with_many_jobs_lists_every_one_once(tmp_path: Path) -> None:
    from huggingface_hub import HfApi

    newest_first = fill(tmp_path / "data", MANY)
    server = ServerProcess(tmp_path / "data").start()
    try:
        api_ = HfApi(endpoint=server.url, token=ServerProcess.TOKENS["me"])
        listed = list(api_.list_jobs(namespace="me"))
        assert [job.id for job in listed] == newest_first  # 25 pages, each job once, in order
        assert listed[-1].environment == {"INDEX": "0", "TEXT": 'é\u2028"\\'}
        errors = [job.id for job in api_.list_jobs(namespace="me", status="ERROR")]
        assert errors == [job_id for job_id in newest_first if int(job_id, 16) % 10 == 0]
        even = api_.list_jobs(namespace="me", status=["ERROR"], labels={"parity": "even"})
        assert [job.id for job in even] == errors  # every tenth is even
        assert list(api_.list_jobs(namespace="me", status="ERROR", labels={"parity": "odd"})) == []
        ps = hf(server, "jobs", "ps", "-a", "--limit", "0", "--format", "json")
        assert ps.returncode == 0, ps.stderr
        assert [job["id"] for job in json.loads(ps.stdout)] == newest_first
        ours = hfuv("ps", "-a", "--label", "parity=even", "--json", env=server.env())
        assert [job["id"] for job in ours.json()] == newest_first[1::2]
        assert [len(page) for page in all_pages(server, "")] == [50] * 24 + [MANY - 1200]
    finally:
        server.stop()


def test_an_older_data_dir_lists_with_its_labels_and_environments(tmp_path: Path) -> None:
    """A data dir of a server from before labels and environments had their own tables."""
    data = tmp_path / "data"
    data.mkdir()
    old = sqlite3.connect(data / "jobs.db")
    old.execute(
        "CREATE TABLE jobs (id TEXT PRIMARY KEY, namespace TEXT NOT NULL, owner TEXT NOT NULL, "
        "initiator TEXT NOT NULL, spec TEXT NOT NULL, stage TEXT NOT NULL, message TEXT, "
        "exit_code INTEGER, pid INTEGER, created_at REAL NOT NULL, started_at REAL, "
        "finished_at REAL)"
    )
    owner = json.dumps({"id": "0" * 24, "name": "me", "type": "user"})
    for index, team in enumerate(["ml", "cv", "ml"]):
        spec = {"command": ["true"], "dockerImage": "python:3.12", "labels": {"team": team},
                "environment": {"N": str(index)}}  # fmt: skip
        row = (f"old{index}", owner, owner, json.dumps(spec), 1e9 + index)
        old.execute("INSERT INTO jobs VALUES (?, 'me', ?, ?, ?, 'COMPLETED', NULL, 0, NULL, ?, "
                    "NULL, NULL)", row)  # fmt: skip
    old.commit()
    old.close()
    server = ServerProcess(data).start()
    try:
        status, jobs, _ = get(server, f"{server.url}/api/jobs/me?label=team=ml")
        assert status == 200
        assert [(job["id"], job["environment"]) for job in jobs] == [
            ("old2", {"N": "2"}), ("old0", {"N": "0"})]  # fmt: skip
        status, job = api(server, "/api/jobs/me/old1")
        assert status == 200 and job["environment"] == {"N": "1"}
    finally:
        server.stop()


def test_a_stored_nan_never_breaks_a_listing(tmp_path: Path) -> None:
    """A record an older server let in, with numbers JSON cannot carry: listed, as null."""
    owner = {"id": "0" * 24, "name": "me", "type": "user"}
    store = Store(tmp_path / "data" / "jobs.db")
    spec = {"command": ["true"], "dockerImage": "python:3.12", "timeoutSeconds": float("nan"),
            "flavor": {"odd": float("inf")}, "labels": {"name": "\ud800"}}  # fmt: skip
    store.create(JobRecord("poisoned", "me", owner, owner, spec, stage="COMPLETED"))
    store.create(JobRecord("fine", "me", owner, owner, {"command": ["true"]}, stage="ERROR"))
    store.close()
    server = ServerProcess(tmp_path / "data").start()
    try:
        status, jobs, _ = get(server, f"{server.url}/api/jobs/me")
        assert status == 200 and {job["id"] for job in jobs} == {"poisoned", "fine"}
        poisoned = next(job for job in jobs if job["id"] == "poisoned")
        assert poisoned["timeout"] is None and poisoned["flavor"] == {"odd": None}
        listed = hfuv("ps", "-a", "--json", env=server.env())
        assert listed.code == 0 and len(listed.json()) == 2, listed.stderr
    finally:
        server.stop()
