"""hfuv's benchmarks against the official client (huggingface_hub) and uv, in one run.

    python bench/run.py [--runs N] [--quick]

Each figure is the median of N runs after one warm-up, measured here, now, against the same
`hfuv server`; the ratio compares hfuv with its rival measured in the same run. The table is
printed and written to bench/results/latest.json. Budgets come from shared/DESIGN.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TOKEN = "bench-token"


def compile_sources() -> None:
    """Byte-compile hfuv as `pip install` does, so an editable checkout is measured fairly
    (PYTHONDONTWRITEBYTECODE would otherwise make every run compile hfuv from source)."""
    import compileall

    compileall.compile_dir(str(ROOT / "hfuv"), quiet=1)


def ensure_installed() -> None:
    """hfuv with its server, and the official client, in this interpreter's environment."""
    missing = []
    if not (BIN / "hfuv").exists() or importlib.util.find_spec("uvicorn") is None:
        missing.append(f"{ROOT}[server]")
    if importlib.util.find_spec("huggingface_hub") is None:
        missing.append("huggingface_hub==2.4.0")
    if missing:
        print(f"installing {', '.join(missing)}", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)
        importlib.invalidate_caches()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed(argv: list[str], env: dict[str, str], stdin: str | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one command; fails loudly if the command fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, input=stdin, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:4])}… failed ({done.returncode}): {done.stderr[-800:]}"
        )
    return wall, max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before)


