#!/usr/bin/env bash
# Runs cargo-fuzz targets for SECONDS each (default 600) on stable Rust
# (RUSTC_BOOTSTRAP enables the sanitizer flags cargo-fuzz needs).
# New inputs go to a scratch corpus; the committed seeds in corpus/ are read only.
#   fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(frame message record handshake_initiator handshake_responder stream_open voucher_verify payee_ledger contract_json contract_invariants store_log payer_state exchange money)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
scratch=${FUZZ_SCRATCH:-/tmp/agentwire-fuzz}
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t"
  RUSTC_BOOTSTRAP=1 cargo fuzz run -O "$t" "$scratch/$t" "corpus/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 > "$scratch/$t.log" 2>&1 \
    || { echo "$t: FAILED (see $scratch/$t.log)"; exit 1; }
  echo "$t: $(grep -E '^stat::number_of_executed_units' "$scratch/$t.log" | awk '{print $2}') executions in ${secs}s, no crash"
  # contract_invariants also reports its steps (calls and deliveries) every 100 000.
  grep -E "^$t: [0-9]+ steps" "$scratch/$t.log" | tail -1 || true
done
