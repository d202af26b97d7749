#!/usr/bin/env python3
"""Check that the pinned Python packages the tests use are installed, at their pins.

Usage: python3 tools/python/check_requirements.py REQUIREMENTS.txt [...]
Reads `name==version` lines (comments and blank lines ignored) and looks each
distribution up with importlib.metadata, so nothing is imported and a package that is
missing or at another version is named with the file that pins it. Prints one line per
problem and the pip command that fixes them; exit 1 if there is any, 0 if none.
"""

import sys
from importlib import metadata


def pins(path):
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            name, sep, version = line.partition("==")
            if not sep or not name.strip() or not version.strip():
                sys.exit(f"{path}:{n}: expected name==version, found {line!r}")
            yield name.strip(), version.strip()


def main():
    problems = []
    for path in sys.argv[1:]:
        for name, want in pins(path):
            try:
                have = metadata.version(name)
            except metadata.PackageNotFoundError:
                problems.append(f"{name}=={want} ({path}) is not installed")
                continue
            if have != want:
                problems.append(f"{name}=={want} ({path}) is installed at {have}")
    if problems:
        for p in problems:
            print(f"missing Python package: {p}", file=sys.stderr)
        files = " ".join(f"-r {p}" for p in sys.argv[1:])
        print(f"install them with: {sys.executable} -m pip install {files}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
