"""The shape every verification answers in: named checks, each passed, failed or unproven, with a reason.

`provanchor verify ...`, `provanchor audit verify` and `provanchor ml verify`
all print a `Report`. A verdict is only ever "ok" when at least one check ran
and every check passed: a verification that could not complete adds a failed
check saying why, so it can never read as a pass. A claim the verifier had no
way to prove (say, that a selective audit bundle holds every matching record,
when no IPFS was given to read the others) is *unproven*: not a failure of
the data, but never counted as a pass either.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Check", "Report", "Status"]

Status = Literal["pass", "fail", "unproven"]
_RANK: dict[Status, int] = {"pass": 0, "unproven": 1, "fail": 2}
_MARK: dict[Status, str] = {"pass": "PASS", "fail": "FAIL", "unproven": "UNPROVEN"}


@dataclass(frozen=True)
class Check:
    """One check: what was checked (`name`), the outcome, and why (`detail`)."""

    name: str
    ok: bool
    detail: str
    status: Status = "pass"

    def __post_init__(self) -> None:
        if self.ok != (self.status == "pass"):
            object.__setattr__(self, "status", "pass" if self.ok else "fail")

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "ok": self.ok, "status": self.status, "detail": self.detail}


@dataclass
class Report:
    """The result of verifying one subject (a record, a file, an agent's log...)."""

    subject: str
    checks: list[Check] = field(default_factory=list)
    facts: dict[str, object] = field(default_factory=dict)
    """Extra context for the reader (record id, checkpoint index...), never part of the verdict."""
    notes: list[str] = field(default_factory=list)
    """Lines printed under the subject in the readable report (the trust base, say); in JSON they are facts."""

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks)

    @property
    def verdict(self) -> Status:
        """fail if any check failed (or none ran), unproven if some claim is, else pass."""
        if not self.checks:
            return "fail"
        return max((check.status for check in self.checks), key=_RANK.__getitem__)

    def add(self, name: str, ok: bool, detail: str, status: Status | None = None) -> Check:
        """Add a check; a name already reported is merged into one check, never listed twice.

        The merged check takes the worse status of the two (fail, then
        unproven, then pass), and its detail keeps both reasons (the worse
        one first), so a reader sees each name once.
        """
        new_status: Status = status or ("pass" if ok else "fail")
        for i, existing in enumerate(self.checks):
            if existing.name == name:
                if existing.detail == detail and existing.status == new_status:
                    return existing
                worse = max(existing.status, new_status, key=_RANK.__getitem__)
                first_new = _RANK[new_status] > _RANK[existing.status]
                parts = [detail, existing.detail] if first_new else [existing.detail, detail]
                merged = Check(name, worse == "pass", "; ".join(part for part in parts if part), worse)
                self.checks[i] = merged
                return merged
        check = Check(name, new_status == "pass", detail, new_status)
        self.checks.append(check)
        return check

    def passed(self, name: str, detail: str) -> Check:
        return self.add(name, True, detail)

    def failed(self, name: str, detail: str) -> Check:
        return self.add(name, False, detail)

    def unproven(self, name: str, detail: str) -> Check:
        """A claim this verification could not prove either way: never a pass."""
        return self.add(name, False, detail, "unproven")

    def extend(self, checks: Iterable[Check]) -> None:
        for check in checks:
            self.add(check.name, check.ok, check.detail, check.status)

    def failures(self) -> list[Check]:
        return [check for check in self.checks if check.status == "fail"]

    def unproven_checks(self) -> list[Check]:
        return [check for check in self.checks if check.status == "unproven"]

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "verdict": self.verdict,
            "subject": self.subject,
            "checks": [check.to_json() for check in self.checks],
            **({"facts": self.facts} if self.facts else {}),
        }

    def render(self) -> str:
        """A readable report: one line per check, then the verdict."""
        lines = [f"verifying {self.subject}", *(f"  {note}" for note in self.notes)]
        width = max((len(check.name) for check in self.checks), default=0)
        for check in self.checks:
            lines.append(f"  {_MARK[check.status]}  {check.name.ljust(width)}  {check.detail}")
        if not self.checks:
            lines.append("  FAIL  nothing could be checked")
        failed, unproven = len(self.failures()), len(self.unproven_checks())
        if self.ok:
            lines.append("OK: every check passed")
        elif failed or not self.checks:
            lines.append(f"FAILED: {failed or 'no'} check(s) failed" + (f", {unproven} unproven" if unproven else ""))
        else:
            lines.append(f"INCOMPLETE: nothing failed, but {unproven} claim(s) could not be proven (see UNPROVEN)")
        return _checksum_addresses("\n".join(lines))


_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{40}\b")


def _checksum_addresses(text: str) -> str:
    """Addresses in human output are EIP-55 checksummed, whatever case a check's detail used."""
    from eth_utils.address import to_checksum_address

    return _ADDRESS.sub(lambda match: str(to_checksum_address(match.group(0))), text)


def exit_code(report: Report) -> int:
    """0 when every check passed, 1 when any failed, 3 when nothing failed but a claim is unproven."""
    return {"pass": 0, "fail": 1, "unproven": 3}[report.verdict]
