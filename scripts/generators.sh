#!/usr/bin/env bash
# The API contract as client generators read it: openapi-python-client and openapi-typescript
# generate from openapi.yaml, and any warning fails (a generator that warns has dropped part
# of the contract, e.g. an error answer it could not type). Then the output is checked:
#   - Python: every documented answer of every operation is parsed into a type (an error
#     answer the generator dropped would come back untyped, as None);
#   - TypeScript: the declarations compile under --strict, and a problem's `code` is typed.
# Pinned tools from scripts/tools.sh; the clients land in target/generators/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v openapi-python-client >/dev/null || [ -z "${OPENAPI_TYPESCRIPT:-}" ]; then
  eval "$(scripts/tools.sh all)"
fi

OUT="$PWD/target/generators"
rm -rf "$OUT"
mkdir -p "$OUT"
fail() {
  echo "generators: FAIL: $*" >&2
  exit 1
}

# --- openapi-python-client --------------------------------------------------------------------
# No post hooks: the check is of what the generator makes of the contract, not of a formatter.
printf 'project_name_override: haul-client\npackage_name_override: haul_client\npost_hooks: []\n' \
  >"$OUT/python-config.yaml"
if ! openapi-python-client generate --path openapi.yaml --output-path "$OUT/python" \
  --config "$OUT/python-config.yaml" --meta none >"$OUT/python.log" 2>&1; then
  cat "$OUT/python.log" >&2
  fail "openapi-python-client did not generate"
fi
if grep -qiE "warning|error|skipping|cannot" "$OUT/python.log"; then
  cat "$OUT/python.log" >&2
  fail "openapi-python-client warned (above)"
fi
PYTHON="$(dirname "$(readlink -f "$(command -v openapi-python-client)")")/python"
"$PYTHON" - "$OUT/python/api" <<'PY'
"""Every operation's documented answers, each parsed by the generated client."""
import pathlib, re, sys
from ruamel.yaml import YAML

spec = YAML(typ="safe").load(pathlib.Path("openapi.yaml"))
modules = {p.stem: p.read_text() for p in pathlib.Path(sys.argv[1]).rglob("*.py")}
missing, checked = [], 0
for path, item in spec["paths"].items():
    for method, op in item.items():
        if not isinstance(op, dict) or "operationId" not in op:
            continue
        module = re.sub(r"(?<!^)(?=[A-Z])", "_", op["operationId"]).lower()
        source = modules.get(module)
        if source is None:
            missing.append(f"{method.upper()} {path}: no module {module}")
            continue
        for status, answer in op["responses"].items():
            if "$ref" in answer:
                name = answer["$ref"].rsplit("/", 1)[-1]
                answer = spec["components"]["responses"][name]
            if not answer.get("content"):
                continue
            checked += 1
            if f"response.status_code == {status}" not in source:
                missing.append(f"{method.upper()} {path} {status}: not parsed")
if missing:
    sys.exit("generated Python client misses answers:\n  " + "\n  ".join(missing))
print(f"generators: Python client parses all {checked} documented answers with a body into types")
PY

# --- openapi-typescript -----------------------------------------------------------------------
if ! "$OPENAPI_TYPESCRIPT" openapi.yaml --output "$OUT/typescript/haul.d.ts" >"$OUT/typescript.log" 2>&1; then
  cat "$OUT/typescript.log" >&2
  fail "openapi-typescript did not generate"
fi
# It prints its banner and one line per file written; anything else is a warning.
if grep -vE "openapi-typescript [0-9.]+$|openapi\.yaml → .*haul\.d\.ts" "$OUT/typescript.log" | grep -q .; then
  cat "$OUT/typescript.log" >&2
  fail "openapi-typescript warned (above)"
fi
cat >"$OUT/typescript/check.ts" <<'TS'
// A problem answer is typed down to its code: a typo here fails to compile.
import type { paths } from "./haul";
type Initiate = paths["/v1/download/initiate"]["post"]["responses"];
const refused: Initiate[400]["content"]["application/problem+json"]["code"] = "invalid_field";
const limited: Initiate[429]["content"]["application/problem+json"]["fits"] = 0;
export { refused, limited };
TS
TSC="$(dirname "$OPENAPI_TYPESCRIPT")/tsc"
if ! "$TSC" --strict --noEmit --skipLibCheck false --target es2022 --module es2022 \
  --moduleResolution bundler "$OUT/typescript/check.ts" >"$OUT/tsc.log" 2>&1; then
  cat "$OUT/tsc.log" >&2
  fail "the TypeScript declarations do not compile (above)"
fi
echo "generators: openapi-python-client and openapi-typescript read openapi.yaml without a warning"
