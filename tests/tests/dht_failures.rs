//! Failures a local check can see are reported quickly (within 3 s, the
//! bound issue 14 sets for them) and say what is wrong and what to do: a
//! dead or malformed bootstrap address, a bootstrap address that another
//! node answers, a brand that cannot reach any bootstrap peer, a port in
//! use, a name nobody announces. The bounds are the configured waits
//! (DhtConfig's connect timeout, 2 s) plus slack for a loaded machine;
//! they are failure deadlines, not performance measurements.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agentwire_agent::brand::{self, BrandError};
use agentwire_agent::config::BrandConfig;
use agentwire_agent::dht::{AddressProblem, Dht, DhtConfig, DhtError, DialFailure, Unreachable};
use agentwire_agent::quic::TransportLimits;
use agentwire_agent::user::{Lookup, UserAgent, UserConfig, UserError};
use agentwire_protocol::account::AccountId;
use agentwire_protocol::identity::{Keypair, LocalIdentity};
use libp2p::{Multiaddr, PeerId};
use rand_core::OsRng;

/// What issue 14 allows a failure a local check can see.
const LOCAL_FAILURE: Duration = Duration::from_secs(3);

fn loopback() -> Vec<Multiaddr> {
    vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()]
}

/// A user agent's settings with everything on loopback.
fn user_config(bootstrap: Vec<Multiaddr>) -> UserConfig {
    let mut config = UserConfig::new(bootstrap);
    config.dht.listen = loopback();
    config.quic_bind = "127.0.0.1:0".parse().unwrap();
    config
}

async fn start_user(bootstrap: Vec<Multiaddr>) -> (Result<UserAgent, UserError>, Duration) {
    let started = Instant::now();
    let identity = Arc::new(LocalIdentity::generate(&mut OsRng));
    let user = UserAgent::start_with(identity, user_config(bootstrap), None, TransportLimits::default()).await;
    (user, started.elapsed())
}

fn some_peer() -> PeerId {
    PeerId::random()
}

