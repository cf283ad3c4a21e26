#!/usr/bin/env python3
"""Step records and reports of the GPU runbooks (tools/gpu_check.sh, tools/gpu_train.sh).

    python tools/gpu_report.py step --work DIR --name build --rc 0 --seconds 81.2 [--status "..."] [--timeout 300]
    python tools/gpu_report.py render --work DIR --out OUTDIR --kind check|train

``step`` appends one line to DIR/steps.jsonl. ``render`` writes OUTDIR/gpu_report.{json,md} (``check``) or
OUTDIR/train_report.{json,md} (``train``) from everything the steps left in DIR: steps.jsonl, machine.json,
build.json, tests.xml (JUnit), memcheck.log / racecheck.log, bench.json, ddp.json, train.json,
eval/per_object.csv. Missing pieces are reported as missing, so a run cut short still gives a report. Standard
library only.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def step_status(rc: int, timeout: float | None, status: str | None) -> str:
    if status:
        return status
    if rc == 0:
        return "ok"
    if rc in (124, 137) and timeout:
        return f"timeout ({timeout:.0f} s)"
    return f"failed (exit {rc})"


def cmd_step(args: argparse.Namespace) -> int:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rec = {"name": args.name, "rc": args.rc, "seconds": round(args.seconds, 1), "timeout_s": args.timeout,
           "status": step_status(args.rc, args.timeout, args.status)}
    with open(work / "steps.jsonl", "a") as fh:
        fh.write(json.dumps(rec) + "\n")
    return 0


def read_steps(work: Path) -> list[dict[str, Any]]:
    steps = []
    try:
        for line in (work / "steps.jsonl").read_text().splitlines():
            if line.strip():
                steps.append(json.loads(line))
    except (OSError, ValueError):
        pass
    return steps


def read_tests(path: Path) -> dict[str, Any] | None:
    """Counts and failing test ids from a JUnit XML file written by pytest."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    out = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "failed": [], "skipped_reasons": {}}
    for s in suites:
        for key in ("tests", "failures", "errors", "skipped"):
            out[key] += int(s.get(key, 0))
        for case in s.iter("testcase"):
            name = f"{case.get('classname', '')}::{case.get('name', '')}"
            if case.find("failure") is not None or case.find("error") is not None:
                out["failed"].append(name)
            skip = case.find("skipped")
            if skip is not None:
                reason = (skip.get("message") or "").strip()[:120]
                out["skipped_reasons"][reason] = out["skipped_reasons"].get(reason, 0) + 1
    out["passed"] = out["tests"] - out["failures"] - out["errors"] - out["skipped"]
    return out


_REFUSED = re.compile(r"Device not supported|error 999|Target application returned an error|"
                      r"LibraryNotLoaded|unable to find|not supported on this", re.I)


def read_sanitizer(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    out: dict[str, Any] = {}
    m = re.search(r"ERROR SUMMARY: (\d+) error", text)
    if m:
        out["errors"] = int(m.group(1))
    m = re.search(r"RACECHECK SUMMARY: (\d+) hazards? displayed \((\d+) errors?, (\d+) warnings?\)", text)
    if m:
        out["hazards"], out["errors"], out["warnings"] = (int(g) for g in m.groups())
    out["program_ok"] = "\nOK" in text or text.startswith("OK")
    if "Device not supported" in text:
        out["refused"] = "compute-sanitizer: Device not supported"
    first = [ln for ln in text.splitlines() if ln.startswith("=========") and ("Invalid" in ln or "Race" in ln
                                                                               or "hazard" in ln)]
    out["first_findings"] = first[:5]
    return out


def read_eval(work: Path) -> dict[str, Any] | None:
    path = work / "eval" / "per_object.csv"
    try:
        rows = list(csv.DictReader(open(path)))
    except OSError:
        return None
    return {"rows": rows}


def build_report(work: Path, kind: str) -> dict[str, Any]:
    steps = read_steps(work)
    rep: dict[str, Any] = {
        "kind": kind,
        "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "dry_run": (work / "DRY_RUN").is_file(),
        "complete": (work / "COMPLETE").is_file(),
        "machine": _load_json(work / "machine.json"),
        "steps": steps,
        "total_seconds": round(sum(s.get("seconds", 0.0) for s in steps), 1),
    }
    if kind == "check":
        rep["build"] = _load_json(work / "build.json")
        rep["tests"] = read_tests(work / "tests.xml")
        rep["sanitizer"] = {t: read_sanitizer(work / f"{t}.log") for t in ("memcheck", "racecheck")}
        rep["benchmark"] = _load_json(work / "bench.json")
        rep["ddp"] = _load_json(work / "ddp.json")
    else:
        rep["train"] = _load_json(work / "train.json")
        rep["eval"] = read_eval(work)
        rep["precision"] = _load_json(work / "precision.json")
    return rep


# ------------------------------------------------------------------------------------------------ markdown


def _f(v: Any, nd: int = 3) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int,)) and not isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return "—" if v is None else str(v)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(_f(c) for c in r) + " |" for r in rows]
    return out


