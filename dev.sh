#!/usr/bin/env bash
# Developer and CI tasks for archive.py. Works on a stock Debian 12 (as root it installs the
# system packages it needs with apt; otherwise it prints the command). `make X` = `./dev.sh X`.
#
#   ./dev.sh setup          system packages + .venv (requirements-dev.txt); the other commands do it too
#   ./dev.sh test [ARGS]    the whole test suite; ARGS go to pytest (e.g. -k resume, -m "not server":
#                           only the tests that need no server, and then no MariaDB, Galera or
#                           percona-toolkit either, just the venv)
#   ./dev.sh lint           ruff check, mypy (settings in pyproject.toml), pycodestyle's continuation checks
#   ./dev.sh cov [ARGS]     the suite under coverage, archive.py subprocesses included; fails below
#                           [tool.coverage.report] fail_under
#   ./dev.sh py39           on Python 3.9 (.venv-py39): import archive.py, run the tests needing no MariaDB
#   ./dev.sh demo           narrated demo on a throwaway MariaDB
#   ./dev.sh bench-tiny     bench/bench.py on 3,000 rows: seconds, keeps the benchmark working
#   ./dev.sh ci             lint, cov, py39, bench-tiny: what .ci/run runs
#   ./dev.sh clean          remove venvs, caches and coverage data
#
# Environment: PYTHON (default python3) builds .venv; PY39 names a Python 3.9; ARCHIVE_TEST_DSN=
# mysql://user:pw@host:port runs the tests against an existing server (no local MariaDB needed).
# The tests and the bench start private mariadbd processes on temp sockets; no server you
# run is touched.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=.venv
VENV39=.venv-py39
# What every command may need; `setup` and `ci` make sure of all of them.
# prometheus: only its promtool, which checks the metrics file (the package's service is not used).
ALL_PACKAGES=(mariadb-server galera-4 rsync percona-toolkit prometheus time python3-venv)

say() { printf '%s\n' "dev.sh: $*" >&2; }
die() { say "$*"; exit 1; }

# ------------------------------------------------------------------ system packages

# True when what the Debian package provides is already here (from any source).
present() {
  case $1 in
    mariadb-server) { command -v mariadbd || test -x /usr/sbin/mariadbd; } &&
                    { command -v mariadb-install-db || test -x /usr/bin/mariadb-install-db; } ;;
    galera-4) test -e /usr/lib/galera/libgalera_smm.so || test -e /usr/lib/libgalera_smm.so ;;
    rsync) command -v rsync ;;
    percona-toolkit) command -v pt-archiver ;;
    prometheus) command -v promtool ;;
    time) test -x /usr/bin/time ;;
    python3-venv) "$PYTHON" -c 'import ensurepip, venv' ;;
    *) die "internal: no probe for package $1" ;;
  esac >/dev/null 2>&1
}

# need PKG...: install the missing ones (root) or say exactly what to install and fail.
need() {
  local missing=() pkg
  for pkg in "$@"; do present "$pkg" || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing ${missing[*]} with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    for pkg in "${missing[@]}"; do present "$pkg" || die "$pkg still missing after apt-get install"; done
  else
    say "missing system packages: ${missing[*]}"
    say "install them with:  sudo apt-get install -y ${missing[*]}"
    [ -n "${ARCHIVE_TEST_DSN:-}" ] ||
      say "(or run the tests against an existing server: ARCHIVE_TEST_DSN=mysql://user:pw@host:port ./dev.sh test)"
    exit 1
  fi
}

# Packages for the test suite: none when it runs against an external server.
need_for_tests() {
  # percona-toolkit: the tests run a real pt-online-schema-change against the server under test;
  # prometheus: promtool checks the metrics file
  if [ -n "${ARCHIVE_TEST_DSN:-}" ]; then need python3-venv percona-toolkit prometheus
  else need mariadb-server galera-4 rsync percona-toolkit prometheus python3-venv; fi
}

# ------------------------------------------------------------------ virtualenvs

