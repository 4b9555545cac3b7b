//! A new user's way of paying a brand: one `agentwire query` process per
//! question (each is a restart of the payer), mixing services of different
//! prices with a metered stream, against one `agentwire serve`. Every receipt
//! verifies, no query fails, and the chain pays the brand exactly the sum of
//! the prices of the answers received, to the yoctoNEAR. (Before the payer
//! named its channel when it asked the brand for its total, the fourth
//! query failed with "bad receipt: states a total above what we signed".)
//! A query to a brand whose upstream is down costs nothing.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use agentwire_agent::devnet::{provision, Provisioned};
use agentwire_agent::dht::Dht;
use agentwire_agent::near::ChannelClient;
use agentwire_devnet::{Devnet, DevnetConfig, ONE_NEAR};

const CHAT: u128 = ONE_NEAR / 100;
const STORY: u128 = ONE_NEAR / 50;
const STORY_INCREMENT: u128 = ONE_NEAR / 200;
const DOWN: u128 = ONE_NEAR / 40;
const QUERIES: usize = 50;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn dead_tcp_port() -> u16 {
    // Bound and dropped: nothing listens there any more.
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn brand_config(dir: &Path, boot: &str, ready: &Provisioned) -> PathBuf {
    let path = dir.join("brand.toml");
    std::fs::write(
        &path,
        format!(
            r#"identity = "brand.key"
near_account = "brand.devnet"
listen = "127.0.0.1:{port}"
p2p_listen = ["/ip4/127.0.0.1/udp/0/quic-v1"]
bootstrap = ["{boot}"]

[payments]
near_rpc = "{rpc}"
near_key_file = "brand.devnet.near-key"
store = "brand-vouchers"

[[service]]
name = "chat"
price = "{CHAT}"
handler = {{ kind = "echo" }}

[[service]]
name = "story"
price = "{STORY}"
handler = {{ kind = "words" }}
increment = {{ chunks = 3, price = "{STORY_INCREMENT}" }}

[[service]]
name = "down"
price = "{DOWN}"
handler = {{ kind = "http", url = "http://127.0.0.1:{dead}/v1/chat/completions" }}
"#,
            port = free_port(),
            rpc = ready.rpc_url,
            dead = dead_tcp_port(),
        ),
    )
    .unwrap();
    path
}

fn serve(config: &Path, log: &Path) -> Proc {
    let err = std::fs::File::create(log).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_agentwire"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(err)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("Ctrl-C stops it") => break,
            Some(_) => {}
            None => panic!("serve exited; see {}", log.display()),
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Proc(child)
}

/// Runs one `agentwire query --json`; returns its JSON (or the error text).
fn query(dir: &Path, boot: &str, rpc: &str, service: &str, question: &str) -> Result<serde_json::Value, String> {
    let key = dir.join("alice.devnet.near-key");
    let out = Command::new(env!("CARGO_BIN_EXE_agentwire"))
        .args(["--json", "query", "--account", "brand.devnet", "--service", service, "--bootstrap", boot])
        .args(["--near-rpc", rpc, "--near-account", "alice.devnet", "--near-key-file", key.to_str().unwrap()])
        .args(["--store", dir.join("alice-payer").to_str().unwrap(), "--key", dir.join("user.key").to_str().unwrap()])
        .arg(question)
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or_default()).map_err(|e| format!("{e}: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_query_processes_pay_exactly_what_they_received() {
    let devnet = Devnet::start(DevnetConfig::default()).unwrap();
    let ready = provision(&devnet, &["brand", "alice"], 100 * ONE_NEAR, 0).await.unwrap();
    let (_boot, boot) = Dht::loopback_bootstrap().await.unwrap();
    let boot = boot.to_string();
    let dir = std::env::temp_dir().join(format!("agentwire-cli-queries-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for u in &ready.users {
        std::fs::write(dir.join(format!("{}.near-key", u.account_id)), u.secret_key.to_string()).unwrap();
    }
    let config = brand_config(&dir, &boot, &ready);
    let mut brand = serve(&config, &dir.join("brand.log"));

    let story = "one two three four five six seven eight nine ten";
    let mut delivered = 0u128;
    let mut answers = 0;
    for i in 0..QUERIES {
        let (service, question, price) = match i % 5 {
            1 | 3 => ("story", story, STORY + 3 * STORY_INCREMENT),
            4 if i % 10 == 4 => ("down", "is anyone there?", 0),
            _ => ("chat", "do you ship to Lisbon?", CHAT),
        };
        match query(&dir, &boot, &ready.rpc_url, service, question) {
            Ok(v) => {
                assert_ne!(service, "down", "an upstream that is down cannot answer");
                assert_eq!(v["answer"].as_str().unwrap(), question, "query {i}");
                let paid: u128 = v["paid"].as_str().unwrap().parse().unwrap();
                assert_eq!(paid, price, "query {i} ({service}) paid its price");
                assert!(v["receipt_cumulative"].is_string(), "query {i} came with a checked receipt");
                delivered += paid;
                answers += 1;
            }
            Err(e) if service == "down" => {
                assert!(e.contains("UpstreamFailed"), "query {i}: {e}");
                assert!(e.contains("not charged"), "the brand says it did not charge: {e}");
            }
            Err(e) => panic!("query {i} ({service}) failed: {e}"),
        }
    }
    assert_eq!(answers, QUERIES - QUERIES / 10);

    // A graceful stop claims what the brand charged.
    let _ = Command::new("kill").arg("-TERM").arg(brand.0.id().to_string()).status();
    brand.0.wait().unwrap();
    let chain = ChannelClient::new(&ready.rpc_url, ready.channels.as_str()).unwrap();
    let alice: near_api::AccountId = "alice.devnet".parse().unwrap();
    let channels = chain.channels_of(&alice).await.unwrap();
    assert_eq!(channels.len(), 1, "one channel across {QUERIES} processes: {channels:?}");
    assert_eq!(
        channels[0].claimed, delivered,
        "the chain paid the brand exactly the prices of the answers received, and nothing for the upstream that was down"
    );
    drop(devnet);
    let _ = std::fs::remove_dir_all(&dir);
}
