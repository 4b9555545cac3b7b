//! Issue 14, the command line as a new user meets it: each failure of the
//! issue's table, run as a process, fails within its bound and says why and
//! what to do (under `--json` as `{"error": {code, message, action}}`), and
//! channels can be managed by hand from open to withdrawn storage; `lookup`
//! shows what each service speaks and costs before a channel is opened.
//! Every process runs with `HOME` in a temporary directory.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use agentwire_agent::dht::{Dht, DhtConfig};
use agentwire_protocol::testing;
use serde_json::Value;

/// What the issue allows a failure a local check can see, and a stopped brand.
const FAST: Duration = Duration::from_secs(3);

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("agentwire-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `agentwire ARGS` with `HOME` = `home`, and how long it took.
fn agentwire(home: &Path, args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_agentwire")).env("HOME", home).args(args).output().unwrap();
    (out, started.elapsed())
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{}\n{}", stdout(out), String::from_utf8_lossy(&out.stderr));
    stdout(out)
}

/// A failed `--json` command's error object.
fn json_error(out: &Output) -> Value {
    assert!(!out.status.success(), "it should have failed: {}", stdout(out));
    let err = String::from_utf8_lossy(&out.stderr);
    let line =
        err.lines().rev().find(|l| l.starts_with("{\"error\"")).unwrap_or_else(|| panic!("no JSON error: {err}"));
    let v: Value = serde_json::from_str(line).unwrap();
    assert!(!err.contains("CryptoHash(") && !err.contains(" { "), "no Rust debug output: {err}");
    v["error"].clone()
}

/// Spawns a long-running command and waits for `ready` on its stdout.
fn spawn(home: &Path, args: &[&str], ready: &str) -> (Proc, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_agentwire"))
        .env("HOME", home)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    loop {
        match lines.next() {
            Some(Ok(l)) => {
                let done = l.contains(ready);
                seen.push(l);
                if done {
                    break;
                }
            }
            _ => panic!("{args:?} exited before {ready:?}: {seen:?}"),
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (Proc(child), seen)
}

const FREE_BRAND: &str = r#"identity = "brand.key"
near_account = "brand.devnet"
listen = "127.0.0.1:9"
p2p_listen = ["/ip4/127.0.0.1/udp/9/quic-v1"]
bootstrap = ["BOOT"]

[[service]]
name = "hours"
description = "Opening hours"
handler = { kind = "static", text = "Mon-Fri 9:00-18:00" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_and_queries_fail_fast_and_say_why() {
    let home = temp_dir("cli-failures");
    let (_boot, boot) = Dht::loopback_bootstrap().await.unwrap();
    let boot = boot.to_string();
    let config = home.join("brand.toml");
    std::fs::write(&config, FREE_BRAND.replace("BOOT", &boot)).unwrap();
    let config = config.to_str().unwrap();

    // The ports of the file (9, discard) are overridden on the command line.
    let listen = format!("127.0.0.1:{}", free_udp_port());
    let (brand, banner) = spawn(
        &home,
        &["serve", "--config", config, "--listen", &listen, "--p2p-listen", "/ip4/127.0.0.1/udp/0/quic-v1"],
        "Ctrl-C stops it",
    );
    let banner = banner.join("\n");
    assert!(banner.contains(&format!("sessions on {listen}")), "{banner}");
    assert!(banner.lines().any(|l| l.contains("service hours") && l.ends_with("free")), "{banner}");
    assert!(banner.contains("not listed in the endpoint registry"), "the banner says the truth: {banner}");

    let query = |args: &[&str]| {
        let mut all = vec!["--json", "query", "--bootstrap", &boot, "--bind", "127.0.0.1:0", "--skip-registry-check"];
        all.extend_from_slice(args);
        agentwire(&home, &all)
    };
    let (out, _) = query(&["--account", "brand.devnet", "--service", "hours", "when?"]);
    let answer: Value = serde_json::from_str(ok(&out).trim()).unwrap();
    assert_eq!(answer["answer"], "Mon-Fri 9:00-18:00");

    // One key file scheme: `query` made ~/.agentwire/agent.key, owner-only, and `identity show` reads it.
    let key = home.join(".agentwire/agent.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let (out, _) = agentwire(&home, &["identity", "show"]);
    let shown = ok(&out);
    assert!(shown.contains(key.to_str().unwrap()), "{shown}");
    assert!(shown.contains("registration  not checked"), "no false advice about registration: {shown}");

    // A service the brand does not offer: what it offers, with prices.
    let (out, took) = query(&["--account", "brand.devnet", "--service", "chat", "hi"]);
    let e = json_error(&out);
    assert_eq!(e["code"], "UnknownService", "{e}");
    assert!(e["message"].as_str().unwrap().contains("hours (free)"), "{e}");
    assert!(took < FAST, "{took:?}");

    // An account nobody publishes: as fast as the DHT walk.
    let (out, took) = query(&["--account", "nobody.devnet", "hi"]);
    let e = json_error(&out);
    assert_eq!(e["code"], "NotFound", "{e}");
    assert!(took < FAST, "an unknown account took {took:?}");

    // A brand that stopped without a word: its record is still on the DHT.
    drop(brand);
    let (out, took) = query(&["--account", "brand.devnet", "--service", "hours", "when?"]);
    let e = json_error(&out);
    assert_eq!(e["code"], "BrandUnanswered", "{e}");
    let message = e["message"].as_str().unwrap();
    assert!(message.contains(&listen) && message.contains("may be stale") && message.contains("expires"), "{e}");
    // The lookup's walks answer 500 ms after their first useful answer (the
    // settle window) rather than wait for the brand's dead DHT node (the
    // connect timeout, 2 s); then the session's dial (1 s) fails.
    assert!(took < FAST, "a stopped brand took {took:?}");

    // A bootstrap address on a dead port, and one without `/p2p/…`: named,
    // with what is wrong, within FAST, for `lookup`, `query` and `serve`.
    let boot_peer = boot.rsplit('/').next().unwrap();
    let dead = format!("/ip4/127.0.0.1/udp/{}/quic-v1/p2p/{boot_peer}", free_udp_port());
    let no_peer = boot.split("/p2p/").next().unwrap().to_owned();
    let dead_config = home.join("dead-boot.toml");
    std::fs::write(&dead_config, FREE_BRAND.replace("BOOT", &dead)).unwrap();
    for (bootstrap, code, words) in [
        (dead.as_str(), "BootstrapUnreachable", "no answer within 2 s"),
        (no_peer.as_str(), "BadBootstrapAddress", "/p2p/"),
    ] {
        let lookup =
            ["--json", "lookup", "--bootstrap", bootstrap, "--bind", "127.0.0.1:0", "--account", "brand.devnet"];
        let query =
            ["--json", "query", "--bootstrap", bootstrap, "--bind", "127.0.0.1:0", "--account", "brand.devnet", "hi"];
        for args in [&lookup[..], &query[..]] {
            let (out, took) = agentwire(&home, args);
            let e = json_error(&out);
            assert_eq!(e["code"], code, "{args:?}: {e}");
            let message = e["message"].as_str().unwrap();
            assert!(message.contains(bootstrap) && message.contains(words), "{args:?}: {e}");
            assert!(took < FAST, "{args:?} took {took:?}");
        }
    }
    let (out, took) = agentwire(
        &home,
        &[
            "--json",
            "serve",
            "--config",
            dead_config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--p2p-listen",
            "/ip4/127.0.0.1/udp/0/quic-v1",
        ],
    );
    let e = json_error(&out);
    assert_eq!(e["code"], "BootstrapUnreachable", "a brand that reaches no bootstrap peer does not start: {e}");
    assert!(e["message"].as_str().unwrap().contains(&dead), "{e}");
    assert!(took < FAST, "serve took {took:?}");

    // A port in use is named, for sessions and for the DHT.
    let held = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port().to_string();
    let taken = format!("127.0.0.1:{port}");
    let dht_taken = format!("/ip4/127.0.0.1/udp/{port}/quic-v1");
    let any = "/ip4/127.0.0.1/udp/0/quic-v1";
    for args in
        [["--listen", taken.as_str(), "--p2p-listen", any], ["--listen", "127.0.0.1:0", "--p2p-listen", &dht_taken]]
    {
        let mut all = vec!["--json", "serve", "--config", config];
        all.extend_from_slice(&args);
        let (out, took) = agentwire(&home, &all);
        let e = json_error(&out);
        assert_eq!(e["code"], "PortInUse", "{args:?}: {e}");
        assert!(e.to_string().contains(&port), "{args:?} names the port: {e}");
        assert!(took < FAST, "{args:?} took {took:?}");
    }
    drop(held);
    let _ = std::fs::remove_dir_all(&home);
}

/// `lookup` shows what each service speaks and what it costs, before any
/// channel is opened (spec §6.2): per token, metered and per query, in NEAR,
/// and under `--json` the pricing with its amounts in yoctoNEAR too. The
/// record (the spec vectors' `priced` record) is published on a loopback DHT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_shows_what_each_service_speaks_and_costs() {
    let home = temp_dir("cli-lookup");
    let (_boot, boot) = Dht::loopback_bootstrap().await.unwrap();
    let brand = testing::identity("brand");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let record = testing::priced_brand_record(&brand, now, now + 3600).sign(&brand.identity).unwrap();
    let config = DhtConfig {
        listen: vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()],
        bootstrap: vec![boot.clone()],
        server: true,
        ..DhtConfig::default()
    };
    let node = Dht::start(&brand.identity, config).await.unwrap();
    let mut published = node.publish(record.clone()).await;
    for _ in 0..20 {
        if published.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        published = node.publish(record.clone()).await;
    }
    published.unwrap();
    let boot = boot.to_string();
    let lookup = |json: bool| {
        let mut args = vec!["lookup", "--service", "assistant", "--bootstrap", &boot, "--bind", "127.0.0.1:0"];
        if json {
            args.insert(0, "--json");
        }
        agentwire(&home, &args).0
    };

    let shown = ok(&lookup(false));
    for line in [
        "  service    assistant (chat): Our model, priced per token",
        "             0.000001 NEAR per prompt token, 0.000003 NEAR per generated token, at most 512 generated; at most 0.002 NEAR per request",
        "  service    story (text): A story, paid as it streams",
        "             0.01 NEAR for the first 4 chunks, then 0.002 NEAR per 4 more",
        "  service    faq (chat): Questions, one price",
        "             0.001 NEAR per query",
        "  service    hours (text): Opening hours",
        "             0.0001 NEAR per query",
    ] {
        assert!(shown.lines().any(|l| l == line), "{line:?} not in:\n{shown}");
    }

    let out = lookup(true);
    let v: Value = serde_json::from_str(ok(&out).trim()).unwrap();
    assert_eq!(v["record"], hex::encode(record.encoded()), "the record's bytes, to verify");
    let services = v["services"].as_array().unwrap();
    let by_name = |n: &str| services.iter().find(|s| s["name"] == n).unwrap_or_else(|| panic!("{n}: {v}"));
    let assistant = by_name("assistant");
    assert_eq!(assistant["interface"], "chat");
    assert_eq!(assistant["price"], "2000000000000000000000");
    assert_eq!(assistant["pricing"]["kind"], "per_token");
    assert_eq!(assistant["pricing"]["input"], "1000000000000000000");
    assert_eq!(assistant["pricing"]["output"], "3000000000000000000");
    assert_eq!(assistant["pricing"]["max_output_tokens"], 512);
    assert!(assistant["price_text"].as_str().unwrap().ends_with("at most 0.002 NEAR per request"), "{assistant}");
    let story = by_name("story");
    assert_eq!(story["interface"], "text");
    assert_eq!(
        (&story["pricing"]["kind"], &story["pricing"]["chunks"], &story["pricing"]["increment"]),
        (&Value::from("metered"), &Value::from(4), &Value::from("2000000000000000000000"))
    );
    assert_eq!(story["price_text"], "0.01 NEAR for the first 4 chunks, then 0.002 NEAR per 4 more");
    assert_eq!(
        (&by_name("faq")["interface"], &by_name("faq")["pricing"]["kind"]),
        (&Value::from("chat"), &Value::from("per_query"))
    );
    assert_eq!(by_name("hours")["price_text"], "0.0001 NEAR per query");
    drop(node);
    let _ = std::fs::remove_dir_all(&home);
}

/// The devnet's set-up, as `agentwire --json devnet` prints it.
fn devnet(home: &Path) -> (Proc, String) {
    let keys = home.join("keys");
    let listen = format!("127.0.0.1:{}", free_tcp_port());
    let (proc, lines) = spawn(
        home,
        &[
            "--json",
            "devnet",
            "--listen",
            &listen,
            "--accounts",
            "alice,bob",
            "--near-each",
            "10",
            "--keys-dir",
            keys.to_str().unwrap(),
        ],
        "rpc_url",
    );
    let v: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    (proc, v["rpc_url"].as_str().unwrap().to_owned())
}

#[test]
fn channels_are_managed_by_hand_and_failures_say_what_to_do() {
    let home = temp_dir("cli-channels");
    let (_devnet, rpc) = devnet(&home);
    let keys = home.join("keys");
    #[cfg(unix)]
    for who in ["alice.devnet", "bob.devnet"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(keys.join(format!("{who}.near-key"))).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{who}'s NEAR key is owner-only");
    }
    let alice_key = keys.join("alice.devnet.near-key");
    let bob_key = keys.join("bob.devnet.near-key");
    let store = home.join("alice-payer");
    let channel = |json: bool, key: &Path, args: &[&str]| {
        let mut all = if json { vec!["--json", "channel"] } else { vec!["channel"] };
        all.extend_from_slice(args);
        all.extend_from_slice(&["--near-rpc", &rpc, "--near-account", "alice.devnet"]);
        all.extend_from_slice(&["--near-key-file", key.to_str().unwrap(), "--store", store.to_str().unwrap()]);
        agentwire(&home, &all)
    };

    // The RPC is down: status refuses to guess, and says which URL.
    let dead = format!("http://127.0.0.1:{}", free_tcp_port());
    let (out, took) =
        agentwire(&home, &["--json", "channel", "status", "--near-rpc", &dead, "--near-account", "alice.devnet"]);
    let e = json_error(&out);
    assert_eq!(e["code"], "NearUnreachable", "{e}");
    assert!(e["message"].as_str().unwrap().contains(&dead), "{e}");
    assert!(e["action"].as_str().unwrap().contains("nothing is listed without the chain"), "{e}");
    assert!(took < FAST, "{took:?}");

    // Bob's key for alice's account.
    let (out, took) = channel(true, &bob_key, &["open", "--payee", "bob.devnet", "--deposit", "1"]);
    let e = json_error(&out);
    assert_eq!(e["code"], "NearWrongKey", "{e}");
    assert!(took < FAST, "{took:?}");
    assert!(e["message"].as_str().unwrap().contains("is not an access key of alice.devnet"), "{e}");

    // More than alice has (10 NEAR): the amounts in NEAR, and what to change.
    let (out, took) = channel(true, &alice_key, &["open", "--payee", "bob.devnet", "--deposit", "1000"]);
    let e = json_error(&out);
    assert_eq!(e["code"], "NearNotEnoughBalance", "{e}");
    assert!(took < FAST, "{took:?}");
    assert!(!e.to_string().contains("CryptoHash"), "no Rust debug dump: {e}");
    let message = e["message"].as_str().unwrap();
    assert!(message.contains("alice.devnet has 9.") || message.contains("alice.devnet has 10"), "{e}");
    assert!(message.contains("attaches 1000") && message.contains("NEAR"), "{e}");

    // Open, in NEAR.
    let (out, _) = channel(false, &alice_key, &["open", "--payee", "bob.devnet", "--deposit", "1.5"]);
    let opened = ok(&out);
    assert!(opened.contains("open with bob.devnet: deposit 1.5 NEAR"), "{opened}");
    let (out, _) = channel(true, &alice_key, &["status"]);
    let status: Value = serde_json::from_str(ok(&out).trim()).unwrap();
    let id = status["channels"][0]["channel_id"].as_u64().unwrap();
    assert_eq!(status["channels"][0]["state"], "open", "{status}");
    assert_eq!(status["channels"][0]["signed"], "0", "{status}");
    // A second open: refused, naming the channel and the top-up, not a silent return of the first.
    let (out, took) = channel(true, &alice_key, &["open", "--payee", "bob.devnet", "--deposit", "2"]);
    let e = json_error(&out);
    assert_eq!(e["code"], "ChannelAlreadyOpen", "{e}");
    assert!(e["message"].as_str().unwrap().contains(&format!("channel {id} ")), "{e}");
    assert!(e["action"].as_str().unwrap().contains("top-up --payee bob.devnet"), "{e}");
    assert!(took < FAST, "{took:?}");

    // While a gateway holds the payer's store: the lock names it, and --gateway reads through it.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_boot, boot) = rt.block_on(Dht::loopback_bootstrap()).unwrap();
    let gw = format!("127.0.0.1:{}", free_tcp_port());
    let (gateway, _) = spawn(
        &home,
        &[
            "gateway",
            "--listen",
            &gw,
            "--bootstrap",
            &boot.to_string(),
            "--bind",
            "127.0.0.1:0",
            "--near-rpc",
            &rpc,
            "--near-account",
            "alice.devnet",
            "--near-key-file",
            alice_key.to_str().unwrap(),
            "--store",
            store.to_str().unwrap(),
        ],
        "Ctrl-C stops it",
    );
    let (out, took) = channel(true, &alice_key, &["status"]);
    let e = json_error(&out);
    assert_eq!(e["code"], "StoreLocked", "{e}");
    assert!(e["message"].as_str().unwrap().contains(&format!("pid {}", gateway.0.id())), "{e}");
    assert!(e["action"].as_str().unwrap().contains("--gateway"), "{e}");
    assert!(took < FAST, "{took:?}");
    let (out, _) = agentwire(
        &home,
        &[
            "channel",
            "status",
            "--gateway",
            &format!("http://{gw}"),
            "--near-rpc",
            &rpc,
            "--near-account",
            "alice.devnet",
        ],
    );
    let listed = ok(&out);
    assert!(listed.contains(&format!("channel {id}  to bob.devnet  open")), "{listed}");
    assert!(listed.contains("deposit 1.5 NEAR") && listed.contains("signed 0 NEAR"), "{listed}");
    drop(gateway);

    // Close: the channel id, the time left, the next command.
    let (out, _) = channel(false, &alice_key, &["close", "--payee", "bob.devnet"]);
    let closing = ok(&out);
    assert!(closing.contains(&format!("channel {id} is closing")), "{closing}");
    assert!(closing.contains(&format!("agentwire channel finalize --channel-id {id}")), "{closing}");
    let (out, _) = channel(false, &alice_key, &["status"]);
    let listed = ok(&out);
    assert!(listed.contains("closing: bob.devnet may claim until") && listed.contains("left"), "{listed}");
    assert!(listed.contains(&format!("finalize --channel-id {id}")), "{listed}");

    // Finalizing early: how long is left, and how the devnet skips ahead.
    let id_text = id.to_string();
    let (out, took) = channel(true, &alice_key, &["finalize", "--channel-id", &id_text]);
    let e = json_error(&out);
    assert_eq!(e["code"], "ChallengePeriod", "{e}");
    assert!(e["message"].as_str().unwrap().contains("more"), "{e}");
    let action = e["action"].as_str().unwrap();
    let skip = action.split("skip ahead with: ").nth(1).unwrap_or_else(|| panic!("no devnet hint: {action}"));
    assert!(took < FAST, "{took:?}");
    // The hint runs as printed.
    let curl = Command::new("sh").arg("-c").arg(skip).output().unwrap();
    assert!(curl.status.success() && stdout(&curl).contains("result"), "{skip}: {}", stdout(&curl));
    let (out, _) = channel(true, &alice_key, &["status"]);
    let status: Value = serde_json::from_str(ok(&out).trim()).unwrap();
    assert_eq!(status["channels"][0]["state"], "finalizable", "{status}");

    let (out, _) = channel(false, &alice_key, &["finalize", "--channel-id", &id_text]);
    let finalized = ok(&out);
    assert!(finalized.contains(&format!("channel {id} finalized: 1.5 NEAR back to alice.devnet")), "{finalized}");
    assert!(finalized.contains("withdraw-storage"), "{finalized}");

    // The storage deposit comes back; a second time there is nothing left.
    let (out, _) = channel(true, &alice_key, &["withdraw-storage"]);
    let withdrawn: Value = serde_json::from_str(ok(&out).trim()).unwrap();
    let back: u128 = withdrawn["withdrawn"].as_str().unwrap().parse().unwrap();
    assert!(back > 0, "{withdrawn}");
    let (out, _) = channel(true, &alice_key, &["withdraw-storage"]);
    assert_eq!(json_error(&out)["code"], "NothingToWithdraw");
    let _ = std::fs::remove_dir_all(&home);
}