# make_venv DIR PYTHON: create DIR from requirements-dev.txt; redo only when the
# requirements or the interpreter changed (the stamp holds their fingerprint).
make_venv() {
  local dir=$1 py=$2 stamp want
  stamp=$dir/.dev-sh-stamp
  want="$("$py" -c 'import sys; print(sys.version)' | head -1) $(cat requirements.txt requirements-dev.txt | cksum)"
  if [ -x "$dir/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then return 0; fi
  say "creating $dir with $("$py" -V 2>&1) from requirements-dev.txt"
  rm -rf "$dir"
  "$py" -m venv "$dir"
  "$dir/bin/python" -m pip install -q --disable-pip-version-check -r requirements-dev.txt
  printf '%s' "$want" >"$stamp"
}

venv() {
  command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set PYTHON=/path/to/python3)"
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
    die "$PYTHON is $("$PYTHON" -V 2>&1); the dev tools need 3.10+ (./dev.sh py39 covers 3.9)"
  need python3-venv
  make_venv "$VENV" "$PYTHON"
}

# A Python 3.9: $PY39, pyenv's, or python3.9 on PATH (a pyenv shim only counts if it runs).
find_py39() {
  local c
  for c in ${PY39:-} "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.9*/bin/python /root/.pyenv/versions/3.9*/bin/python \
           python3.9 /usr/bin/python3.9 /usr/local/bin/python3.9; do
    if "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 9))' >/dev/null 2>&1; then
      echo "$c"; return 0
    fi
  done
  return 1
}

# ------------------------------------------------------------------ commands

cmd_setup() { need "${ALL_PACKAGES[@]}"; venv; say "ready: $VENV ($("$VENV/bin/python" -V))"; }

# True when the pytest ARGS select only the tests that need no server (-m "not server").
pure_only() {
  local prev="" arg
  for arg in "$@"; do
    [ "$prev" = -m ] && [ "$arg" = "not server" ] && return 0
    prev=$arg
  done
  return 1
}

cmd_test() {
  pure_only "$@" || need_for_tests
  venv
  "$VENV/bin/python" -m pytest "$@"
}

cmd_lint() {
  venv
  local rc=0
  "$VENV/bin/ruff" check . || rc=1
  "$VENV/bin/mypy" || rc=1
  # ruff has no E12x/E13x (continuation-line indentation); pycodestyle checks only those here.
  "$VENV/bin/pycodestyle" --select=E12,E13 --max-line-length=110 archive.py tests bench demo || rc=1
  return $rc
}

cmd_cov() {
  need_for_tests; venv
  rm -f .coverage .coverage.*
  local rc=0
  # [tool.coverage.run] patch = subprocess: every Python child writes its own .coverage.*
  "$VENV/bin/coverage" run -m pytest "$@" || rc=$?
  "$VENV/bin/coverage" combine -q
  "$VENV/bin/coverage" report || { [ $rc -ne 0 ] || rc=2; }  # fail_under from pyproject.toml
  return $rc
}

cmd_py39() {
  local py
  if ! py=$(find_py39); then
    say "py39: no Python 3.9 found (set PY39=/path/to/python3.9); skipped"
    return 0
  fi
  make_venv "$VENV39" "$py"
  "$VENV39/bin/python" -c 'import archive, mysql.connector as m; print("py39: archive.py imports on", __import__("sys").version.split()[0], "with mysql-connector-python", m.__version__)'
  "$VENV39/bin/python" -m pytest -q -p no:cacheprovider -m "not server" "$@"
}

cmd_demo() { need mariadb-server python3-venv; venv; "$VENV/bin/python" demo/demo.py; }

cmd_bench_tiny() {
  need mariadb-server percona-toolkit time python3-venv; venv
  # Every contender and a 2-point sweep on 3,000 rows: seconds, and each result is verified
  # (bench.py exits 1 on a wrong row count or checksum). --rss (3M ids) and --resume-probe
  # (100k+ rows) are not tiny; bench.py skips the probe below that.
  "$VENV/bin/python" bench/bench.py --rows 3000 --batch-size 500 --sweep 250,1000 --repeat 1
}

cmd_ci() {
  need "${ALL_PACKAGES[@]}"
  venv
  say "== lint";       cmd_lint
  say "== tests with coverage"; cmd_cov
  say "== Python 3.9"; cmd_py39
  say "== tiny bench"; cmd_bench_tiny
  say "ci: all passed"
}

cmd_clean() {
  rm -rf "$VENV" "$VENV39" .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.* htmlcov build ./*.egg-info
  find . -name __pycache__ -type d -prune -exec rm -rf {} +
}

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
  setup|test|lint|cov|py39|demo|ci|clean) "cmd_$cmd" "$@" ;;
  bench-tiny) cmd_bench_tiny "$@" ;;
  -h|--help|help) usage ;;
  *) usage; [ -z "$cmd" ] || die "unknown command: $cmd"; exit 2 ;;
esac
