#!/usr/bin/env bash
# Runs every test AgentWire has, on a machine with only the Rust toolchain:
#   bash scripts/test.sh
# It installs what it needs (the wasm32 target), then:
#   1. the channel contract built for the chain (what gets deployed);
#   2. the whole workspace's tests (unit, cross-crate, spec vectors, fuzz-corpus
#      replay, and the contract wasm from step 1 run in NEAR's VM);
#   3. the voucher code built for wasm32 with no default features;
#   4. clippy over the workspace, warnings as errors;
#   5. a dependency check: protocol/ pulls in no async runtime or network stack.
# With Node.js on the machine it first installs the pinned near-api-js
# (`npm ci` in tests/js) so the workspace tests drive the devnet with it too.
# When PostgreSQL 15+ is missing it installs Debian's `postgresql-15` (the
# major version pinned; Debian's mirror keeps only the latest patch release);
# the pg_money and fleet tests start throwaway clusters with it (initdb,
# pg_ctl, a loopback port) and remove them.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  echo "==> installing the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

echo "==> channel contract, the devnet's NEP-141 token and registrar for the chain (wasm32, --cfg near)"
RUSTFLAGS="-C link-arg=-s --cfg near" cargo build --locked -p agentwire-channel -p agentwire-devnet-token \
  -p agentwire-devnet-registrar --target wasm32-unknown-unknown --profile contract
out="$(cd "${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/contract" && pwd)"
echo "contract: $out/agentwire_channel.wasm ($(wc -c < "$out/agentwire_channel.wasm") bytes)"
echo "token:    $out/agentwire_devnet_token.wasm ($(wc -c < "$out/agentwire_devnet_token.wasm") bytes)"
echo "registrar: $out/agentwire_devnet_registrar.wasm ($(wc -c < "$out/agentwire_devnet_registrar.wasm") bytes)"
# The VM and devnet tests run exactly these.
export AGENTWIRE_CONTRACT_WASM="$out/agentwire_channel.wasm"
export AGENTWIRE_TOKEN_WASM="$out/agentwire_devnet_token.wasm"
export AGENTWIRE_REGISTRAR_WASM="$out/agentwire_devnet_registrar.wasm"

echo "==> near-api-js for the devnet test (tests/js, pinned by package-lock.json)"
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  echo "node $(node --version), npm $(npm --version): npm ci"
  (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
  # Installed: the near-api-js test must run, never skip.
  export AGENTWIRE_REQUIRE_NODE=1
else
  echo "WARNING: node or npm is not installed: the near-api-js devnet test will be SKIPPED"
fi

echo "==> PostgreSQL for the shared money store's tests (pg_money, fleet)"
if [ -n "${AGENTWIRE_PG_BIN:-}" ] || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "found: ${AGENTWIRE_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}"
else
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends postgresql-15
fi

echo "==> the official openai and mcp Python clients (tests/python, pinned by requirements.txt)"
# The gateway and MCP tests drive them; installed into tests/python/.venv
# (ignored by git), or with --target when the venv module is missing.
if command -v python3 >/dev/null 2>&1; then
  py=tests/python
  if python3 -m venv "$py/.venv" >/dev/null 2>&1 && "$py/.venv/bin/python" -m pip --version >/dev/null 2>&1; then
    "$py/.venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$py/requirements.txt"
    export AGENTWIRE_PYTHON="$PWD/$py/.venv/bin/python"
  else
    python3 -m pip install --quiet --disable-pip-version-check --target "$py/.venv/site" -r "$py/requirements.txt"
    export AGENTWIRE_PYTHON="$(command -v python3)" AGENTWIRE_PYTHONPATH="$PWD/$py/.venv/site"
  fi
  echo "python $("$AGENTWIRE_PYTHON" --version 2>&1 | cut -d' ' -f2): openai and mcp installed"
  # Installed: the Python tests must run, never skip.
  export AGENTWIRE_REQUIRE_PYTHON=1
else
  echo "WARNING: python3 is not installed: the openai and MCP client tests will be SKIPPED"
fi

echo "==> cargo test --workspace"
cargo test --workspace --locked --no-fail-fast

echo "==> protocol voucher code for wasm32 (no default features)"
cargo build --locked -p agentwire-protocol --no-default-features --target wasm32-unknown-unknown


echo "==> clippy (warnings are errors)"
cargo clippy --locked --workspace --all-targets -- -D warnings

echo "==> protocol/ dependency check"
forbidden=$(cargo tree --locked -p agentwire-protocol -e normal --prefix none | grep -iE '^(tokio|quinn|libp2p |libp2p-(swarm|kad|tcp|quic|core)|mio|socket2) ' || true)
if [ -n "$forbidden" ]; then
  echo "protocol/ must stay sans-IO, but depends on:"; echo "$forbidden"; exit 1
fi
echo "protocol/ depends on no async runtime or network stack"
