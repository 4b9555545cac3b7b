//! The DHT as another libp2p implementation sees it: raw Kademlia peers
//! (plain libp2p swarms speaking `/agentwire/kad/1.0.0`, none of AgentWire's
//! rules) next to AgentWire nodes, on loopback.
//!
//! - A brand's ADD_PROVIDER carries its addresses (js-libp2p drops a
//!   provider without any).
//! - A record lookup that hears a superseded record first still returns the
//!   newest, and sends it back to the peer that held the old one.
//! - A lookup's cached answer is dropped once a newer record is seen.
//! - What a raw writer puts is stored only when it validates.
//! - A peer that never answers costs a walk one request timeout, not the
//!   whole query: an unknown name is reported as not found, not as a timeout.

use std::time::{Duration, Instant};

use agentwire_agent::dht::{Dht, DhtConfig, DhtError};
use agentwire_protocol::account::AccountId;
use agentwire_protocol::dht::{account_provider_key, record_key};
use agentwire_protocol::identity::LocalIdentity;
use agentwire_protocol::record::{AgentRecord, Currency, Service as Offer, SignedRecord};
use futures::StreamExt;
use libp2p::kad::store::{MemoryStore, RecordStore};
use libp2p::kad::{self, Mode, Quorum, Record, StoreInserts};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm};
use rand_core::OsRng;
use tokio::sync::{mpsc, oneshot};

const KAD: &str = agentwire_agent::dht::KAD_PROTOCOL;
/// How long a test waits for something that should happen at once, before
/// it fails instead of hanging (not a performance bound).
const PATIENCE: Duration = Duration::from_secs(20);

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn loopback() -> Vec<Multiaddr> {
    vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()]
}

fn without_p2p(mut a: Multiaddr) -> Multiaddr {
    if let Some(Protocol::P2p(_)) = a.iter().last() {
        a.pop();
    }
    a
}

fn record(id: &LocalIdentity, account: &str, seq: u64) -> SignedRecord {
    AgentRecord {
        identity: id.identity.public(),
        near_account: AccountId::new(account).unwrap(),
        noise_static: id.noise.public(),
        quic_addrs: vec!["127.0.0.1:9".parse().unwrap()],
        p2p_addrs: vec![],
        services: vec![Offer::per_query("chat", "", 0, Currency::Near)],
        channel_contract: AccountId::new("channels.devnet").unwrap(),
        min_deposit: 0,
        seq,
        expires_at: now() + 600,
    }
    .sign(&id.identity)
    .unwrap()
}

fn kad_record(r: &SignedRecord) -> Record {
    Record::new(record_key(&r.record().agent_id()), r.encoded().to_vec())
}

#[derive(NetworkBehaviour)]
struct Raw {
    kad: kad::Behaviour<MemoryStore>,
}

/// Something to do with a raw peer's swarm, on its task.
type SwarmJob = Box<dyn FnOnce(&mut Swarm<Raw>) + Send>;

enum Job {
    Run(SwarmJob),
    /// Stop polling the swarm until the sender is used or dropped: the
    /// peer's connections stay up but its Kademlia answers nothing.
    Pause(oneshot::Receiver<()>),
}

/// What a raw peer saw.
enum Seen {
    Kad(Box<kad::Event>),
    Connected(PeerId),
}

impl Seen {
    fn kad(&self) -> Option<&kad::Event> {
        match self {
            Seen::Kad(e) => Some(e),
            Seen::Connected(_) => None,
        }
    }
}

/// A plain libp2p Kademlia node on loopback QUIC, driven by its own task.
struct RawPeer {
    /// Its address, with `/p2p/<peer id>`.
    addr: Multiaddr,
    jobs: mpsc::UnboundedSender<Job>,
    seen: mpsc::UnboundedReceiver<Seen>,
}

