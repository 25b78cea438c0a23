"""Bulk Data `$export` benchmark: throughput and memory of a system export of all shared data.

Usage: `make bench` (runs it after bench/rest.py and bench/booking.py) or
`.venv/bin/python bench/export.py [--copies 9]`. Needs ../shared/data.

Loads every data set of ../shared/data the server reads (Synthea bulk 1,000 and the Synthea
patient Bundles, the HL7 R4 examples, SMART Scheduling Links, IHE ITI Scheduling; as
tests/test_load_shared_data.py) into a fresh SQLite file, starts `fhir-server serve` (one
uvicorn worker, authorization on, a `system/*.rs` administrator token), then measures:

  ceiling   the bench process reading `content` of every current resource straight from the
            SQLite file and writing it to one file (no server, no checks): the baseline
  search    the same resources through the FHIR API: `GET [type]?_count=1000` following
            `next` links, type after type (what a client without $export does)
  export    `GET [base]/$export` with `Prefer: respond-async` until the manifest; the time is
            from the kick-off to the last file written (file mtimes); every file downloaded
            and its lines counted against the manifest
  reads     `GET Patient/{id}` one after another while the export runs, against the same
            reads on the idle server (p50/p99 ms): what the export costs other requests

The two Subscriptions of the HL7 examples are deleted first (their endpoints are on the
Internet: their deliveries are other work). Memory: the server's peak RSS during the export (VmHWM, reset before each export), minus its
RSS before. Then the data is copied `--copies` times more (the export's own files, ids
suffixed) and everything is measured again: flat memory means the same peak whatever the size.
Prints resources/s and the ratio to the ceiling measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from booking_common import serve, server_env
from rest import BIN, DATA, ROOT, admin_token, free_port, rss_mib, wait_up

sys.path.insert(1, str(ROOT))
from tests.test_load_shared_data import DATASETS  # every data set the server reads

ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
NOT_COPIED = {"OperationDefinition", "StructureDefinition", "Subscription"}


def load(db: Path, paths: list[Path]) -> float:
    """`fhir-server load` (rejections are reported, not fatal: one HL7 example is refused)."""
    t0 = time.perf_counter()
    done = subprocess.run(
        [
            str(BIN / "fhir-server"),
            "load",
            "--quiet",
            "--database-url",
            f"sqlite:///{db}",
            *map(str, paths),
        ],
        check=False,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    last = [line for line in done.stdout.splitlines() if line.startswith("loaded ")]
    print(f"  {last[-1] if last else done.stdout[-300:]} in {time.perf_counter() - t0:.1f} s")
    return time.perf_counter() - t0


def ceiling(db: Path, out: Path) -> tuple[int, float]:
    """Every current resource's content read straight from SQLite into one file."""
    t0 = time.perf_counter()
    n = 0
    conn = sqlite3.connect(db)
    with out.open("wb") as fh:
        for (content,) in conn.execute(
            "SELECT content FROM resources WHERE deleted = 0 ORDER BY res_type, seq"
        ):
            fh.write(content)
            fh.write(b"\n")
            n += 1
    conn.close()
    return n, time.perf_counter() - t0


