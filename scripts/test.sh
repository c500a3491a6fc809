#!/usr/bin/env bash
# The whole test suite. Creates the test venv once (.venv: the reference MCP servers the interop and
# demo tests run against), builds one profile (release) so everything compiles once, installs the
# Python sandbox runtime (once per machine: ~98 MB download, ~1 min compile), then tests.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -x .venv/bin/python ]] || ! .venv/bin/python -c "import mcp_server_time, mcp_server_fetch" 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check mcp-server-time==2026.10.19 mcp-server-fetch==2026.10.24
fi
cargo build --release --workspace
target/release/qwen3-agent setup python
cargo test --release --workspace "$@"
