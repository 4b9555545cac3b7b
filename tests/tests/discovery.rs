//! Fifty agents on loopback — bootstrap nodes, brands and users — on the
//! AgentWire DHT: every user finds every brand by NEAR account and by
//! service, connects over QUIC with the key from the record (IK), and runs
//! concurrent requests, a streamed answer and one-way messages. Then, in the
//! same network, forged, expired, oversized and stale-sequence records are
//! refused by every node, and a brand that stops is no longer returned once
//! its record expires. The DHT also runs over TCP.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentwire_agent::dht::{libp2p_keypair, Dht, DhtConfig, DhtError};
use agentwire_agent::quic::{
    connect, Answer, AnswerFuture, FirstAnswer, IncomingRequest, Server, Service, StreamItem, Target, TransportLimits,
};
use agentwire_protocol::account::AccountId;
use agentwire_protocol::dht::record_key;
use agentwire_protocol::identity::{Keypair, LocalIdentity};
use agentwire_protocol::record::{AgentRecord, Currency, Service as Offer, SignedRecord};
use agentwire_protocol::session::PeerInfo;
use libp2p::Multiaddr;
use rand_core::OsRng;

/// The two tests each run dozens of nodes; on a 2-core machine they take
/// turns rather than starve each other's queries.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const BOOTSTRAP: usize = 3;
const BRANDS: usize = 12;
const USERS: usize = 35;
const SERVICES: [&str; 3] = ["chat", "search", "translate"];

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

struct Echo(Mutex<usize>);

impl Service for Echo {
    fn handle(&self, r: IncomingRequest) -> AnswerFuture {
        Box::pin(async move {
            if r.service == "stream" {
                let (tx, answer) = Answer::stream(2);
                tokio::spawn(async move {
                    for c in r.body.chunks(2) {
                        let _ = tx.send(StreamItem::Chunk(c.to_vec())).await;
                    }
                });
                answer
            } else {
                Answer::Response(r.body)
            }
        })
    }

    fn one_way(&self, _peer: &PeerInfo, _topic: &str, _body: Vec<u8>) {
        *self.0.lock().unwrap() += 1;
    }
}

fn loopback() -> Vec<Multiaddr> {
    vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()]
}

fn record(
    id: &LocalIdentity,
    account: &str,
    services: &[&str],
    quic: SocketAddr,
    seq: u64,
    expires_at: u64,
) -> AgentRecord {
    AgentRecord {
        identity: id.identity.public(),
        near_account: AccountId::new(account).unwrap(),
        noise_static: id.noise.public(),
        quic_addrs: vec![quic],
        p2p_addrs: vec![],
        services: services.iter().map(|s| Offer::per_query(s, "", 0, Currency::Near)).collect(),
        channel_contract: AccountId::new("channels.devnet").unwrap(),
        min_deposit: 0,
        seq,
        expires_at,
    }
}

struct Brand {
    identity: Arc<LocalIdentity>,
    account: String,
    services: Vec<&'static str>,
    server: Server,
    dht: Dht,
    echo: Arc<Echo>,
}

async fn start_brand(i: usize, bootstrap: &[Multiaddr], lifetime: u64) -> Brand {
    let identity = Arc::new(LocalIdentity::generate(&mut OsRng));
    let echo = Arc::new(Echo(Mutex::new(0)));
    let server = Server::bind(
        "127.0.0.1:0".parse().unwrap(),
        identity.clone(),
        vec!["stream/1".into()],
        echo.clone(),
        TransportLimits::default(),
    )
    .unwrap();
    let config = DhtConfig { listen: loopback(), bootstrap: bootstrap.to_vec(), server: true, ..DhtConfig::default() };
    let dht = Dht::start(&identity.identity, config).await.unwrap();
    let account = format!("brand{i}.near");
    let services = vec![SERVICES[i % SERVICES.len()]];
    let signed = record(&identity, &account, &services, server.local_addr().unwrap(), 1, now() + lifetime)
        .sign(&identity.identity)
        .unwrap();
    publish_with_retry(&dht, signed).await;
    Brand { identity, account, services, server, dht, echo }
}