def render_md(rep: dict[str, Any]) -> str:
    title = "GPU check" if rep["kind"] == "check" else "GPU training run"
    lines = [f"# {title}{' (CPU dry run)' if rep.get('dry_run') else ''}", "",
             f"Written {rep['written']}; {'complete' if rep.get('complete') else 'PARTIAL (steps still running or cut short)'}; "
             f"{rep['total_seconds']} s in steps.", ""]
    m = rep.get("machine") or {}
    if m:
        lines += ["## Machine", ""] + _table(["what", "value"], [[k, v] for k, v in m.items()]) + [""]
    lines += ["## Steps", ""] + _table(["step", "status", "exit", "seconds", "limit s"],
                                       [[s["name"], s["status"], s["rc"], f"{s['seconds']:.1f}",
                                         None if s.get("timeout_s") is None else f"{s['timeout_s']:.0f}"]
                                        for s in rep["steps"]]) + [""]
    if rep["kind"] == "check":
        lines += _md_check(rep)
    else:
        lines += _md_train(rep)
    return "\n".join(lines) + "\n"


def _md_check(rep: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    b = rep.get("build")
    if b:
        lines += ["## Operator build", "", f"Build time {_f(b.get('seconds'), 1)} s "
                  f"(TORCH_CUDA_ARCH_LIST={b.get('arch_list') or 'unset'}).", ""]
        lines += _table(["operator", "kernels"], [[k, v] for k, v in (b.get("ops") or {}).items()]) + [""]
    t = rep.get("tests")
    if t:
        lines += ["## CUDA tests", "", f"{t['passed']} passed, {t['failures'] + t['errors']} failed, "
                  f"{t['skipped']} skipped (of {t['tests']}).", ""]
        lines += [f"- FAILED {n}" for n in t["failed"]]
        lines += [f"- skipped ×{n}: {r}" for r, n in t["skipped_reasons"].items()] + [""]
    san = rep.get("sanitizer") or {}
    if any(san.values()):
        lines += ["## compute-sanitizer", ""]
        rows = []
        for tool, r in san.items():
            if r is None:
                continue
            rows.append([tool, r.get("refused") or ("errors " + _f(r.get("errors"))), r.get("program_ok"),
                         "; ".join(r.get("first_findings") or []) or "—"])
        lines += _table(["tool", "result", "program checks passed", "first findings"], rows) + [""]
    bench = rep.get("benchmark")
    if bench:
        lines += _md_bench(bench)
    d = rep.get("ddp")
    if d:
        what = {"nccl": f"torchrun/NCCL, {d.get('world_size')} GPUs x batch 1 vs 1 GPU x batch {d.get('world_size')}",
                "cuda_vs_cpu": "1 process on CUDA vs 1 on the CPU, batch 2",
                "gloo": "torchrun/gloo, 2 CPU processes x batch 1 vs 1 x batch 2"}.get(d.get("mode"), d.get("mode"))
        lines += ["## Data-parallel training", "", f"{what}: {'agree' if d.get('ok') else 'DIFFER'} after "
                  f"{d.get('iterations', '—')} iterations" + (f" ({d['error']})" if d.get("error") else "") + ".", ""]
        lines += _table(["max weight difference", "tolerance", "max weight change", "max loss rel. difference",
                         "seconds (a / b)"],
                        [[_f(d.get("max_weight_diff"), 9), d.get("tolerance"), _f(d.get("max_weight_change"), 5),
                          _f(d.get("max_loss_rel_diff"), 7),
                          " / ".join(_f((d.get("runs") or {}).get(k, {}).get("seconds"), 1) for k in ("a", "b"))]]) \
            + [""]
    return lines


def _md_bench(bench: dict[str, Any]) -> list[str]:
    lines = ["## Benchmark", ""]
    s = bench.get("settings") or {}
    lines.append(f"{s.get('size')} px, {s.get('classes')} classes, fc_dim {s.get('fc_dim')}, trunk_width "
                 f"{s.get('trunk_width')}, {s.get('instances')} instances per frame, {s.get('frames')} frames per "
                 f"variant, device {s.get('device')}; random weights with an analytic scene substituted for the "
                 f"dense outputs (substitution cost {_f(bench.get('harness_ms'))} ms). Ratios are against `fp32` "
                 "(the estimator's defaults: fp32, channels_last, eager) from the same run.")
    lines.append("")
    rows = []
    for name, v in (bench.get("variants") or {}).items():
        if v.get("status") != "ok":
            rows.append([name, v.get("status")] + [None] * 10)
            continue
        st = v.get("stages_median_ms", {})
        r = v.get("ratio_vs_fp32", {})
        pd = v.get("pose_diff_vs_fp32") or {}
        rows.append([name, "ok", v["median_ms"], v["p99_ms"], r.get("median_ms"),
                     *(st.get(k) for k in ("preprocess", "network", "voting", "rotation", "transfer")),
                     v.get("peak_gpu_memory_mb"),
                     (f"t {pd['max_t_m']:.2e} m, R {pd['max_rot_deg']:.3f}°, score {pd['max_score']:.1e}, "
                      f"{pd['count_mismatches']} count diffs") if pd else None])
    lines += _table(["variant", "status", "median ms", "p99 ms", "× fp32", "preprocess", "network", "voting",
                     "RoI+heads", "transfer", "peak MB", "poses vs fp32"], rows) + [""]
    vt = bench.get("voting") or {}
    if "same_label" in vt:
        lines += ["Voting alone (median ms over repeats; CUDA events on a GPU):", ""]
        rows = [[mode, n, r["found"], r["median_ms"], r["p99_ms"]]
                for mode in ("same_label", "no_same_label") for n, r in (vt.get(mode) or {}).items()]
        lines += _table(["mode", "instances", "found", "median ms", "p99 ms"], rows) + [""]
    elif vt:
        lines += [f"Voting: {vt.get('status')}", ""]
    da = bench.get("dense_agreement") or {}
    if da:
        lines += [f"Dense outputs vs fp32 (random weights): {json.dumps(da)}", ""]
    sy = bench.get("syncs") or {}
    if sy:
        lines += [f"Synchronisations per steady-state frame: {json.dumps(sy)}", ""]
    summ = bench.get("summary") or {}
    if summ:
        lines += ["Targets (H200, 640x480, 22 classes): end-to-end ≤ 3 ms median, voting ≤ 0.2 ms for 5 "
                  "instances, peak GPU memory ≤ 2 GB.", ""]
        lines += _table(["figure", "measured", "met"], [
            ["e2e median ms (best variant: " + str(summ.get("best_variant")) + ")", summ.get("e2e_median_ms"),
             summ.get("e2e_ok")],
            ["voting 5 instances ms", summ.get("voting_5_ms"), summ.get("voting_ok")],
            ["peak GPU memory GB (largest variant)", summ.get("peak_gpu_memory_gb_max"), summ.get("memory_ok")],
        ]) + [""]
    return lines


def _md_train(rep: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    t = rep.get("train") or {}
    if t:
        lines += ["## Training", ""] + _table(["what", "value"], [[k, v] for k, v in t.items()]) + [""]
    ev = rep.get("eval")
    if ev and ev.get("rows"):
        cols = list(ev["rows"][0].keys())
        lines += ["## Evaluation (posecnn-eval)", ""] + _table(cols, [[r[c] for c in cols] for r in ev["rows"]])
        lines.append("")
    pr = rep.get("precision")
    if pr:
        lines += ["## bf16 vs fp32 on the test frames", "", "```", json.dumps(pr, indent=1), "```", ""]
    return lines


def cmd_render(args: argparse.Namespace) -> int:
    work, out = Path(args.work), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rep = build_report(work, args.kind)
    stem = "gpu_report" if args.kind == "check" else "train_report"
    tmp = out / f".{stem}.json.tmp"
    tmp.write_text(json.dumps(rep, indent=1, default=str))
    tmp.replace(out / f"{stem}.json")
    tmp = out / f".{stem}.md.tmp"
    tmp.write_text(render_md(rep))
    tmp.replace(out / f"{stem}.md")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("step")
    s.add_argument("--work", required=True)
    s.add_argument("--name", required=True)
    s.add_argument("--rc", type=int, required=True)
    s.add_argument("--seconds", type=float, required=True)
    s.add_argument("--timeout", type=float, default=None)
    s.add_argument("--status", default=None)
    r = sub.add_parser("render")
    r.add_argument("--work", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--kind", choices=("check", "train"), required=True)
    args = p.parse_args(argv)
    return cmd_step(args) if args.cmd == "step" else cmd_render(args)


if __name__ == "__main__":
    sys.exit(main())
