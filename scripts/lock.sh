#!/usr/bin/env bash
# Regenerate requirements.lock from pyproject.toml in a throw-away environment.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(mktemp -d)/venv
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet torch==2.13.0
"$venv/bin/pip" install --quiet --no-deps crypten==0.4.1
"$venv/bin/pip" install --quiet -e ".[dev]"
{
  sed -n '1,4p' requirements.lock
  "$venv/bin/pip" freeze | grep -v -e '^-e' -e 'mpc-health' | sed 's/+cpu//'
} > requirements.lock.new
mv requirements.lock.new requirements.lock
echo "requirements.lock updated"