def search_all(http: httpx.Client, base: str, types: list[str]) -> tuple[int, float]:
    """Every resource of `types` through search paging (`_count=1000`, `next` links)."""
    t0 = time.perf_counter()
    n = 0
    for rtype in types:
        url: str | None = f"{base}/{rtype}?_count=1000"
        while url:
            bundle = http.get(url).json()
            n += len(bundle.get("entry", []))
            url = next(
                (link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None
            )
    return n, time.perf_counter() - t0


def reads(
    http: httpx.Client, base: str, ids: list[str], stop: threading.Event | None, n: int = 300
) -> list[tuple[float, float]]:
    """`(start, ms)` of sequential `GET Patient/{id}`: `n` of them, or until `stop`."""
    out: list[tuple[float, float]] = []
    i = 0
    while (stop is None and i < n) or (stop is not None and not stop.is_set()):
        start, t0 = time.time(), time.perf_counter()
        assert http.get(f"{base}/Patient/{ids[i % len(ids)]}").status_code == 200
        out.append((start, (time.perf_counter() - t0) * 1000))
        i += 1
    return out


def anon_mib(pid: int) -> float:
    """The process's anonymous resident memory (heap, not the mmap'ed database file)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else float("nan")


def export(
    http: httpx.Client, base: str, pid: int, export_dir: Path, ids: list[str]
) -> dict[str, Any]:
    """One system export, measured (see the module docstring)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset the peak RSS (VmHWM)
    before, anon_before = rss_mib(pid), anon_mib(pid)
    stop = threading.Event()
    latencies: list[tuple[float, float]] = []
    anon: list[float] = []

    def sample() -> None:
        while not stop.is_set():
            anon.append(anon_mib(pid))
            time.sleep(0.002)

    reader = threading.Thread(
        target=lambda: latencies.extend(
            reads(httpx.Client(headers=http.headers, timeout=60), base, ids, stop)
        )
    )
    sampler = threading.Thread(target=sample)
    sampler.start()
    reader.start()
    time.sleep(0.2)
    t0 = time.time()
    response = http.get(f"{base}/$export", headers=ASYNC)
    assert response.status_code == 202, response.text
    status = response.headers["content-location"]
    while True:
        time.sleep(0.75)
        polled = http.get(status)
        if polled.status_code == 200:
            break
        assert polled.status_code in (202, 429), polled.text
    stop.set()
    reader.join()
    sampler.join()
    manifest = polled.json()
    folder = export_dir / status.rsplit("/", 1)[1]
    finished = max(p.stat().st_mtime for p in folder.iterdir())
    peak = _peak_mib(pid)
    total = 0
    t1 = time.perf_counter()
    for item in manifest["output"]:
        lines = http.get(item["url"]).content.count(b"\n")
        assert lines == item["count"], item
        total += lines
    download = time.perf_counter() - t1
    return {
        "resources": total,
        "seconds": finished - t0,
        "rss_before": before,
        "rss_peak": peak,
        "anon_before": anon_before,
        "anon_peak": max(anon),
        "files": len(manifest["output"]),
        "download_s": download,
        "reads": [ms for start, ms in latencies if t0 <= start <= finished],
        "idle_reads": [ms for start, ms in latencies if start < t0],
        "folder": folder,
        "manifest": manifest,
    }


def _peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def copies_of(folder: Path, manifest: dict[str, Any], copies: int, out: Path) -> list[Path]:
    """ndjson files holding `copies` copies of the exported resources, ids suffixed."""
    files = []
    for item in manifest["output"]:
        if item["type"] in NOT_COPIED:
            continue
        source = folder / item["url"].rsplit("/", 1)[1]
        target = out / source.name
        with source.open("rb") as src, target.open("w") as dst:
            for line in src:
                resource = json.loads(line)
                resource.pop("meta", None)
                base = resource["id"][:58]
                for k in range(1, copies + 1):
                    resource["id"] = f"{base}-c{k}"
                    dst.write(json.dumps(resource) + "\n")
        files.append(target)
    return files


def measure(
    http: httpx.Client, base: str, pid: int, db: Path, tmp: Path, label: str
) -> dict[str, Any]:
    ids = [e["resource"]["id"] for e in http.get(f"{base}/Patient?_count=200").json()["entry"]]
    types = [r["type"] for r in http.get(f"{base}/metadata").json()["rest"][0]["resource"]]
    row: dict[str, Any] = {"label": label}
    row["ceiling"] = ceiling(db, tmp / "ceiling.ndjson")
    row["idle"] = [ms for _, ms in reads(http, base, ids, None)]
    row["export"] = export(http, base, pid, tmp / "exports", ids)
    row["again"] = export(http, base, pid, tmp / "exports", ids)
    stored, _ = row["ceiling"]
    for run in ("export", "again"):
        exported = row[run]["resources"]
        if exported != stored:
            print(f"  {label} {run}: {exported} resources exported of {stored} stored!")
    counted = {i["type"] for i in row["export"]["manifest"]["output"]}
    row["search"] = search_all(http, base, [t for t in types if t in counted])
    return row


def unsubscribe(http: httpx.Client, base: str) -> None:
    """Delete the Subscriptions of the HL7 examples (endpoints on the Internet): their
    deliveries, retried in the background, are not what this measures."""
    for entry in http.get(f"{base}/Subscription?_count=100").json().get("entry", []):
        assert http.delete(f"{base}/Subscription/{entry['resource']['id']}").status_code == 200
        print(f"  deleted Subscription/{entry['resource']['id']} (not measured here)")


def report(rows: list[dict[str, Any]]) -> None:
    print(
        f"\n1 uvicorn worker, SQLite, {os.cpu_count()} cores; resources/s and the ratio to the "
        "ceiling; each export run twice (the second with SQLite's page cache warm)"
    )
    print(
        f"{'data':<9} {'resources':>9} {'ceiling/s':>10} {'search/s':>15} {'export/s':>15} "
        f"{'RSS before/peak':>16} {'heap before/peak':>17} {'reads idle p50/p99':>19} {'during export':>22}"
    )
    for row in rows:
        n, c_s = row["ceiling"]
        sn, s_s = row["search"]
        ceil_rate, search_rate = n / c_s, sn / s_s
        idle = row["idle"]
        for run, label in (("export", row["label"]), ("again", f"{row['label']} again")):
            e = row[run]
            export_rate, busy = e["resources"] / e["seconds"], e["reads"]
            print(
                f"{label:<9} {e['resources']:>9} {ceil_rate:>10.0f} "
                f"{search_rate:>8.0f} ({search_rate / ceil_rate:>4.0%}) {export_rate:>8.0f} ({export_rate / ceil_rate:>4.0%}) "
                f"{e['rss_before']:>6.0f}/{e['rss_peak']:<5.0f}MiB {e['anon_before']:>7.0f}/{e['anon_peak']:<5.0f}MiB "
                f"{pct(idle, 0.5):>8.2f}/{pct(idle, 0.99):<6.2f} ms {pct(busy, 0.5):>6.2f}/{pct(busy, 0.99):<6.2f} ms (n={len(busy)})"
            )
            print(
                f"{'':<9} export {e['seconds']:.2f} s, {e['files']} files, downloaded in {e['download_s']:.2f} s; "
                f"search {s_s:.2f} s; ceiling {c_s:.2f} s; max read during export {max(busy, default=float('nan')):.1f} ms"
            )
    print(
        "RSS counts the database pages SQLite maps (mmap_size 256 MiB) and caches (cache_size 64 MiB); "
        "'heap' is the anonymous memory (RssAnon, SQLite's page cache included) sampled every 2 ms."
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--copies",
        type=int,
        default=9,
        help="extra copies of the data for the second round (0: none)",
    )
    args = parser.parse_args()
    if not DATA.exists():
        print(f"needs ../shared/data ({DATA} is absent)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="fhir-export-bench-"))
    db = tmp / "bench.db"
    print(f"loading {', '.join(DATASETS)} into {db} ...")
    load(db, [DATA / d for d in DATASETS])
    port = free_port()
    env = {
        **server_env(f"sqlite:///{db}", port, tmp),
        "FHIR_SERVER_EXPORT_DIR": str(tmp / "exports"),
        "FHIR_SERVER_EXPORT_POLL_SECONDS": "1",
    }
    proc = serve(env, port, 1)
    rows = []
    try:
        base = f"http://127.0.0.1:{port}/fhir"
        wait_up(f"{base}/metadata", proc)
        token = admin_token(env)
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=120) as http:
            unsubscribe(http, base)
            rows.append(measure(http, base, proc.pid, db, tmp, "1x"))
            if args.copies:
                out = tmp / "copies"
                out.mkdir()
                first = rows[0]["export"]
                files = copies_of(first["folder"], first["manifest"], args.copies, out)
                print(
                    f"loading {args.copies} more copies ({sum(1 for f in files for _ in f.open())} resources) ..."
                )
                load(db, files)
                rows.append(measure(http, base, proc.pid, db, tmp, f"{args.copies + 1}x"))
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    report(rows)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
