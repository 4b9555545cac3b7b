//! Embeds the channel contract, the devnet's NEP-141 token and its root's
//! registrar (as wasm) in the `agentwire` binary, so `agentwire devnet` and
//! `agentwire demo` need no set-up. Uses `AGENTWIRE_CONTRACT_WASM` /
//! `AGENTWIRE_TOKEN_WASM` / `AGENTWIRE_REGISTRAR_WASM` when set
//! (scripts/test.sh builds them once); otherwise builds them for wasm32 with
//! the chain flags, installing the wasm32 target with rustup if it is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

const CONTRACTS: [(&str, &str, &str); 3] = [
    ("agentwire-channel", "AGENTWIRE_CONTRACT_WASM", "agentwire_channel.wasm"),
    ("agentwire-devnet-token", "AGENTWIRE_TOKEN_WASM", "agentwire_devnet_token.wasm"),
    ("agentwire-devnet-registrar", "AGENTWIRE_REGISTRAR_WASM", "agentwire_devnet_registrar.wasm"),
];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest.join("..");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for dir in [
        "channel-contract/src",
        "channel-contract/Cargo.toml",
        "devnet/token",
        "devnet/registrar",
        "protocol/src",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    let mut to_build = Vec::new();
    for (package, var, file) in CONTRACTS {
        println!("cargo:rerun-if-env-changed={var}");
        match std::env::var(var) {
            Ok(path) => copy(Path::new(&path), &out.join(file)),
            Err(_) => to_build.push((package, file)),
        }
    }
    if to_build.is_empty() {
        return;
    }
    ensure_wasm_target();
    // A target dir of its own: the outer build holds the workspace's lock.
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"))
        .join("embedded-contracts");
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(&root)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .env("CARGO_ENCODED_RUSTFLAGS", "-C\x1flink-arg=-s\x1f--cfg\x1fnear")
        .args(["build", "--locked", "--target", "wasm32-unknown-unknown", "--profile", "contract"]);
    for (package, _) in &to_build {
        cmd.args(["-p", package]);
    }
    let status = cmd.status().expect("run cargo to build the contracts for wasm32");
    assert!(status.success(), "building the contracts for wasm32 failed (see the output above)");
    for (_, file) in to_build {
        copy(&target.join("wasm32-unknown-unknown/contract").join(file), &out.join(file));
    }
}

fn copy(from: &Path, to: &Path) {
    let bytes = std::fs::read(from).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    std::fs::write(to, bytes).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
}

fn ensure_wasm_target() {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l.trim() == "wasm32-unknown-unknown"))
        .unwrap_or(false);
    if !installed {
        let status = Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]).status();
        assert!(
            matches!(status, Ok(s) if s.success()),
            "the wasm32-unknown-unknown target is needed to build the channel contract: rustup target add wasm32-unknown-unknown"
        );
    }
}
