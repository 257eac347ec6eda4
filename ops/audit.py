"""Dependency audit: known vulnerabilities in both Python environments and the widget's
npm packages, and what the pins hold back. `make audit` runs it; `make test` (CI) too,
as a report.

    .venvs/rasa/bin/python -m ops.audit [--out build/audit] [--strict]

- Python: each environment's installed packages (`pip freeze`) are checked by pip-audit
  (.venvs/audit, installed by `make audit`) against its vulnerability service, without
  resolving anything (`--no-deps --disable-pip`: the exact versions that run).
- npm: `npm audit` over widget/package-lock.json.
- Held back: the packages of each environment with a newer release on the package
  index, and which installed package's requirement forbids it (for the Rasa
  environment, mostly Rasa 3.6's own pins; docs/security.md says what that risks).

A package the service could not check is reported as NOT AUDITED, never as clean:
pip-audit prints "No known vulnerabilities found" even when every package was skipped
(an index without its vulnerability API), and `npm audit` fails on a registry without
the advisories endpoint. The report is build/audit/report.md (and report.json).
Exit status: 0; with --strict, 1 when a vulnerability was found or a part could not be
audited.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
ENVIRONMENTS = {"rasa": ROOT / ".venvs" / "rasa", "generator": ROOT / ".venvs" / "generator"}
PIP_AUDIT = ROOT / ".venvs" / "audit" / "bin" / "pip-audit"
WIDGET = ROOT / "widget"
TIMEOUT_S = 600

# Reads, inside an environment, which installed package's requirement excludes a version:
# {package: [[requirer, specifier], ...]} for the names given on stdin.
_REQUIRERS = r"""
import json, sys
from importlib import metadata
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
wanted = {canonicalize_name(n): v for n, v in json.load(sys.stdin).items()}
out = {}
for dist in metadata.distributions():
    for line in dist.requires or []:
        try:
            req = Requirement(line)
        except Exception:
            continue
        name = canonicalize_name(req.name)
        if name in wanted and req.specifier and wanted[name] not in req.specifier \
                and (req.marker is None or req.marker.evaluate({"extra": ""})):
            out.setdefault(name, []).append([dist.metadata["Name"], str(req.specifier)])
print(json.dumps(out))
"""


@dataclass
class Part:
    name: str  # "python: rasa", "npm: widget"
    audited: int = 0  # packages the service checked
    skipped: List[str] = field(default_factory=list)  # packages it could not check, with why
    findings: List[Dict[str, str]] = field(default_factory=list)  # package, version, id, fix versions
    held_back: List[Dict[str, str]] = field(default_factory=list)  # package, installed, latest, by
    error: Optional[str] = None  # why the part could not be audited at all

    @property
    def complete(self) -> bool:
        return self.error is None and not self.skipped and self.audited > 0


def _run(cmd: List[str], cwd: Path = ROOT, stdin: Optional[str] = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=TIMEOUT_S)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return _no_address(lines[-1][:300]) if lines else "no output"


def _no_address(text: str) -> str:
    """The message without the service's address (the report names no host)."""
    return re.sub(r"\b\w+://\S+", "(the service)", text)


def _json_report(part: Part, tool: str, cmd: List[str], cwd: Path = ROOT) -> Tuple[Optional[Dict], str]:
    """The tool's JSON report and its stderr; (None, stderr) with `part.error` set when it
    did not run or printed no JSON."""
    try:
        result = _run(cmd, cwd=cwd)
    except (subprocess.TimeoutExpired, FileNotFoundError) as error:
        part.error = f"{tool} did not run: {error}"
        return None, ""
    try:
        return json.loads(result.stdout), result.stderr
    except ValueError:
        part.error = f"{tool} failed: {_last_line(result.stderr)}"
        return None, result.stderr