/// A loopback port nothing listens on (bound, then released).
fn dead_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn dead_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn unreachable(result: Result<UserAgent, UserError>) -> (Vec<Unreachable>, String, &'static str) {
    match result {
        Err(UserError::Dht(e @ DhtError::BootstrapUnreachable(_))) => {
            let (text, action) = (e.to_string(), e.action());
            let DhtError::BootstrapUnreachable(failed) = e else { unreachable!() };
            (failed, text, action)
        }
        Err(e) => panic!("expected an unreachable bootstrap, got: {e}"),
        Ok(_) => panic!("expected an unreachable bootstrap, the user agent started"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_udp_bootstrap_port_fails_within_the_connect_timeout_naming_the_address() {
    let addr: Multiaddr =
        format!("/ip4/127.0.0.1/udp/{}/quic-v1/p2p/{}", dead_udp_port(), some_peer()).parse().unwrap();
    let (result, took) = start_user(vec![addr.clone()]).await;
    let (failed, text, action) = unreachable(result);
    assert!(took <= LOCAL_FAILURE, "took {took:?}");
    assert_eq!(failed, vec![Unreachable { addr: addr.clone(), why: DialFailure::NoAnswer(Duration::from_secs(2)) }]);
    assert!(text.contains(&addr.to_string()), "{text}");
    assert!(text.contains("no answer within 2 s"), "{text}");
    assert!(action.contains("bootstrap node runs"), "{action}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_tcp_bootstrap_port_is_refused() {
    let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{}/p2p/{}", dead_tcp_port(), some_peer()).parse().unwrap();
    let (result, took) = start_user(vec![addr.clone()]).await;
    let (failed, text, _) = unreachable(result);
    assert!(took <= LOCAL_FAILURE, "took {took:?}");
    assert_eq!(failed, vec![Unreachable { addr, why: DialFailure::Refused }]);
    assert!(text.contains("connection refused"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_address_answered_by_another_node_says_so() {
    let (boot, real) = Dht::loopback_bootstrap().await.unwrap();
    let mut wrong = real.clone();
    wrong.pop();
    let wrong = wrong.with(libp2p::multiaddr::Protocol::P2p(some_peer()));
    let (result, took) = start_user(vec![wrong.clone()]).await;
    let (failed, text, _) = unreachable(result);
    assert!(took <= LOCAL_FAILURE, "took {took:?}");
    assert!(
        matches!(&failed[..], [Unreachable { why: DialFailure::WrongPeer { actual, .. }, .. }] if *actual == boot.peer_id()),
        "{failed:?}"
    );
    assert!(text.contains(&boot.peer_id().to_string()) && text.contains("out of date"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bootstrap_addresses_are_refused_before_anything_is_dialed() {
    let peer = some_peer();
    let cases = [
        ("/ip4/127.0.0.1/udp/4000/quic-v1".to_string(), AddressProblem::NoPeerId, "has no /p2p/<peer id>"),
        (format!("/ip4/127.0.0.1/udp/4000/p2p/{peer}"), AddressProblem::Transport, "udp/quic-v1 or tcp"),
        (format!("/dns4/localhost/tcp/4000/p2p/{peer}"), AddressProblem::NoIp, "IP address"),
    ];
    for (addr, expected, words) in cases {
        let (result, took) = start_user(vec![addr.parse().unwrap()]).await;
        match result {
            Err(UserError::Dht(e @ DhtError::BootstrapAddress { problem, .. })) => {
                assert_eq!(problem, expected, "{addr}");
                let text = e.to_string();
                assert!(text.contains(&addr) && text.contains(words), "{text}");
                assert!(!e.action().is_empty());
            }
            Err(e) => panic!("{addr}: {e}"),
            Ok(_) => panic!("{addr} was accepted"),
        }
        assert!(took < Duration::from_secs(1), "{addr}: refused at once, took {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_bootstrap_peer_up_the_start_succeeds() {
    let (_boot, real) = Dht::loopback_bootstrap().await.unwrap();
    let dead: Multiaddr =
        format!("/ip4/127.0.0.1/udp/{}/quic-v1/p2p/{}", dead_udp_port(), some_peer()).parse().unwrap();
    let (result, took) = start_user(vec![dead, real]).await;
    let user = result.expect("one bootstrap peer answers");
    assert!(took <= LOCAL_FAILURE, "took {took:?}");
    assert!(user.dht().routing_table_size().await.unwrap() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_node_may_start_while_its_peers_are_down() {
    let dead: Multiaddr =
        format!("/ip4/127.0.0.1/udp/{}/quic-v1/p2p/{}", dead_udp_port(), some_peer()).parse().unwrap();
    let config = DhtConfig {
        listen: loopback(),
        bootstrap: vec![dead],
        server: true,
        require_bootstrap: false,
        ..Default::default()
    };
    let started = Instant::now();
    Dht::start(&Keypair::generate(&mut OsRng), config).await.expect("starts, with a warning");
    assert!(started.elapsed() <= LOCAL_FAILURE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_brand_that_reaches_no_bootstrap_peer_fails_to_start_and_says_why() {
    let dir = std::env::temp_dir().join(format!("agentwire-dht-failures-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dead = format!("/ip4/127.0.0.1/udp/{}/quic-v1/p2p/{}", dead_udp_port(), some_peer());
    let path = dir.join("brand.toml");
    std::fs::write(
        &path,
        format!(
            r#"identity = "brand.key"
near_account = "lonely.near"
listen = "127.0.0.1:0"
p2p_listen = ["/ip4/127.0.0.1/udp/0/quic-v1"]
bootstrap = ["{dead}"]

[[service]]
name = "chat"
handler = {{ kind = "echo" }}
"#
        ),
    )
    .unwrap();
    let started = Instant::now();
    let result = brand::start(BrandConfig::load(&path).unwrap(), TransportLimits::default()).await;
    let took = started.elapsed();
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Err(BrandError::Dht(e @ DhtError::BootstrapUnreachable(_))) => {
            assert!(e.to_string().contains(&dead), "{e}");
        }
        Err(e) => panic!("expected an unreachable bootstrap, got: {e}"),
        Ok(_) => panic!("the brand started without any DHT peer"),
    }
    assert!(took <= LOCAL_FAILURE, "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listen_port_in_use_is_named() {
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = [
        format!("/ip4/127.0.0.1/udp/{}/quic-v1", udp.local_addr().unwrap().port()),
        format!("/ip4/127.0.0.1/tcp/{}", tcp.local_addr().unwrap().port()),
    ];
    for addr in taken {
        let config = DhtConfig { listen: vec![addr.parse().unwrap()], server: true, ..Default::default() };
        let started = Instant::now();
        match Dht::start(&Keypair::generate(&mut OsRng), config).await {
            Err(e @ DhtError::Listen { .. }) => {
                let text = e.to_string();
                assert!(text.contains(&addr), "{text}");
                assert!(text.to_lowercase().contains("address already in use"), "{text}");
                assert!(e.action().contains("free port"));
            }
            Err(e) => panic!("{addr}: {e}"),
            Ok(_) => panic!("{addr} is in use, yet the node listens"),
        }
        assert!(started.elapsed() <= LOCAL_FAILURE);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_account_is_reported_once_the_walk_ends() {
    let (boot, boot_addr) = Dht::loopback_bootstrap().await.unwrap();
    let brand = Dht::start(
        &Keypair::generate(&mut OsRng),
        DhtConfig { listen: loopback(), bootstrap: vec![boot_addr.clone()], server: true, ..Default::default() },
    )
    .await
    .unwrap();
    let (user, _) = start_user(vec![boot_addr]).await;
    let user = user.unwrap();
    let started = Instant::now();
    let result = user.find(&Lookup::Account(AccountId::new("nobody.near").unwrap())).await;
    let took = started.elapsed();
    match result {
        Err(UserError::Dht(e @ DhtError::NotFound { asked, .. })) => {
            assert!(asked >= 1, "the walk asked someone");
            assert!(e.to_string().contains("account nobody.near"), "{e}");
            assert!(!e.retry_may_help(), "an answer, not a reason to retry");
            assert!(e.action().contains("check the account"));
        }
        Err(e) => panic!("expected NotFound, got: {e}"),
        Ok(found) => panic!("found {} record(s) for nobody.near", found.len()),
    }
    assert!(took <= LOCAL_FAILURE, "took {took:?}");
    drop((boot, brand));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_binds_only_where_it_is_told() {
    let (_boot, boot_addr) = Dht::loopback_bootstrap().await.unwrap();
    let (user, _) = start_user(vec![boot_addr.clone()]).await;
    let user = user.unwrap();
    let addrs = user.dht().listen_addrs().await.unwrap();
    assert_eq!(addrs.len(), 1);
    assert!(addrs[0].to_string().starts_with("/ip4/127.0.0.1/udp/"), "{addrs:?}");
    // By default a user's DHT node listens nowhere (it only dials; not
    // started here, as its dials would bind every interface).
    assert!(UserConfig::new(vec![boot_addr]).dht.listen.is_empty());
}
