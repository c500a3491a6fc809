#!/usr/bin/env bash
# The whole test suite, one build profile (release) so CI compiles everything once.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --workspace "$@"