def python_part(env: str, venv: Path, out: Path) -> Part:
    part = Part(f"python: {env}")
    python = venv / "bin" / "python"
    if not python.exists():
        part.error = f"{venv} is missing (run `make setup`)"
        return part
    freeze = _run([str(python), "-m", "pip", "freeze", "--all", "--exclude-editable"])
    pinned = sorted(line for line in freeze.stdout.splitlines() if "==" in line)
    frozen = out / f"{env}-freeze.txt"
    frozen.write_text("\n".join(pinned) + "\n")
    held_back(part, env, python)
    if not PIP_AUDIT.exists():
        part.error = f"{PIP_AUDIT} is missing (run `make audit`)"
        return part
    report, _ = _json_report(part, "pip-audit", [str(PIP_AUDIT), "-r", str(frozen), "--no-deps", "--disable-pip",
                                                  "--format", "json", "--progress-spinner", "off"])
    if report is None:
        return part
    for dep in report.get("dependencies", []):
        if dep.get("skip_reason"):
            part.skipped.append(f"{dep['name']}: {dep['skip_reason']}")
            continue
        part.audited += 1
        for vuln in dep.get("vulns", []):
            part.findings.append({"package": dep["name"], "version": dep.get("version", ""),
                                  "id": vuln.get("id", ""), "fix": ", ".join(vuln.get("fix_versions", []))})
    return part


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def held_back(part: Part, env: str, python: Path) -> None:
    """Packages with a newer release on the index, and what keeps it out: an installed
    package's requirement, our own pin (requirements/ENV.txt), or nothing (upgradable)."""
    ours = {_key(line.split("==")[0]) for line in (ROOT / "requirements" / f"{env}.txt").read_text().splitlines()
            if "==" in line and not line.lstrip().startswith("#")}
    try:
        result = _run([str(python), "-m", "pip", "list", "--outdated", "--format", "json"])
        outdated = json.loads(result.stdout or "[]")
    except (subprocess.TimeoutExpired, ValueError):
        return
    latest = {row["name"]: row["latest_version"] for row in outdated}
    try:
        by = json.loads(_run([str(python), "-c", _REQUIRERS], stdin=json.dumps(latest)).stdout or "{}")
    except (subprocess.TimeoutExpired, ValueError):
        by = {}
    for row in outdated:
        key = _key(row["name"])
        reasons = "; ".join(f"{who} {spec}" for who, spec in by.get(key) or [])
        if key in ours:
            reasons = "; ".join(filter(None, [f"our pin (requirements/{env}.txt)", reasons]))
        part.held_back.append({"package": row["name"], "installed": row["version"], "latest": row["latest_version"],
                               "by": reasons or "nothing installed forbids it: upgradable"})


def npm_part() -> Part:
    part = Part("npm: widget")
    if not (WIDGET / "package-lock.json").exists():
        part.error = "widget/package-lock.json is missing"
        return part
    report, stderr = _json_report(part, "npm audit", ["npm", "audit", "--json", "--package-lock-only"], cwd=WIDGET)
    if report is None:
        return part
    if "error" in report or "message" in report:
        error = report.get("error")
        summary = error.get("summary") if isinstance(error, dict) else error
        part.error = f"npm audit failed: {_no_address(str(report.get('message') or summary)) or _last_line(stderr)}"
        return part
    meta = report.get("metadata", {})
    part.audited = int((meta.get("dependencies") or {}).get("total", 0))
    for name, vuln in (report.get("vulnerabilities") or {}).items():
        fix = vuln.get("fixAvailable")
        part.findings.append({"package": name, "version": vuln.get("range", ""), "id": vuln.get("severity", ""),
                              "fix": fix.get("version", "") if isinstance(fix, dict) else str(bool(fix)).lower()})
    return part


def render(parts: List[Part]) -> str:
    lines = ["# Dependency audit", ""]
    lines += ["| part | audited | not audited | vulnerabilities | newer releases held back | status |",
              "|---|---:|---:|---:|---:|---|"]
    for part in parts:
        status = ("NOT AUDITED: " + part.error) if part.error else (
            f"NOT AUDITED: {len(part.skipped)} package(s) the service could not check" if part.skipped else
            ("VULNERABLE" if part.findings else "clean"))
        lines.append(f"| {part.name} | {part.audited} | {len(part.skipped)} | {len(part.findings)} | "
                     f"{len(part.held_back)} | {status} |")
    for part in parts:
        if part.findings:
            lines += ["", f"## {part.name}: vulnerabilities", "", "| package | version | advisory | fixed in |",
                      "|---|---|---|---|"]
            lines += [f"| {f['package']} | {f['version']} | {f['id']} | {f['fix']} |" for f in part.findings]
        if part.skipped:
            lines += ["", f"## {part.name}: not audited", ""]
            lines += [f"- {why}" for why in part.skipped[:10]]
            if len(part.skipped) > 10:
                lines.append(f"- ... and {len(part.skipped) - 10} more (report.json)")
        if part.held_back:
            lines += ["", f"## {part.name}: newer releases not installed", "", "| package | installed | latest | held back by |",
                      "|---|---|---|---|"]
            lines += [f"| {h['package']} | {h['installed']} | {h['latest']} | {h['by']} |" for h in part.held_back]
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.audit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "build" / "audit"), help="report folder")
    parser.add_argument("--strict", action="store_true", help="exit 1 on a vulnerability or a part not audited")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parts = [python_part(env, venv, out) for env, venv in ENVIRONMENTS.items()] + [npm_part()]
    text = render(parts)
    (out / "report.md").write_text(text)
    (out / "report.json").write_text(json.dumps([part.__dict__ for part in parts], indent=1))
    print(text)
    print(f"report: {out / 'report.md'}")
    bad = any(part.findings or not part.complete for part in parts)
    return 1 if args.strict and bad else 0


if __name__ == "__main__":
    sys.exit(main())
