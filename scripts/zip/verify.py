#!/usr/bin/env python3
"""Checks a ZIP archive with two independent readers: Python's zipfile and Info-ZIP's unzip.

usage: verify.py ARCHIVE MANIFEST.json

MANIFEST: {"zip64": bool, "entries": [{"name": str, "size": int, "sha256": hex}, ...]}, the
entries in archive order. zipfile must list exactly those names and sizes, stored, and pass
testzip() (every CRC-32 against the data); each member's bytes must have the given SHA-256;
the ZIP64 end records must be there exactly when "zip64" says so; and `unzip -t` must test
every entry OK. Exits non-zero with the reasons otherwise.
"""

import hashlib
import json
import re
import shutil
import subprocess
import sys
import zipfile

CHUNK = 1 << 20


def fail(problems):
    for problem in problems:
        print(f"verify: {problem}", file=sys.stderr)
    sys.exit(1)


def has_zip64_end(path):
    """A ZIP64 end locator right before the end record (the archive has no comment)."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        if size < 42:
            return False
        f.seek(size - 42)
        return f.read(4) == b"PK\x06\x07"


def check_zipfile(path, manifest):
    problems = []
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        names = [i.filename for i in infos]
        expected = [e["name"] for e in manifest["entries"]]
        if names != expected:
            problems.append(f"names {names[:20]} != {expected[:20]}")
        for info, entry in zip(infos, manifest["entries"]):
            if info.file_size != entry["size"] or info.compress_size != entry["size"]:
                problems.append(f"{info.filename}: {info.file_size} bytes, {entry['size']} expected")
            if info.compress_type != zipfile.ZIP_STORED:
                problems.append(f"{info.filename}: method {info.compress_type}, not stored")
            digest = hashlib.sha256()
            with archive.open(info) as member:
                while chunk := member.read(CHUNK):
                    digest.update(chunk)
            if digest.hexdigest() != entry["sha256"]:
                problems.append(f"{info.filename}: bytes differ from the source")
        bad = archive.testzip()
        if bad is not None:
            problems.append(f"testzip: first bad member {bad!r}")
    zip64 = has_zip64_end(path)
    if zip64 != manifest["zip64"]:
        problems.append(f"ZIP64 end records present: {zip64}, expected {manifest['zip64']}")
    return problems


def check_unzip(path, count):
    if shutil.which("unzip") is None:
        return ["unzip is missing: run scripts/zip/install.sh (make test's scripts/prepare.sh does)"]
    run = subprocess.run(["unzip", "-t", path], capture_output=True, text=True, errors="replace")
    tested = len(re.findall(r"^\s+testing: .*\bOK$", run.stdout, re.M))
    problems = []
    if run.returncode != 0 or "No errors detected" not in run.stdout:
        problems.append(f"unzip -t exited {run.returncode}: {run.stdout[-2000:]}{run.stderr[-2000:]}")
    if tested != count:
        problems.append(f"unzip -t tested {tested} entries OK, {count} expected")
    return problems


def main():
    if len(sys.argv) != 3:
        fail([__doc__.strip().splitlines()[2]])
    path = sys.argv[1]
    with open(sys.argv[2]) as f:
        manifest = json.load(f)
    problems = check_zipfile(path, manifest) + check_unzip(path, len(manifest["entries"]))
    if problems:
        fail(problems)
    print(f"verify: {path}: {len(manifest['entries'])} entries OK (zipfile and unzip -t)")


if __name__ == "__main__":
    main()
