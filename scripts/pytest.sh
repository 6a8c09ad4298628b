#!/usr/bin/env bash
# Run the test suite on one database engine: `scripts/pytest.sh sqlite|postgres [pytest args...]`.
# The tests read TEST_DATABASE_URL (unset = a temporary SQLite file); this script sets or clears it.
set -euo pipefail

engine="${1:-}"
shift || true
venv="${VENV:-.venv}"
pytest_bin="$venv/bin/pytest"
[[ -x "$pytest_bin" ]] || { echo "pytest.sh: $pytest_bin not found; run 'make install-test'" >&2; exit 2; }

case "$engine" in
  sqlite)
    unset TEST_DATABASE_URL
    ;;
  postgres)
    if [[ -z "${TEST_POSTGRES_URL:-}" ]]; then
      echo "pytest.sh: TEST_POSTGRES_URL is not set (start one with: eval \"\$(scripts/postgres.sh start)\")" >&2
      exit 2
    fi
    export TEST_DATABASE_URL="$TEST_POSTGRES_URL"
    ;;
  *)
    echo "usage: scripts/pytest.sh sqlite|postgres [pytest args...]" >&2
    exit 2
    ;;
esac

echo "== pytest on $engine"
rc=0
"$pytest_bin" -q -p no:cacheprovider "$@" || rc=$?
case "$rc" in
  0) echo "== pytest on $engine: passed" ;;
  5) echo "pytest.sh: no tests were collected on $engine: that is a failure, not a pass" >&2 ;;
  *) echo "pytest.sh: pytest on $engine failed (exit $rc)" >&2 ;;
esac
exit "$rc"
