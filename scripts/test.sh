#!/usr/bin/env bash
# The whole test suite. Creates the test venvs once (.venv: the reference MCP servers the interop and
# demo tests run against, and the openai SDK; .venv-qwen-agent: Qwen-Agent), installs the npm reference server once (tests/.npm), builds one profile
# (release) so everything compiles once, installs the Python sandbox runtime (once per machine: ~98 MB
# download, ~1 min compile), then tests.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -x .venv/bin/python ]] || ! .venv/bin/python -c "import mcp_server_time, mcp_server_fetch, openai" 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check mcp-server-time==2026.10.19 mcp-server-fetch==2026.10.24 openai==3.51.0
fi
# Qwen-Agent (tests/serve.rs drives `serve` with it) in a venv of its own, so its pins and the MCP
# servers' never move each other. It imports numpy, soundfile, tqdm and dateutil without declaring them.
if [[ ! -x .venv-qwen-agent/bin/python ]] || ! .venv-qwen-agent/bin/python -c "import qwen_agent.agents" 2>/dev/null; then
  python3 -m venv .venv-qwen-agent
  .venv-qwen-agent/bin/pip install --quiet --disable-pip-version-check qwen-agent==0.0.34 openai==3.51.0 \
    numpy==2.4.6 soundfile==0.14.0 tqdm==4.70.1 python-dateutil==4.0.0
fi
# The MCP reference test server (tests/mcp.rs, tests/mcp_env.rs), pinned, installed once under tests/.npm.
# Without node those tests say they were skipped.
EVERYTHING_VERSION=2026.8.31
if command -v npm >/dev/null && ! grep -qs "\"version\": \"$EVERYTHING_VERSION\"" \
    tests/.npm/node_modules/@modelcontextprotocol/server-everything/package.json; then
  npm install --prefix tests/.npm --no-audit --no-fund --silent \
    "@modelcontextprotocol/server-everything@$EVERYTHING_VERSION"
fi
cargo build --release --workspace
target/release/qwen3-agent setup python
cargo test --release --workspace "$@"