def serve_for_run_uv_job(script: Path) -> tuple[ThreadingHTTPServer, str]:
    """A file server on 127.0.0.1 for `script`, and the Python code with which the official
    client runs it from that URL (its path that needs no bucket)."""
    files = ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: SimpleHTTPRequestHandler(
        *a, directory=str(script.parent)))  # fmt: skip
    threading.Thread(target=files.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{files.server_address[1]}/{script.name}"
    return files, f"from huggingface_hub import HfApi; HfApi().run_uv_job({url!r}, namespace='me')"


def median_of(runs: int, action: Callable[[], float], warmups: int = 1) -> float:
    for _ in range(warmups):
        action()
    return statistics.median(action() for _ in range(runs))


class Bench:
    def __init__(self, runs: int, quick: bool) -> None:
        self.runs = runs
        self.quick = quick
        self.rows: list[dict] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="hfuv-bench-"))
        self.port = free_port()
        self.env = {
            **os.environ,
            "HF_ENDPOINT": f"http://127.0.0.1:{self.port}",
            "HF_TOKEN": TOKEN,
            "HF_HUB_DISABLE_UPDATE_CHECK": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_EXPERIMENTAL_WARNING": "1",
            "HFUV_CACHE_DIR": str(self.tmp / "hfuv-cache"),
            "HF_HOME": str(self.tmp / "hf-home"),
            "UV_PYTHON_DOWNLOADS": "never",
        }
        self.server: subprocess.Popen[str] | None = None

    # --- plumbing ------------------------------------------------------------------------

    def start_server(self) -> None:
        self.server = subprocess.Popen(
            [sys.executable, "-m", "hfuv", "server", "--port", str(self.port), "--data-dir",
             str(self.tmp / "server"), "--token", f"me={TOKEN}", "--max-parallel", "2",
             "--runtime", "host",  # the figures are the API's; images cannot be pulled here
             "--max-log-size", "2G",  # log_tail's 1 GiB log is kept whole
             "--insecure-shared-host"],  # one user; as root, jobs could not reach a tmp dir
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        for _ in range(300):
            try:
                request = urllib.request.Request(
                    f"{self.env['HF_ENDPOINT']}/api/whoami-v2",
                    headers={"authorization": f"Bearer {TOKEN}"},
                )
                urllib.request.urlopen(request, timeout=1).read()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("hfuv server did not start")

    def stop(self) -> None:
        if self.server:
            self.server.terminate()
            self.server.wait(timeout=30)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def settle(self) -> None:
        """Wait until the server runs no job, so one benchmark's jobs do not slow the next."""
        from hfuv.client import JobsClient

        with JobsClient(endpoint=self.env["HF_ENDPOINT"], token=TOKEN, environ={}) as client:
            for _ in range(1200):
                if not client.list_jobs("me", stages=("RUNNING", "SCHEDULING")):
                    return
                time.sleep(0.25)

    def hfuv(self, *args: str) -> list[str]:
        return [str(BIN / "hfuv"), *args]

    def hf(self, *args: str) -> list[str]:
        return [str(BIN / "hf"), *args]

    def wall(self, argv: list[str], stdin: str | None = None, *,
             idle_server: bool = False) -> Callable[[], float]:  # fmt: skip
        def once() -> float:
            if idle_server:
                self.settle()
            return timed(argv, self.env, stdin)[0]

        return once

    def record(self, name: str, ours: float, rival: float, rival_name: str, unit: str,
               budget: str, ok: bool) -> None:  # fmt: skip
        ratio = ours / rival if rival else float("nan")
        self.rows.append({"benchmark": name, "hfuv": ours, "rival": rival,
                          "rival_name": rival_name, "unit": unit, "ratio": ratio,
                          "budget": budget, "meets_budget": ok})  # fmt: skip
        mark = "ok" if ok else "MISSED"
        print(f"  {name:<44} hfuv {ours:9.3f}{unit:<7} {rival_name} {rival:9.3f}{unit:<7} "
              f"ratio {ratio:6.3f}  budget {budget:<8} {mark}", flush=True)  # fmt: skip

    def compare(self, name: str, ours: list[str], rival: list[str], rival_name: str,
                budget: float, *, idle_server: bool = False, warmups: int = 1) -> None:  # fmt: skip
        """`idle_server`: before each run, wait (untimed) until the server runs no job, so the
        jobs submitted by earlier runs do not compete for the CPU with the one measured."""
        mine = median_of(self.runs, self.wall(ours, idle_server=idle_server), warmups)
        theirs = median_of(self.runs, self.wall(rival, idle_server=idle_server), warmups)
        ok = mine <= budget * theirs
        self.record(name, mine, theirs, rival_name, "s", f"≤ {budget:.3g}×", ok)

    # --- the benchmarks ------------------------------------------------------------------

    def startup(self) -> None:
        self.compare("hfuv --help", self.hfuv("--help"), self.hf("jobs", "--help"),
                     "hf jobs --help", 1 / 3)  # fmt: skip
        self.compare(
            "hfuv run --help",
            self.hfuv("run", "--help"),
            self.hf("jobs", "uv", "run", "--help"),
            "hf jobs uv run --help",
            1 / 3,
        )

    def submit(self) -> None:
        self.compare("hfuv exec --detach python:3.12 -- true",
                     self.hfuv("exec", "--detach", "python:3.12", "--", "true"),
                     self.hf("jobs", "run", "--detach", "python:3.12", "true"),
                     "hf jobs run --detach", 1 / 2, idle_server=True)  # fmt: skip
        script = ROOT / "examples" / "hello.py"
        files, official = serve_for_run_uv_job(script)
        try:
            self.compare("hfuv run --detach hello.py (warm)",
                         self.hfuv("run", "--detach", str(script)),
                         [sys.executable, "-c", official], "run_uv_job(URL)", 1 / 2,
                         idle_server=True)  # fmt: skip
        finally:
            files.shutdown()

    def local(self) -> None:
        script = ROOT / "examples" / "with_deps.py"
        found = subprocess.run([str(BIN / "uv"), "python", "find", "3.12"], env=self.env,
                               capture_output=True, text=True).stdout.strip()  # fmt: skip
        # Two warm-ups: the first creates the script's environment, and the first run in a
        # new environment is slower for uv itself (for either command).
        self.compare("hfuv run --local with_deps.py (warm)",
                     self.hfuv("run", "--local", str(script)),
                     [str(BIN / "uv"), "run", "--python", found or "3.12", str(script)],
                     "uv run --python 3.12", 1.5, warmups=2)  # fmt: skip

    def edited(self, argv: list[str], script: Path, *,
               idle_server: bool = False) -> Callable[[], float]:  # fmt: skip
        """One run of `argv` after a comment line is appended to `script` (untimed)."""

        def once() -> float:
            if idle_server:
                self.settle()
            with script.open("a") as out:
                out.write(f"# edit {time.perf_counter_ns()}\n")
            return timed(argv, self.env)[0]

        return once

    def edit_loop(self) -> None:
        """The loop people live in: edit the code, run again; and a new script's first run."""
        uv = str(BIN / "uv")
        found = subprocess.run([uv, "python", "find", "3.12"], env=self.env,
                               capture_output=True, text=True).stdout.strip() or "3.12"  # fmt: skip
        ours, theirs = self.tmp / "edit-hfuv" / "edited.py", self.tmp / "edit-uv" / "edited.py"
        for copy in (ours, theirs):
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / "examples" / "with_deps.py", copy)
        mine = median_of(self.runs, self.edited(self.hfuv("run", "--local", str(ours)), ours), 2)
        rival = median_of(self.runs, self.edited([uv, "run", "--python", found, str(theirs)],
                                                 theirs), 2)  # fmt: skip
        self.record("hfuv run --local edited.py (warm)", mine, rival, "uv run --python 3.12",
                    "s", "≤ 1.2×", mine <= 1.2 * rival)  # fmt: skip

        detached = self.tmp / "edit-detach" / "hello.py"
        detached.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "examples" / "hello.py", detached)
        files, official = serve_for_run_uv_job(ROOT / "examples" / "hello.py")
        try:
            mine = median_of(self.runs, self.edited(self.hfuv("run", "--detach", str(detached)),
                                                    detached, idle_server=True))  # fmt: skip
            rival = median_of(self.runs, self.wall([sys.executable, "-c", official],
                                                   idle_server=True))  # fmt: skip
        finally:
            files.shutdown()
        self.record("hfuv run --detach edited.py", mine, rival, "run_uv_job(URL)", "s",
                    "≤ 0.5×", mine <= 0.5 * rival)  # fmt: skip

        counter = iter(range(10_000))

        def first_run(command: Callable[[Path], list[str]]) -> Callable[[], float]:
            def once() -> float:
                script = self.tmp / "first" / f"new{next(counter)}" / "new.py"
                script.parent.mkdir(parents=True)
                shutil.copy(ROOT / "examples" / "with_deps.py", script)
                return timed(command(script), self.env)[0]

            return once

        lock_and_run = (f"{uv} lock -q --script \"$1\" && "
                        f"{uv} run -q --python {found} \"$1\"")  # fmt: skip
        mine = median_of(self.runs, first_run(lambda p: self.hfuv("run", "--local", str(p))))
        rival = median_of(self.runs, first_run(lambda p: ["sh", "-c", lock_and_run, "-",
                                                          str(p)]))  # fmt: skip
        self.record("first run of a new script (uv cache warm)", mine, rival,
                    "uv lock + uv run", "s", "≤ 1.1×", mine <= 1.1 * rival)  # fmt: skip

    def sweep(self) -> None:
        count = 16 if self.quick else 64
        script = str(ROOT / "examples" / "hello.py")
        ours = timed(
            self.hfuv(
                "run", "--detach", script, "--matrix", "i=" + ",".join(str(i) for i in range(count))
            ),
            self.env,
        )[0]
        started = time.perf_counter()
        for _ in range(count):
            timed(self.hf("jobs", "run", "--detach", "python:3.12", "true"), self.env)
        theirs = time.perf_counter() - started
        self.record(
            f"{count}-job sweep, submitted",
            ours,
            theirs,
            f"{count}× hf jobs run -d",
            "s",
            "≥ 20× faster",
            theirs >= 20 * ours,
        )

    def logs(self) -> None:
        lines = 50_000 if self.quick else 200_000
        program = (f"import sys\nfor b in range({lines // 1000}):\n"
                   "    sys.stdout.write(''.join(f'log line {b}-{i}\\n' for i in range(1000)))\n"
                   )  # fmt: skip
        script = self.tmp / "chatty.py"
        script.write_text(program)
        run = subprocess.run(self.hfuv("run", "--detach", str(script)), env=self.env,
                             capture_output=True, text=True, check=True)  # fmt: skip
        job_id = run.stdout.strip()
        subprocess.run(self.hfuv("wait", job_id), env=self.env, capture_output=True, check=True)
        ours_time, ours_mem = self._follow(self.hfuv("logs", "-f", job_id))
        theirs_time, theirs_mem = self._follow(self.hf("jobs", "logs", "-f", job_id))
        ours, theirs = lines / ours_time, lines / theirs_time
        self.record(f"logs -f of {lines // 1000}k lines", ours, theirs, "hf jobs logs -f",
                    " l/s", "≥ 2×", ours >= 2 * theirs)  # fmt: skip
        self.rows[-1].update(
            hfuv_peak_rss_mib=ours_mem / 1024, rival_peak_rss_mib=theirs_mem / 1024
        )
        print(
            f"  {'':<44} peak memory: hfuv {ours_mem / 1024:.0f} MiB, "
            f"hf {theirs_mem / 1024:.0f} MiB"
        )

    def _follow(self, argv: list[str]) -> tuple[float, int]:
        """Median time, and peak RSS measured in a fresh process (RUSAGE_CHILDREN only grows)."""
        wall = median_of(max(1, self.runs // 2), self.wall(argv))
        probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], "
                 "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
                 "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")  # fmt: skip
        rss = subprocess.run([sys.executable, "-c", probe, *argv], env=self.env,
                             capture_output=True, text=True).stdout.strip()  # fmt: skip
        return wall, int(rss or 0)

    def log_tail(self) -> None:
        """Server memory while it serves `tail=10^9` of a 1 GiB log (256 MiB with --quick),
        and how long another request waits meanwhile."""
        from hfuv.client import JobsClient

        size = (256 if self.quick else 1024) * 1024 * 1024
        lines = size // 1024  # the job's lines are 1,000 bytes; each is ~1 KiB logged
        program = (
            "import sys\nline = 'z' * 989\n"
            f"for i in range({lines}): sys.stdout.write(f'{{i:010d}} {{line}}\\n')\n"
        )
        with JobsClient(endpoint=self.env["HF_ENDPOINT"], token=TOKEN, environ={}) as client:
            job = client.create_job("me", {"command": [sys.executable, "-c", program],
                                           "dockerImage": "python:3.12"})  # fmt: skip
        waited = subprocess.run(self.hfuv("wait", job["id"]), env=self.env, capture_output=True,
                                text=True)  # fmt: skip
        if waited.returncode != 0:
            raise RuntimeError(f"the log_tail job failed: {waited.stdout}{waited.stderr}")
        assert self.server is not None
        status = Path(f"/proc/{self.server.pid}/status")

        def rss_mib() -> float:
            line = next(li for li in status.read_text().splitlines() if li.startswith("VmRSS:"))
            return int(line.split()[1]) / 1024

        idle, peak, waits = rss_mib(), [0.0], []
        streaming = threading.Event()

        auth = {"authorization": f"Bearer {TOKEN}"}

        def watch() -> None:
            whoami = urllib.request.Request(f"{self.env['HF_ENDPOINT']}/api/whoami-v2",
                                            headers=auth)  # fmt: skip
            while streaming.is_set():
                peak.append(rss_mib())
                started = time.perf_counter()
                urllib.request.urlopen(whoami, timeout=60).read()
                waits.append(time.perf_counter() - started)
                time.sleep(0.05)

        request = urllib.request.Request(
            f"{self.env['HF_ENDPOINT']}/api/jobs/me/{job['id']}/logs?tail=1000000000",
            headers=auth,
        )
        streaming.set()
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        started = time.perf_counter()
        served = 0
        with urllib.request.urlopen(request, timeout=120) as response:
            first = None
            for raw in response:
                first = first or time.perf_counter() - started
                if raw.startswith(b"data: "):
                    served += 1
                elif raw.startswith(b": caught-up"):
                    break
        total = time.perf_counter() - started
        streaming.clear()
        watcher.join()
        growth, ok = max(peak) - idle, max(peak) - idle <= 64
        name = f"logs?tail=10^9 of a {size >> 20} MiB log"
        self.rows.append({"benchmark": name, "server_idle_rss_mib": idle,
                          "server_peak_rss_mib": max(peak), "rss_growth_mib": growth,
                          "first_line_s": first, "total_s": total, "lines": served,
                          "other_request_max_ms": max(waits, default=0) * 1000,
                          "budget": "≤ 64 MiB over idle", "meets_budget": ok})  # fmt: skip
        print(f"  {name:<44} server RSS {idle:.0f} → {max(peak):.0f} MiB; first line "
              f"{(first or 0) * 1000:.0f} ms, {served} lines in {total:.1f} s; another request "
              f"waited ≤ {max(waits, default=0) * 1000:.0f} ms  budget ≤ 64 MiB "
              f"{'ok' if ok else 'MISSED'}", flush=True)  # fmt: skip

    def server_load(self) -> None:
        from hfuv.client import JobsClient

        clients, per_client = 20, 3 if self.quick else 10
        creates: list[float] = []
        lists: list[float] = []

        def work(_: int) -> None:
            client = JobsClient(endpoint=self.env["HF_ENDPOINT"], token=TOKEN, environ={})
            for _ in range(per_client):
                started = time.perf_counter()
                client.create_job("me", {"command": ["true"], "dockerImage": "python:3.12"})
                creates.append(time.perf_counter() - started)
                started = time.perf_counter()
                client.list_jobs("me", stages=("RUNNING",))
                lists.append(time.perf_counter() - started)
            client.close()

        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(work, range(clients)))
        elapsed = time.perf_counter() - started

        def pct(values: list[float], q: float) -> float:
            return sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1000

        summary = {"benchmark": "server, 20 concurrent clients",
                   "jobs_per_second": len(creates) / elapsed,
                   "create_p50_ms": pct(creates, 0.5), "create_p99_ms": pct(creates, 0.99),
                   "list_p50_ms": pct(lists, 0.5), "list_p99_ms": pct(lists, 0.99)}  # fmt: skip
        self.rows.append(summary)
        print(
            f"  {'server, 20 concurrent clients':<44} {summary['jobs_per_second']:.0f} jobs/s; "
            f"create p50 {summary['create_p50_ms']:.0f} ms p99 {summary['create_p99_ms']:.0f} "
            f"ms; list p50 {summary['list_p50_ms']:.0f} ms p99 {summary['list_p99_ms']:.0f} ms"
        )

    def listing(self) -> None:
        """`GET /api/jobs/{ns}` with 10,000 jobs of realistic 100 KiB specs in the namespace,
        on a server of its own: alone (the first page, `hf jobs ps`'s filter, a label filter, a
        page deep in the list) and 10 clients at once."""
        count = 2_000 if self.quick else 10_000
        data_dir = self.tmp / "listing"
        started = time.perf_counter()
        fill_jobs(data_dir, "me", count)
        print(f"  {'':<44} {count} jobs stored in {time.perf_counter() - started:.0f} s",
              flush=True)  # fmt: skip
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "hfuv", "server", "--port", str(port), "--data-dir",
             str(data_dir), "--token", f"me={TOKEN}", "--runtime", "host"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            for _ in range(300):
                try:
                    lister = Lister(port)
                    break
                except OSError:
                    time.sleep(0.1)
            first, links = lister.get("/api/jobs/me")
            deep = links
            for _ in range(21):  # page 22: a cursor deep in the list
                deep = lister.get(deep)[1]
            paths = {
                "first page (50 jobs)": "/api/jobs/me",
                "hf jobs ps (RUNNING, SCHEDULING)": "/api/jobs/me?stage=RUNNING&stage=SCHEDULING",
                "label filter, first page": "/api/jobs/me?label=team=vision",
                "page 22, by cursor": deep,
            }
            figures = {name: lister.latencies(path, 40) for name, path in paths.items()}
            lister.close()
            listers = [Lister(port) for _ in range(10)]
            started = time.perf_counter()
            with ThreadPoolExecutor(10) as pool:
                concurrent = [
                    t
                    for ts in pool.map(
                        lambda one: one.latencies("/api/jobs/me", 5, warmups=0), listers
                    )
                    for t in ts
                ]
            wall = time.perf_counter() - started
            for one in listers:
                one.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
        load = os.getloadavg()[0]
        print(f"  {'':<44} first page: {len(first) / 2**20:.1f} MiB; load average {load:.1f}")
        for name, values in figures.items():
            p50, p95 = percentile(values, 0.5), percentile(values, 0.95)
            print(f"  {f'list, {count} jobs: {name}':<60} p50 {p50:6.1f} ms  p95 {p95:6.1f} ms")
        p50 = percentile(figures["first page (50 jobs)"], 0.5)
        self.rows.append({
            "benchmark": f"GET /api/jobs/{{ns}} with {count} jobs", "hfuv": p50, "unit": "ms",
            "budget": "p50 < 50 ms", "meets_budget": p50 < 50, "load_average": load,
            "p95_ms": percentile(figures["first page (50 jobs)"], 0.95),
            **{f"{name} p50_ms": percentile(v, 0.5) for name, v in figures.items()},
            "10 concurrent: p50_ms": percentile(concurrent, 0.5),
            "10 concurrent: p95_ms": percentile(concurrent, 0.95),
            "10 concurrent: wall_s": wall,
        })  # fmt: skip
        print(f"  {'list, 10 clients at once (5 lists each)':<60} p50 "
              f"{percentile(concurrent, 0.5):6.1f} ms  p95 {percentile(concurrent, 0.95):6.1f} "
              f"ms; {wall:.2f} s for all 50; budget p50 < 50 ms alone: "
              f"{'ok' if p50 < 50 else 'MISSED'}")  # fmt: skip