impl RawPeer {
    async fn start(mode: Mode, filter: StoreInserts) -> RawPeer {
        let mut swarm = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_quic()
            .with_behaviour(|key| {
                let id = key.public().to_peer_id();
                let mut config = kad::Config::new(StreamProtocol::new(KAD));
                config.set_record_filtering(filter);
                let mut kad = kad::Behaviour::with_config(id, MemoryStore::new(id), config);
                kad.set_mode(Some(mode));
                Raw { kad }
            })
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
            .build();
        swarm.listen_on(loopback().remove(0)).unwrap();
        let addr = loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                break address;
            }
        };
        let peer = *swarm.local_peer_id();
        let (jobs, mut job_rx) = mpsc::unbounded_channel::<Job>();
        let (seen_tx, seen) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    job = job_rx.recv() => match job {
                        Some(Job::Run(f)) => f(&mut swarm),
                        Some(Job::Pause(resume)) => { let _ = resume.await; }
                        None => return,
                    },
                    event = swarm.select_next_some() => {
                        let seen = match event {
                            SwarmEvent::Behaviour(RawEvent::Kad(e)) => Seen::Kad(Box::new(e)),
                            SwarmEvent::ConnectionEstablished { peer_id, .. } => Seen::Connected(peer_id),
                            _ => continue,
                        };
                        let _ = seen_tx.send(seen);
                    }
                }
            }
        });
        RawPeer { addr: addr.with(Protocol::P2p(peer)), jobs, seen }
    }

    /// Runs `f` on the swarm, and returns once it has run.
    async fn run<T: Send + 'static>(&self, f: impl FnOnce(&mut Swarm<Raw>) -> T + Send + 'static) -> T {
        let (tx, rx) = oneshot::channel();
        let job = Job::Run(Box::new(move |s| {
            let _ = tx.send(f(s));
        }));
        assert!(self.jobs.send(job).is_ok(), "the raw peer's task runs");
        rx.await.unwrap()
    }

    /// Stops answering until the returned sender is used or dropped.
    fn pause(&self) -> oneshot::Sender<()> {
        let (tx, rx) = oneshot::channel();
        assert!(self.jobs.send(Job::Pause(rx)).is_ok());
        tx
    }

    /// The first event `pick` accepts (others are dropped).
    async fn next<T>(&mut self, what: &str, mut pick: impl FnMut(&Seen) -> Option<T>) -> T {
        let wait = async {
            loop {
                let seen = self.seen.recv().await.expect("the raw peer's task runs");
                if let Some(t) = pick(&seen) {
                    return t;
                }
            }
        };
        tokio::time::timeout(PATIENCE, wait).await.unwrap_or_else(|_| panic!("the raw peer never saw {what}"))
    }
}

async fn node(config: DhtConfig) -> (Dht, LocalIdentity) {
    let identity = LocalIdentity::generate(&mut OsRng);
    (Dht::start(&identity.identity, config).await.unwrap(), identity)
}

fn server(bootstrap: Vec<Multiaddr>) -> DhtConfig {
    DhtConfig { listen: loopback(), bootstrap, server: true, ..DhtConfig::default() }
}

