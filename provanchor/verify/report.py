"""The shape every verification answers in: named checks, each passed or failed with a reason.

`provanchor verify ...`, `provanchor audit verify` and `provanchor ml verify`
all print a `Report`. A verdict is only ever "ok" when at least one check ran
and every check passed: a verification that could not complete adds a failed
check saying why, so it can never read as a pass.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["Check", "Report"]


@dataclass(frozen=True)
class Check:
    """One check: what was checked (`name`), the outcome, and why (`detail`)."""

    name: str
    ok: bool
    detail: str

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


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

    def add(self, name: str, ok: bool, detail: str) -> Check:
        """Add a check; a name already reported is merged into one check, never listed twice.

        The merged check passes only if both did, and its detail keeps both
        reasons (the failing one first), so a reader sees each name once.
        """
        for i, existing in enumerate(self.checks):
            if existing.name == name:
                if existing.detail == detail and existing.ok == ok:
                    return existing
                parts = [detail, existing.detail] if existing.ok and not ok else [existing.detail, detail]
                merged = Check(name, existing.ok and ok, "; ".join(part for part in parts if part))
                self.checks[i] = merged
                return merged
        check = Check(name, ok, detail)
        self.checks.append(check)
        return check

    def passed(self, name: str, detail: str) -> Check:
        return self.add(name, True, detail)

    def failed(self, name: str, detail: str) -> Check:
        return self.add(name, False, detail)

    def extend(self, checks: Iterable[Check]) -> None:
        for check in checks:
            self.add(check.name, check.ok, check.detail)

    def failures(self) -> list[Check]:
        return [check for check in self.checks if not check.ok]

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "subject": self.subject,
            "checks": [check.to_json() for check in self.checks],
            **({"facts": self.facts} if self.facts else {}),
        }

    def render(self) -> str:
        """A readable report: one line per check, then the verdict."""
        lines = [f"verifying {self.subject}", *(f"  {note}" for note in self.notes)]
        width = max((len(check.name) for check in self.checks), default=0)
        for check in self.checks:
            mark = "PASS" if check.ok else "FAIL"
            lines.append(f"  {mark}  {check.name.ljust(width)}  {check.detail}")
        if not self.checks:
            lines.append("  FAIL  nothing could be checked")
        failed = len(self.failures())
        verdict = "OK: every check passed" if self.ok else f"FAILED: {failed or 'no'} check(s) failed"
        lines.append(verdict)
        return _checksum_addresses("\n".join(lines))


_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{40}\b")


def _checksum_addresses(text: str) -> str:
    """Addresses in human output are EIP-55 checksummed, whatever case a check's detail used."""
    from eth_utils.address import to_checksum_address

    return _ADDRESS.sub(lambda match: str(to_checksum_address(match.group(0))), text)
