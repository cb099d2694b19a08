"""The cost guard: worst case shown before sending; over --max-cost, nothing is submitted."""

from __future__ import annotations

from tests.conftest import EXAMPLES, hfuv, needs_python
from tests.helpers import FakeHost, Reply

pytestmark = needs_python("3.12")


def fake_hub(price_per_minute: float) -> FakeHost:
    host = FakeHost()
    host.routes["/api/whoami-v2"] = Reply.json({"name": "me"})
    host.routes["/api/jobs/hardware"] = Reply.json([
        {"name": "h200x8", "prettyName": "8x H200", "cpu": "184 vCPU", "ram": "2048 GB",
         "accelerator": None, "unitCostMicroUSD": 0, "unitCostUSD": price_per_minute,
         "unitLabel": "minute"},
    ])  # fmt: skip
    host.routes["POST /api/jobs/me"] = Reply.json({"id": "0" * 24})
    return host


def test_max_cost_refuses_and_submits_nothing() -> None:
    host = fake_hub(40.0 / 60)
    env = {"HF_ENDPOINT": host.url, "HF_TOKEN": "t"}
    try:
        result = hfuv("run", str(EXAMPLES / "hello.py"), "--flavor", "h200x8", "--timeout", "1h",
                      "--max-cost", "5", env=env)  # fmt: skip
        from_env = hfuv("run", str(EXAMPLES / "hello.py"), "--flavor", "h200x8", "--timeout",
                        "1h", env={**env, "HFUV_MAX_COST": "5"})  # fmt: skip
    finally:
        host.close()
    assert result.code == 1
    assert "refusing to submit: h200x8 at $40.00/h × 1h timeout = at most $40.00" in result.stderr
    assert "over the max cost of $5.00" in result.stderr
    assert from_env.code == 1 and "HFUV_MAX_COST" in from_env.stderr
    assert [r for r in host.requests if r.method == "POST"] == []


def test_prices_come_from_the_endpoint() -> None:
    host = fake_hub(1.0 / 60)  # this endpoint sells h200x8 at $1/h
    try:
        result = hfuv("run", str(EXAMPLES / "hello.py"), "--flavor", "h200x8", "--timeout", "2h",
                      "--max-cost", "5", "--detach",
                      env={"HF_ENDPOINT": host.url, "HF_TOKEN": "t"})  # fmt: skip
    finally:
        host.close()
    assert result.code == 0, result.stderr
    assert "estimate: h200x8 at $1.00/h × 2h timeout = at most $2.00" in result.stderr
    assert result.stdout.strip() == "0" * 24


def test_max_cost_from_the_script_table(tmp_path) -> None:
    host = fake_hub(0.40 / 60)
    try:
        result = hfuv("run", str(EXAMPLES / "configured.py"), "--timeout", "20h",
                      env={"HF_ENDPOINT": host.url, "HF_TOKEN": "t"})  # fmt: skip
    finally:
        host.close()
    assert result.code == 1
    assert "over the max cost of $5.00 ([tool.hfuv])" in result.stderr


def test_a_flavor_newer_than_the_catalog_works_once_the_endpoint_listed_it() -> None:
    from hfuv.display import catalog_as_api
    from hfuv.flavors import CATALOG

    newer = {"name": "b300x1", "prettyName": "Nvidia B300", "cpu": "30 vCPU", "ram": "275 GB",
             "ephemeralStorage": "1000 GB", "unitCostUSD": 0.1, "unitCostMicroUSD": 100000,
             "unitLabel": "minute", "accelerator": {"type": "gpu", "model": "B300",
                                                    "quantity": "1", "vram": "288 GB"}}  # fmt: skip
    host = FakeHost()
    host.routes["GET /api/jobs/hardware"] = Reply.json(
        [*catalog_as_api(list(CATALOG.values())), newer]
    )
    env = {"HF_ENDPOINT": host.url, "HF_TOKEN": "t"}
    script = str(EXAMPLES / "show_args.py")
    try:
        before = hfuv("run", script, "--flavor", "b300x1", "--dry-run", env=env)
        assert before.code == 2 and "unknown flavor 'b300x1'" in before.stderr
        listed = hfuv("hardware", env=env)
        assert listed.code == 0 and "b300x1" in listed.stdout
        dry = hfuv("run", script, "--flavor", "b300x1", "--dry-run", "--json", env=env)
        assert dry.code == 0, dry.stderr
        assert dry.json()["body"]["flavor"] == "b300x1"
        assert dry.json()["estimate"]["usd_per_hour"] == 6.0
        local = hfuv("run", script, "--flavor", "b300x1", "--local", env=env)
        assert local.code == 0, local.stderr
        assert "env: ACCELERATOR=b300x1" in local.stdout and "env: CPU_CORES=30" in local.stdout
        assert "env: MEMORY=275Gi" in local.stdout
    finally:
        host.close()
