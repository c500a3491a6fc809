#!/usr/bin/env bash
# The whole test suite. Creates the test venv once (.venv: the reference MCP servers the interop tests run
# against), then builds one profile (release) so everything compiles once.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -x .venv/bin/python ]] || ! .venv/bin/python -c "import mcp_server_time" 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check mcp-server-time==2026.10.19
fi
cargo test --release --workspace "$@"
