//! `agentwire mcp` driven by the official MCP Python client (`mcp`, pinned in
//! tests/python/requirements.txt): it lists the tools, finds a brand's model
//! service with its per-token prices, asks it (the text arrives as progress
//! notifications while it streams, and the answer is paid and receipted: the
//! tokens used × the brand's unit prices), gets a tool error (not a crash, not
//! a charge) for each bad input, and shows the channel. Without
//! Python this says SKIPPED, unless AGENTWIRE_REQUIRE_PYTHON=1 (set by
//! scripts/test.sh once it installed the packages).

#[path = "../../tests/tests/support/fake_openai.rs"]
mod fake_openai;

use std::path::{Path, PathBuf};
use std::time::Duration;

use agentwire_agent::brand;
use agentwire_agent::config::BrandConfig;
use agentwire_agent::devnet::provision;
use agentwire_agent::dht::Dht;
use agentwire_agent::quic::TransportLimits;
use agentwire_devnet::{Devnet, DevnetConfig, ONE_NEAR};
use fake_openai::{FakeOpenAi, REPLY};
use serde_json::Value;

fn python() -> Option<(PathBuf, Option<String>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/python");
    let exe = std::env::var_os("AGENTWIRE_PYTHON").map(PathBuf::from).unwrap_or_else(|| root.join(".venv/bin/python"));
    let path = std::env::var("AGENTWIRE_PYTHONPATH").ok();
    let mut probe = std::process::Command::new(&exe);
    probe.args(["-c", "import mcp"]);
    if let Some(p) = &path {
        probe.env("PYTHONPATH", p);
    }
    let why = match probe.output() {
        Ok(o) if o.status.success() => return Some((exe, path)),
        Ok(o) => format!("{} cannot import mcp: {}", exe.display(), String::from_utf8_lossy(&o.stderr)),
        Err(e) => format!("{}: {e}", exe.display()),
    };
    assert!(
        std::env::var_os("AGENTWIRE_REQUIRE_PYTHON").is_none(),
        "Python with the pinned mcp package is required here: {why}"
    );
    eprintln!("SKIPPED the MCP client test: {why} (run scripts/test.sh, which installs tests/python/requirements.txt)");
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_mcp_client_lists_the_tools_and_asks_a_brand_through_them() {
    let Some((py, pypath)) = python() else { return };
    let upstream = FakeOpenAi::start().await;
    let devnet = Devnet::start(DevnetConfig::default()).unwrap();
    let ready = provision(&devnet, &["model", "alice"], 100 * ONE_NEAR, 0).await.unwrap();
    let (_boot, boot) = Dht::loopback_bootstrap().await.unwrap();
    let dir = std::env::temp_dir().join(format!("agentwire-mcp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for u in &ready.users {
        std::fs::write(dir.join(format!("{}.near-key", u.account_id)), u.secret_key.to_string()).unwrap();
    }
    let config = format!(
        r#"identity = "model.key"
near_account = "model.devnet"
listen = "127.0.0.1:0"
p2p_listen = ["/ip4/127.0.0.1/udp/0/quic-v1"]
bootstrap = ["{boot}"]

[payments]
near_rpc = "{rpc}"
near_key_file = "model.devnet.near-key"
store = "model-vouchers"

[[service]]
name = "assistant"
description = "A model, per token"
price = "100000000000000000000000"
per_token = {{ input = "7000000000000000000", output = "13000000000000000000" }}
handler = {{ kind = "openai", url = "{url}", models = ["fake-1"], max_tokens = 64 }}
"#,
        rpc = ready.rpc_url,
        url = upstream.base_url
    );
    std::fs::write(dir.join("brand.toml"), config).unwrap();
    let brand =
        brand::start(BrandConfig::load(&dir.join("brand.toml")).unwrap(), TransportLimits::default()).await.unwrap();
    // The brand's providers reach the bootstrap node before the client looks.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let boot = boot.to_string();
    let key = dir.join("alice.devnet.near-key");
    let store = dir.join("alice-payer");
    let user_key = dir.join("user.key");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/python/mcp_client.py");
    let args: Vec<&str> = vec![
        script.to_str().unwrap(),
        env!("CARGO_BIN_EXE_agentwire"),
        "model.devnet",
        "--discover",
        "assistant",
        "--bootstrap",
        &boot,
        "--near-rpc",
        &ready.rpc_url,
        "--near-account",
        "alice.devnet",
        "--near-key-file",
        key.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--key",
        user_key.to_str().unwrap(),
        "--max-price",
        "0.1",
    ];
    let mut cmd = std::process::Command::new(&py);
    cmd.args(&args);
    if let Some(p) = &pypath {
        cmd.env("PYTHONPATH", p);
    }
    // A blocking wait on its own thread: tokio's process driver would run on
    // every park of every runtime in the agent's tests and benchmarks.
    let out = tokio::time::timeout(Duration::from_secs(300), tokio::task::spawn_blocking(move || cmd.output()))
        .await
        .expect("the MCP client timed out")
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the MCP client failed: {stderr}");
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value =
        serde_json::from_str(text.lines().last().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}: {text}"));

    assert_eq!(v["tools"], serde_json::json!(["ask", "channels", "find_services"]), "{v}");
    let found = &v["find"];
    assert_eq!(found["error"], false, "{found}");
    let listing = &found["structured"]["services"][0];
    assert_eq!(
        (listing["brand"].as_str(), listing["service"].as_str()),
        (Some("model.devnet"), Some("assistant")),
        "{found}"
    );
    assert!(found["text"][0].as_str().unwrap().contains("0.000013 NEAR per generated token"), "{found}");

    let asked = &v["ask"];
    assert_eq!(asked["error"], false, "{asked}");
    assert_eq!(asked["text"][0], REPLY, "{asked}");
    assert_eq!(asked["structured"]["answer"], REPLY);
    let usage = &asked["structured"]["usage"];
    let cost = u128::from(usage["prompt_tokens"].as_u64().unwrap()) * 7_000_000_000_000_000_000
        + u128::from(usage["completion_tokens"].as_u64().unwrap()) * 13_000_000_000_000_000_000;
    assert_eq!(asked["structured"]["paid"], cost.to_string(), "paid the tokens × the unit prices: {asked}");
    assert!(asked["structured"]["receipt_cumulative"].is_string());
    // Progress notifications carried the text while it streamed.
    let progress: String =
        v["progress"].as_array().unwrap().iter().map(|p| p["message"].as_str().unwrap_or("")).collect();
    assert_eq!(progress, REPLY, "{}", v["progress"]);

    // Every bad call is a tool result marked as an error, saying what was wrong
    // (never a crash: the server answers the next call), and costs nothing.
    let bad = &v["bad"];
    let expect = [
        ("unknown_service", "does not offer \"nosuch\""),
        ("not_an_account", "is not a NEAR account id"),
        ("max_tokens_above_cap", "max_tokens"),
        ("missing_message", "missing field `message`"),
        ("wrong_type", "invalid type: string \"many\""),
    ];
    for (case, says) in expect {
        let b = &bad[case];
        assert_eq!(b["error"], true, "{case}: a tool error, not a protocol error: {b}");
        assert!(b["text"][0].as_str().unwrap_or_default().contains(says), "{case}: says {says:?}: {b}");
    }
    let channels = &v["channels"];
    assert_eq!(channels["error"], false, "the server still answers after the bad calls: {channels}");
    let status = &channels["structured"]["channels"];
    assert_eq!(status.as_array().map(Vec::len), Some(1), "{channels}");
    assert_eq!(status[0]["payee"], "model.devnet", "{channels}");
    // The brand charged exactly what it priced for the one answer, nothing for the bad calls.
    let money = brand.payee.as_ref().unwrap().money().channels().await.unwrap();
    assert_eq!(money.len(), 1, "{money:?}");
    assert_eq!(money[0].charged, cost, "the brand's charged total: {money:?}");
    assert_eq!(status[0]["charged"], cost.to_string(), "the payer saw the same charge: {channels}");
    brand.shutdown().await;
    drop(devnet);
    let _ = std::fs::remove_dir_all(&dir);
}