fn client(bootstrap: Vec<Multiaddr>) -> DhtConfig {
    DhtConfig { listen: loopback(), bootstrap, ..DhtConfig::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_brands_provider_announcements_carry_its_addresses() {
    let mut raw = RawPeer::start(Mode::Server, StoreInserts::FilterBoth).await;
    let provider_for = |account: &'static str| {
        let key = account_provider_key(&AccountId::new(account).unwrap());
        move |seen: &Seen| match seen.kad() {
            Some(kad::Event::InboundRequest { request: kad::InboundRequest::AddProvider { record: Some(p) } })
                if p.key.as_ref() == key.as_slice() =>
            {
                Some(p.clone())
            }
            _ => None,
        }
    };

    // By default a server announces its listen addresses (loopback here).
    let (brand, identity) = node(server(vec![raw.addr.clone()])).await;
    brand.publish(record(&identity, "listening.near", 1)).await.unwrap();
    let announced = raw.next("the brand's ADD_PROVIDER", provider_for("listening.near")).await;
    let listening: Vec<Multiaddr> = brand.listen_addrs().await.unwrap().into_iter().map(without_p2p).collect();
    assert_eq!(announced.provider, brand.peer_id());
    assert!(!listening.is_empty());
    // (Each announced address ends in the brand's `/p2p/<peer id>`.)
    let addresses: Vec<Multiaddr> = announced.addresses.into_iter().map(without_p2p).collect();
    assert_eq!(addresses, listening, "the provider entry carries the brand's addresses");

    // With public addresses configured, those are announced instead.
    let public: Multiaddr = "/ip4/127.0.0.1/udp/4999/quic-v1".parse().unwrap();
    let config = DhtConfig { external: vec![public.clone()], ..server(vec![raw.addr.clone()]) };
    let (brand, identity) = node(config).await;
    brand.publish(record(&identity, "public.near", 1)).await.unwrap();
    let announced = raw.next("the second brand's ADD_PROVIDER", provider_for("public.near")).await;
    assert_eq!(announced.provider, brand.peer_id());
    assert_eq!(announced.addresses.into_iter().map(without_p2p).collect::<Vec<_>>(), vec![public]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_lookup_that_hears_a_stale_record_first_returns_the_newest() {
    let brand = LocalIdentity::generate(&mut OsRng);
    let stale = record(&brand, "fresh.near", 1);
    let newest = record(&brand, "fresh.near", 2);
    // Two raw nodes that enforce nothing: one holds the superseded record
    // (as a js-libp2p node that took any valid put would), one the newest.
    let mut old_holder = RawPeer::start(Mode::Server, StoreInserts::FilterBoth).await;
    let mut new_holder = RawPeer::start(Mode::Server, StoreInserts::FilterBoth).await;
    let (s, n) = (kad_record(&stale), kad_record(&newest));
    old_holder.run(move |sw| sw.behaviour_mut().kad.store_mut().put(s).unwrap()).await;
    new_holder.run(move |sw| sw.behaviour_mut().kad.store_mut().put(n).unwrap()).await;

    let (user, _) = node(client(vec![old_holder.addr.clone(), new_holder.addr.clone()])).await;
    let me = user.peer_id();
    new_holder.next("the user's connection", |s| matches!(s, Seen::Connected(p) if *p == me).then_some(())).await;
    // The newest record's holder answers only after the stale one has: the
    // first valid answer the lookup hears is the superseded record.
    let resume = new_holder.pause();
    let lookup = tokio::spawn({
        let user = user.clone();
        async move { user.record(brand.agent_id()).await }
    });
    old_holder
        .next("the lookup's GET_VALUE", |s| {
            matches!(s.kad(), Some(kad::Event::InboundRequest { request: kad::InboundRequest::GetRecord { .. } }))
                .then_some(())
        })
        .await;
    // (Time for that answer to reach the user: only so that a lookup that
    // kept the first answer would fail here; the newest wins either way, if
    // it comes within the lookup's settle window, 500 ms after the first.)
    tokio::time::sleep(Duration::from_millis(150)).await;
    drop(resume);
    let found = lookup.await.unwrap().unwrap();
    assert_eq!(found.record().seq, 2, "the lookup returns the highest sequence it heard");
    assert_eq!(found.encoded(), newest.encoded());
    // The peer that answered with the old record is sent the newest.
    let newest_bytes = newest.encoded().to_vec();
    old_holder
        .next("the newest record, sent back by the lookup", |s| match s.kad() {
            Some(kad::Event::InboundRequest {
                request: kad::InboundRequest::PutRecord { source, record: Some(r), .. },
            }) if *source == me => Some(r.value == newest_bytes),
            _ => None,
        })
        .await
        .then_some(())
        .expect("the record sent back is the newest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_answer_is_dropped_once_a_newer_record_is_seen() {
    let (boot, _) = node(server(vec![])).await;
    let boot_addrs = boot.listen_addrs().await.unwrap();
    let (brand, identity) = node(server(boot_addrs.clone())).await;
    let (user, _) = node(client(boot_addrs)).await;
    let account = AccountId::new("renewing.near").unwrap();
    brand.publish(record(&identity, account.as_str(), 1)).await.unwrap();
    let mut first = user.find_by_account(&account).await;
    let deadline = Instant::now() + PATIENCE;
    while first.is_err() && Instant::now() < deadline {
        // The provider announcement may still be on its way.
        tokio::time::sleep(Duration::from_millis(100)).await;
        first = user.find_by_account(&account).await;
    }
    assert_eq!(first.unwrap()[0].record().seq, 1);
    // The brand re-signs; the user's cached answer still says seq 1 …
    brand.publish(record(&identity, account.as_str(), 2)).await.unwrap();
    assert_eq!(user.find_by_account(&account).await.unwrap()[0].record().seq, 1, "answers are cached");
    // … until it sees the newer record, which drops that answer at once.
    assert_eq!(user.record(identity.agent_id()).await.unwrap().record().seq, 2);
    assert_eq!(user.find_by_account(&account).await.unwrap()[0].record().seq, 2, "the stale answer was dropped");
}

/// A writer that is not an AgentWire node gets its records stored only
/// when they validate. (Its PUT_VALUE is acknowledged either way: under
/// `FilterBoth` libp2p-kad 0.48 echoes every put, and its refusal path
/// leaves the stream hanging; a writer that must know reads back.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_writers_records_are_stored_only_when_valid() {
    let (target, _) = node(server(vec![])).await;
    let target_addr = without_p2p(target.listen_addrs().await.unwrap().remove(0));
    let mut writer = RawPeer::start(Mode::Client, StoreInserts::Unfiltered).await;
    let peer = target.peer_id();
    writer.run(move |s| s.behaviour_mut().kad.add_address(&peer, target_addr)).await;
    let brand = LocalIdentity::generate(&mut OsRng);
    let good = kad_record(&record(&brand, "writer.near", 5));
    let key = good.key.to_vec();
    let mut forged = good.clone();
    let last = forged.value.len() - 1;
    forged.value[last] ^= 1;
    let stale = kad_record(&record(&brand, "writer.near", 4));

    async fn put(writer: &mut RawPeer, peer: PeerId, record: Record) {
        let id =
            writer.run(move |s| s.behaviour_mut().kad.put_record_to(record, [peer].into_iter(), Quorum::One)).await;
        writer
            .next("the put's outcome", |s| match s.kad() {
                Some(kad::Event::OutboundQueryProgressed { id: q, result: kad::QueryResult::PutRecord(_), .. })
                    if *q == id =>
                {
                    Some(())
                }
                _ => None,
            })
            .await
    }

    put(&mut writer, peer, forged).await;
    assert_eq!(target.stored(key.clone()).await.unwrap(), None, "a forged record is not stored");
    put(&mut writer, peer, good.clone()).await;
    assert_eq!(target.stored(key.clone()).await.unwrap().as_ref(), Some(&good.value));
    put(&mut writer, peer, stale).await;
    assert_eq!(target.stored(key).await.unwrap(), Some(good.value), "an older sequence does not replace it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_costs_one_request_timeout_not_the_lookup() {
    let (boot, _) = node(server(vec![])).await;
    let mut boot_addrs = boot.listen_addrs().await.unwrap();
    // A Kademlia peer that accepts the connection and then never answers.
    let mut silent = RawPeer::start(Mode::Server, StoreInserts::FilterBoth).await;
    boot_addrs.push(silent.addr.clone());
    let config = client(boot_addrs);
    let (query_timeout, request_timeout) = (config.query_timeout, config.request_timeout);
    assert!(request_timeout * 2 < query_timeout, "the defaults leave a walk room for a silent peer");
    let (user, _) = node(config).await;
    let me = user.peer_id();
    silent.next("the user's connection", |s| matches!(s, Seen::Connected(p) if *p == me).then_some(())).await;
    let _silence = silent.pause();

    let started = Instant::now();
    let answer = user.find_by_account(&AccountId::new("nobody.near").unwrap()).await;
    let took = started.elapsed();
    match answer {
        Err(e @ DhtError::NotFound { .. }) => {
            assert!(e.to_string().contains("account nobody.near"), "{e}");
        }
        other => panic!("the walk should end, not time out: {other:?} after {took:?}"),
    }
    assert!(took < query_timeout, "the walk ended before the query timeout ({took:?})");
}