async fn publish_with_retry(dht: &Dht, signed: SignedRecord) {
    for _ in 0..20 {
        if dht.publish(signed.clone()).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("could not publish");
}

/// Retries a lookup while the DHT settles (10 s at most), until it answers
/// and, with a second argument, until its answer satisfies that predicate. A
/// lookup whose walk the query timeout cut short may miss providers; it is
/// not cached, so the retry walks again (a finished walk's answer is cached
/// and a retry sees it unchanged).
macro_rules! eventually {
    ($e:expr) => {{
        let mut r = $e;
        for _ in 0..40 {
            if r.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            r = $e;
        }
        r.expect("found in time")
    }};
    ($e:expr, $ok:expr) => {{
        let ok = $ok;
        let mut r = $e;
        for _ in 0..40 {
            if r.as_ref().is_ok_and(&ok) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            r = $e;
        }
        r.expect("found in time")
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_agents_discover_connect_and_talk() {
    let _turn = ONE_AT_A_TIME.lock().await;
    // Bootstrap nodes.
    let mut boots = Vec::new();
    let mut boot_addrs: Vec<Multiaddr> = Vec::new();
    for _ in 0..BOOTSTRAP {
        let key = Keypair::generate(&mut OsRng);
        let config =
            DhtConfig { listen: loopback(), bootstrap: boot_addrs.clone(), server: true, ..DhtConfig::default() };
        let dht = Dht::start(&key, config).await.unwrap();
        boot_addrs.extend(dht.listen_addrs().await.unwrap());
        boots.push(dht);
    }
    let mut brands = Vec::new();
    for i in 0..BRANDS {
        brands.push(start_brand(i, &boot_addrs, 600).await);
    }
    let brands = Arc::new(brands);
    let mut users = tokio::task::JoinSet::new();
    for u in 0..USERS {
        let (boot_addrs, brands) = (boot_addrs.clone(), brands.clone());
        users.spawn(async move {
            let me = Arc::new(LocalIdentity::generate(&mut OsRng));
            let config = DhtConfig { listen: loopback(), bootstrap: boot_addrs, server: false, ..DhtConfig::default() };
            let dht = Dht::start(&me.identity, config).await.unwrap();
            let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
            for b in brands.iter() {
                // By account: exactly this brand.
                let account = AccountId::new(&b.account).unwrap();
                let found = eventually!(dht.find_by_account(&account).await);
                assert_eq!(found.len(), 1, "user {u}: one agent for {}", b.account);
                let r = found[0].record();
                assert_eq!(r.identity, b.identity.identity.public());
                // By service: this brand is among the providers.
                let offers = |found: &Vec<SignedRecord>| found.iter().any(|s| s.record().identity == r.identity);
                let by_service = eventually!(dht.find_by_service(b.services[0]).await, offers);
                assert!(offers(&by_service), "user {u}: {} among the providers of {}", b.account, b.services[0]);
                // Connect with the record's keys and talk.
                let target =
                    Target { addr: r.quic_addrs[0], identity: Some(r.identity), noise_static: Some(r.noise_static) };
                let conn = Arc::new(
                    connect(&ep, me.clone(), &target, &["stream/1".into()], TransportLimits::default()).await.unwrap(),
                );
                let mut calls = tokio::task::JoinSet::new();
                for i in 0..4u8 {
                    let conn = conn.clone();
                    calls.spawn(
                        async move { assert_eq!(conn.request("echo", vec![i; 200]).await.unwrap(), vec![i; 200]) },
                    );
                }
                while let Some(c) = calls.join_next().await {
                    c.unwrap();
                }
                let FirstAnswer::Stream(mut s) = conn.call("stream", b"abcdef".to_vec(), None).await.unwrap() else {
                    panic!("stream")
                };
                let mut n = 0;
                while s.next_chunk().await.unwrap().is_some() {
                    n += 1;
                }
                assert_eq!(n, 3);
                conn.one_way("hello", b"hi".to_vec()).await.unwrap();
                conn.close();
            }
        });
    }
    while let Some(r) = users.join_next().await {
        r.unwrap();
    }
    // Every user's one-way message reached every brand.
    for _ in 0..100 {
        if brands.iter().all(|b| *b.echo.0.lock().unwrap() == USERS) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for b in brands.iter() {
        assert_eq!(*b.echo.0.lock().unwrap(), USERS, "{} got every one-way message", b.account);
    }

    // Bad records are refused by every node (bootstrap nodes and brands),
    // and a brand that stops disappears once its record expires.
    let rogue = Dht::start(
        &Keypair::generate(&mut OsRng),
        DhtConfig { listen: loopback(), bootstrap: boot_addrs.clone(), server: true, ..DhtConfig::default() },
    )
    .await
    .unwrap();
    let user = Dht::start(
        &Keypair::generate(&mut OsRng),
        DhtConfig { listen: loopback(), bootstrap: boot_addrs.clone(), ..DhtConfig::default() },
    )
    .await
    .unwrap();
    let mut nodes: Vec<Dht> = boots.clone();
    nodes.extend(brands.iter().map(|b| b.dht.clone()));
    bad_records_are_refused(&nodes, &rogue, &brands[0], &user).await;
    a_stopped_brand_disappears(&nodes, &brands[1], &user).await;
    drop(boots);
}

/// A misbehaving `rogue` node pushes forged, stale-sequence, expired and
/// oversized versions of `brand`'s record to every peer it knows; every node
/// in `nodes` keeps only the valid one.
async fn bad_records_are_refused(nodes: &[Dht], rogue: &Dht, brand: &Brand, user: &Dht) {
    let key = record_key(&brand.identity.agent_id());
    let account = AccountId::new(&brand.account).unwrap();
    let good = eventually!(user.find_by_account(&account).await);
    let good_bytes = good[0].encoded().to_vec();
    // Every node holds the current record before the rogue strikes: a stale
    // sequence number is only "stale" to a node that knows a newer one.
    for node in nodes {
        for attempt in 0.. {
            if node.stored(key.clone()).await.unwrap().as_deref() == Some(&good_bytes[..]) {
                break;
            }
            assert!(attempt < 40, "every node stores the brand's record");
            if attempt % 8 == 7 {
                brand.dht.publish(good[0].clone()).await.ok();
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let addr = good[0].record().quic_addrs[0];
    let seq = good[0].record().seq;
    // Forged: a valid record with one signature byte flipped.
    let mut forged = good_bytes.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    // Stale: the same brand, an older sequence number (properly signed).
    let stale = record(&brand.identity, &brand.account, &brand.services, addr, seq - 1, now() + 600)
        .sign(&brand.identity.identity)
        .unwrap();
    // Expired: properly signed, a newer sequence, expired a minute ago.
    let expired = record(&brand.identity, &brand.account, &brand.services, addr, seq + 1, now() - 60)
        .sign(&brand.identity.identity);
    // Oversized: more than 2048 bytes.
    let oversized = vec![0xA5u8; 3000];
    let mut bad = vec![forged, stale.encoded().to_vec(), oversized];
    if let Ok(e) = expired {
        bad.push(e.encoded().to_vec());
    }
    for value in &bad {
        rogue.put_raw(key.clone(), value.clone()).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (i, node) in nodes.iter().enumerate() {
        let stored = node.stored(key.clone()).await.unwrap();
        assert_eq!(stored.as_deref(), Some(&good_bytes[..]), "node {i} stores only the brand's valid record");
    }
    assert_eq!(eventually!(user.record(brand.identity.agent_id()).await).encoded(), &good_bytes[..]);
}

/// `brand` replaces its record with one that expires in a few seconds and
/// stops; once the record has expired, lookups no longer return it.
async fn a_stopped_brand_disappears(nodes: &[Dht], brand: &Brand, user: &Dht) {
    let account = AccountId::new(&brand.account).unwrap();
    // Not through `find_by_account`: its 30 s cache would still hold the
    // superseded record, which this test shortens artificially.
    let current = eventually!(user.record(brand.identity.agent_id()).await);
    let r = current.record();
    let short = record(&brand.identity, &brand.account, &brand.services, r.quic_addrs[0], r.seq + 1, now() + 4)
        .sign(&brand.identity.identity)
        .unwrap();
    publish_with_retry(&brand.dht, short.clone()).await;
    // Every node has replaced the old record (a node the update missed would
    // still serve the old, longer-lived one).
    let key = record_key(&brand.identity.agent_id());
    for node in nodes {
        for attempt in 0.. {
            if node.stored(key.clone()).await.unwrap().as_deref() == Some(short.encoded()) {
                break;
            }
            assert!(attempt < 12, "every node replaced the brand's record");
            if attempt % 4 == 3 {
                brand.dht.publish(short.clone()).await.ok();
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    brand.dht.unpublish().await.unwrap();
    brand.server.shutdown().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Its provider entries outlive it; its record does not.
    let gone = user.find_by_account(&account).await;
    assert!(matches!(gone, Err(DhtError::NoValidRecord { .. })), "an expired brand is not returned: {gone:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dht_also_runs_over_tcp_noise_yamux() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let tcp = || vec!["/ip4/127.0.0.1/tcp/0".parse::<Multiaddr>().unwrap()];
    let boot =
        Dht::start(&Keypair::generate(&mut OsRng), DhtConfig { listen: tcp(), server: true, ..DhtConfig::default() })
            .await
            .unwrap();
    let boot_addrs = boot.listen_addrs().await.unwrap();
    assert!(boot_addrs.iter().all(|a| a.to_string().contains("/tcp/")));
    // A brand and a user that know only TCP addresses.
    let identity = LocalIdentity::generate(&mut OsRng);
    let brand = Dht::start(
        &identity.identity,
        DhtConfig { listen: tcp(), bootstrap: boot_addrs.clone(), server: true, ..DhtConfig::default() },
    )
    .await
    .unwrap();
    let signed = record(&identity, "tcp-brand.near", &["chat"], "127.0.0.1:9".parse().unwrap(), 1, now() + 600)
        .sign(&identity.identity)
        .unwrap();
    publish_with_retry(&brand, signed.clone()).await;
    let user = Dht::start(
        &Keypair::generate(&mut OsRng),
        DhtConfig { listen: tcp(), bootstrap: boot_addrs, ..DhtConfig::default() },
    )
    .await
    .unwrap();
    let found = eventually!(user.find_by_account(&AccountId::new("tcp-brand.near").unwrap()).await);
    assert_eq!(found[0].encoded(), signed.encoded());
}

/// A lookup that the query timeout cuts short (here because a peer never
/// answers) still returns what it found, but its answer is not cached: the
/// next lookup walks again and sees a provider that joined since.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_cut_short_by_the_query_timeout_is_not_cached() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let boot = Dht::start(
        &Keypair::generate(&mut OsRng),
        DhtConfig { listen: loopback(), server: true, ..DhtConfig::default() },
    )
    .await
    .unwrap();
    let boot_addrs = boot.listen_addrs().await.unwrap();
    let chat = SERVICES[0];
    let _first = start_brand(0, &boot_addrs, 600).await;
    // A peer that never answers: a UDP socket nobody reads. Dialing it waits
    // for the 5 s connect timeout, longer than the user's 2 s queries.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_peer = libp2p_keypair(&Keypair::generate(&mut OsRng)).unwrap().public().to_peer_id();
    let silent_addr: Multiaddr =
        format!("/ip4/127.0.0.1/udp/{}/quic-v1/p2p/{silent_peer}", silent.local_addr().unwrap().port())
            .parse()
            .unwrap();
    let mut bootstrap = boot_addrs.clone();
    bootstrap.push(silent_addr);
    let user = Dht::start(
        &Keypair::generate(&mut OsRng),
        DhtConfig {
            listen: loopback(),
            bootstrap,
            query_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(5),
            ..DhtConfig::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(eventually!(user.find_by_service(chat).await).len(), 1);
    // A second brand offering the same service joins; had the first, cut-short
    // answer been cached, lookups would miss it for the cache's 30 s.
    let _second = start_brand(SERVICES.len(), &boot_addrs, 600).await;
    let both = |found: &Vec<SignedRecord>| found.len() == 2;
    let found = eventually!(user.find_by_service(chat).await, both);
    assert!(both(&found), "a cut-short answer was cached");
}
