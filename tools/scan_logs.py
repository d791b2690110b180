#!/usr/bin/env python3
"""Scans log files for secrets and personal data (issue 9: "log output of the whole test suite is
scanned for PII and keys").

    python3 tools/scan_logs.py LOG [LOG...]

Looks for API keys (`sk-...`, and the retail demo's `demo-cNNNN` keys), e-mail addresses, US social security numbers, payment card numbers (Luhn-valid, 13-19
digits, with or without separators) and phone numbers. Prints each finding with its file and line
(the value itself masked) and exits 1 if there is any.
"""

import re
import sys

PATTERNS = {
    "api key": re.compile(r"\bsk-[A-Za-z0-9][A-Za-z0-9_-]{3,}|\bdemo-c\d{4}\b"),
    "e-mail": re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"),
    "ssn": re.compile(r"\b\d{3}-\d{2}-\d{4}\b"),
    "phone": re.compile(r"(?<![\d.])(?:\+1[ -]?)?\(?\d{3}\)?[ -]\d{3}-\d{4}\b|\+1[ -]\d{3}[ -]\d{4}\b"),
}
# Not the digits of a decimal fraction (latencies such as 0.018567999999999998 are in every log).
CARD = re.compile(r"(?<!\d)(?<!\d\.)(?:\d[ -]?){12,18}\d(?!\d|\.\d)")


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def mask(value: str) -> str:
    return value[:3] + "*" * max(0, len(value) - 3)


def scan(path: str) -> list:
    findings = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            for kind, pattern in PATTERNS.items():
                for m in pattern.finditer(line):
                    findings.append((path, n, kind, m.group(0)))
            for m in CARD.finditer(line):
                digits = re.sub(r"\D", "", m.group(0))
                # Card-like digit runs with separators or 15-16 digits that pass the Luhn check.
                if 13 <= len(digits) <= 19 and luhn(digits) and len(set(digits)) > 2:
                    findings.append((path, n, "card number", m.group(0)))
    return findings


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    findings = [f for p in sys.argv[1:] for f in scan(p)]
    for path, n, kind, value in findings:
        print(f"{path}:{n}: {kind}: {mask(value)}")
    lines = sum(1 for p in sys.argv[1:] for _ in open(p, encoding="utf-8", errors="replace"))
    print(f"scanned {lines} log lines in {len(sys.argv) - 1} file(s): {len(findings)} finding(s)")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
