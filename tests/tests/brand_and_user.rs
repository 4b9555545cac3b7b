//! A brand agent started from its TOML configuration and a user agent that
//! finds it on the DHT, checks the NEAR endpoint registry on the devnet, and
//! queries it; a record whose NEAR account does not list the agent's key is
//! refused; the brand's Prometheus metrics count what happened.

use std::sync::Arc;

use agentwire_agent::brand;
use agentwire_agent::config::BrandConfig;
use agentwire_agent::devnet::provision;
use agentwire_agent::dht::Dht;
use agentwire_agent::near::{ChannelClient, NearAccount};
use agentwire_agent::quic::{FirstAnswer, TransportLimits};
use agentwire_agent::user::{Lookup, UserAgent, UserError};
use agentwire_devnet::{Devnet, DevnetConfig, ONE_NEAR};
use agentwire_protocol::account::AccountId;
use agentwire_protocol::identity::LocalIdentity;
use rand_core::OsRng;

fn write_config(dir: &std::path::Path, name: &str, account: &str, bootstrap: &str, metrics: bool) -> BrandConfig {
    let path = dir.join(format!("{name}.toml"));
    let metrics = if metrics { "metrics = \"127.0.0.1:0\"\n" } else { "" };
    std::fs::write(
        &path,
        format!(
            r#"identity = "{name}.key"
near_account = "{account}"
listen = "127.0.0.1:0"
p2p_listen = ["/ip4/127.0.0.1/udp/0/quic-v1"]
bootstrap = ["{bootstrap}"]
{metrics}
[[service]]
name = "chat"
description = "Ask {name}"
handler = {{ kind = "echo" }}

[[service]]
name = "hello"
handler = {{ kind = "static", text = "hello from {name}" }}
"#
        ),
    )
    .unwrap();
    BrandConfig::load(&path).unwrap()
}

async fn eventually<T>(mut f: impl AsyncFnMut() -> Result<T, UserError>) -> Result<T, UserError> {
    let mut last = f().await;
    for _ in 0..30 {
        if last.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        last = f().await;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_brand_is_found_and_answers_an_unregistered_one_is_refused() {
    let devnet = Devnet::start(DevnetConfig::default()).unwrap();
    let ready = provision(&devnet, &["alice", "bob"], 10 * ONE_NEAR, 0).await.unwrap();
    let registry = ChannelClient::new(&ready.rpc_url, ready.channels.as_str()).unwrap();

    let (_boot, boot_addr) = Dht::loopback_bootstrap().await.unwrap();
    let boot_addr = boot_addr.to_string();
    let dir = std::env::temp_dir().join(format!("agentwire-brand-user-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    // alice.devnet registers its brand agent's key; bob.devnet's agent is not registered.
    let alice = brand::start(write_config(&dir, "alice", "alice.devnet", &boot_addr, true), TransportLimits::default())
        .await
        .unwrap();
    let bob = brand::start(write_config(&dir, "bob", "bob.devnet", &boot_addr, false), TransportLimits::default())
        .await
        .unwrap();
    let alice_account = ready.users.iter().find(|u| u.account_id.as_str() == "alice.devnet").unwrap();
    let signer = NearAccount::new("alice.devnet", &alice_account.secret_key.to_string()).unwrap();
    registry.storage_deposit(&signer, ONE_NEAR / 100).await.unwrap();
    registry.register_endpoint(&signer, &alice.identity.identity.public()).await.unwrap();

    let me = Arc::new(LocalIdentity::generate(&mut OsRng));
    let user = UserAgent::start(me, vec![boot_addr.parse().unwrap()], Some(registry), TransportLimits::default())
        .await
        .unwrap();
    let found =
        eventually(async || user.find(&Lookup::Account(AccountId::new("alice.devnet").unwrap())).await).await.unwrap();
    assert_eq!(found[0].record().identity, alice.identity.identity.public());
    let conn = user.session(&found[0]).await.unwrap();
    assert_eq!(conn.request("chat", b"what's new?".to_vec()).await.unwrap(), b"what's new?");
    assert_eq!(conn.request("hello", Vec::new()).await.unwrap(), b"hello from alice");
    let again = user.session(&found[0]).await.unwrap();
    assert!(Arc::ptr_eq(&conn, &again), "one session per brand is reused");
    let FirstAnswer::Response(_) = conn.call("chat", b"x".to_vec(), None).await.unwrap() else { panic!("response") };

    // bob's record claims bob.devnet, whose registry entry does not list it.
    let bob_lookup =
        eventually(async || user.find(&Lookup::Account(AccountId::new("bob.devnet").unwrap())).await).await;
    assert!(matches!(bob_lookup, Err(UserError::NotRegistered(_))), "got {:?}", bob_lookup.map(|r| r.len()));
    // By service, only the registered brand passes.
    let by_service = eventually(async || user.find(&Lookup::Service("hello".into())).await).await.unwrap();
    assert!(by_service.iter().all(|r| r.record().identity == alice.identity.identity.public()));

    // Metrics.
    let metrics = alice.metrics.unwrap();
    let text = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(metrics).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    assert!(text.contains("agentwire_requests_total 3"), "{text}");
    assert!(text.contains("agentwire_handshakes_total 1"), "{text}");
    assert!(text.contains("agentwire_request_duration_seconds_count 3"), "{text}");

    alice.shutdown().await;
    bob.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