class Lister:
    """One keep-alive HTTP/1.1 connection to a server's job list (the standard library's
    client: the figures are the server's, not a client's parsing)."""

    def __init__(self, port: int) -> None:
        import http.client

        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.connection.connect()

    def get(self, path: str) -> tuple[bytes, str]:
        """The answer's body, and the path its `Link: rel="next"` names ("" for none)."""
        self.connection.request("GET", path, headers={"authorization": f"Bearer {TOKEN}"})
        response = self.connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status} {body[:200]!r}")
        link = response.getheader("link") or ""
        return body, link[link.find("/api/") : link.find(">")] if "next" in link else ""

    def latencies(self, path: str, runs: int, warmups: int = 2) -> list[float]:
        """Milliseconds of each of `runs` GETs of `path`, until the last byte is read."""
        values = []
        for index in range(warmups + runs):
            started = time.perf_counter()
            self.get(path)
            if index >= warmups:
                values.append((time.perf_counter() - started) * 1000)
        return values

    def close(self) -> None:
        self.connection.close()


def fill_jobs(data_dir: Path, namespace: str, count: int) -> None:
    """`count` ended jobs in a new data dir, through the server's Store, each with a spec the
    size of a real hfuv job's (~100 KiB: the bootstrap, and a bundle that does not compress)."""
    import base64
    import random

    from hfuv.payload import bootstrap_source
    from hfuv.server.store import JobRecord, Store

    owner = {"id": "0" * 24, "name": namespace, "type": "user"}
    bootstrap, rng = bootstrap_source(), random.Random(11)
    stages = ["COMPLETED"] * 8 + ["ERROR", "CANCELED"]
    store = Store(data_dir / "jobs.db")
    now = time.time()
    for index in range(count):
        bundle = base64.b64encode(rng.randbytes(69_000)).decode()
        spec = {
            "command": ["python3", "-c", bootstrap, "--epochs", str(index)],
            "arguments": [], "flavor": "cpu-basic", "timeoutSeconds": 1800,
            "dockerImage": "ghcr.io/astral-sh/uv:0.9.7-python3.12-trixie",
            "environment": {"HFUV_SCRIPT": "train.py", "HFUV_PYTHON": "3.12",
                            "HFUV_UV_VERSION": "0.9.7", "HFUV_BUNDLE_0": bundle,
                            "HFUV_BUNDLE_SHA256": f"{index:064x}"},
            "secrets": {"HF_TOKEN": "hf_not_a_real_token"},
            "labels": {"name": f"train-{index:05d}", "team": rng.choice(["nlp", "vision"])},
        }  # fmt: skip
        created = now - (count - index) * 60
        store.create(JobRecord(
            id=f"{int(created):08x}{index:016x}", namespace=namespace, owner=owner,
            initiator=owner, spec=spec, stage=rng.choice(stages), exit_code=0,
            created_at=created, started_at=created + 1, finished_at=created + 30,
        ))  # fmt: skip
    store.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="measured runs per figure")
    parser.add_argument("--quick", action="store_true", help="smaller sweep, log and load")
    steps = (
        "edit_loop",
        "startup",
        "submit",
        "local",
        "sweep",
        "logs",
        "log_tail",
        "server_load",
        "listing",
    )
    parser.add_argument("--only", metavar="STEP,…",
                        help=f"run only these benchmarks ({', '.join(steps)})")  # fmt: skip
    options = parser.parse_args()
    chosen = options.only.split(",") if options.only else list(steps)
    unknown = sorted(set(chosen) - set(steps))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(steps)}")
    ensure_installed()
    compile_sources()
    bench = Bench(options.runs, options.quick)
    print(f"hfuv benchmarks: median of {options.runs} runs after a warm-up "
          f"({platform.python_version()}, {os.cpu_count()} CPUs)", flush=True)  # fmt: skip
    try:
        bench.start_server()
        for step in chosen:
            getattr(bench, step)()
            bench.settle()
    finally:
        bench.stop()
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    document = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "runs": options.runs,
                "python": platform.python_version(), "rows": bench.rows}  # fmt: skip
    (results / "latest.json").write_text(json.dumps(document, indent=2))
    missed = [row["benchmark"] for row in bench.rows if row.get("meets_budget") is False]
    print(f"written to {results / 'latest.json'}" + (f"; missed: {', '.join(missed)}" if missed
                                                      else "; every budget met"))  # fmt: skip
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
