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
//! - A lookup asks each provider for its own record over the record protocol
//!   (written here from the spec): a record stored nowhere else is found; a
//!   provider's answer that is not its own valid record is not taken; a
//!   provider that does not speak the protocol is walked for as before.

use std::time::{Duration, Instant};

use agentwire_agent::dht::{libp2p_keypair, Dht, DhtConfig, DhtError, RECORD_PROTOCOL};
use agentwire_protocol::account::AccountId;
use agentwire_protocol::dht::{account_provider_key, record_key};
use agentwire_protocol::identity::LocalIdentity;
use agentwire_protocol::record::{AgentRecord, Currency, Service as Offer, SignedRecord};
use futures::StreamExt;
use libp2p::kad::store::{MemoryStore, RecordStore};
use libp2p::kad::{self, Mode, Quorum, Record, StoreInserts};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::behaviour::toggle::Toggle;
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
    /// The record protocol, when the peer speaks it.
    record: Toggle<request_response::Behaviour<RecordCodec>>,
}

/// The record protocol as spec §7.4 describes it: an empty request; the
/// answer is a signed record's bytes (at most 2048) or nothing.
#[derive(Clone, Default)]
struct RecordCodec;

#[async_trait::async_trait]
impl request_response::Codec for RecordCodec {
    type Protocol = StreamProtocol;
    type Request = ();
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> std::io::Result<()>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let mut rest = Vec::new();
        futures::AsyncReadExt::read_to_end(&mut futures::AsyncReadExt::take(io, 1), &mut rest).await?;
        Ok(())
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> std::io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let mut answer = Vec::new();
        futures::AsyncReadExt::read_to_end(&mut futures::AsyncReadExt::take(io, 2049), &mut answer).await?;
        Ok(answer)
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, _: &mut T, (): ()) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        Ok(())
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, answer: Vec<u8>) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        futures::AsyncWriteExt::write_all(io, &answer).await
    }
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
    /// This peer asked for our record over the record protocol.
    AskedForRecord(PeerId),
}

impl Seen {
    fn kad(&self) -> Option<&kad::Event> {
        match self {
            Seen::Kad(e) => Some(e),
            Seen::Connected(_) | Seen::AskedForRecord(_) => None,
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
        RawPeer::start_as(libp2p::identity::Keypair::generate_ed25519(), mode, filter, None).await
    }

    /// A raw peer with `key` that, given `record_answer`, speaks the record
    /// protocol and answers every request with those bytes.
    async fn start_as(
        key: libp2p::identity::Keypair,
        mode: Mode,
        filter: StoreInserts,
        record_answer: Option<Vec<u8>>,
    ) -> RawPeer {
        let speaks_record = record_answer.is_some();
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_quic()
            .with_behaviour(|key| {
                let id = key.public().to_peer_id();
                let mut config = kad::Config::new(StreamProtocol::new(KAD));
                config.set_record_filtering(filter);
                let mut kad = kad::Behaviour::with_config(id, MemoryStore::new(id), config);
                kad.set_mode(Some(mode));
                let record = speaks_record.then(|| {
                    request_response::Behaviour::new(
                        [(StreamProtocol::new(RECORD_PROTOCOL), ProtocolSupport::Full)],
                        request_response::Config::default(),
                    )
                });
                Raw { kad, record: record.into() }
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
                            SwarmEvent::Behaviour(RawEvent::Record(request_response::Event::Message {
                                peer,
                                message: request_response::Message::Request { channel, .. },
                                ..
                            })) => {
                                if let (Some(rr), Some(answer)) = (swarm.behaviour_mut().record.as_mut(), &record_answer) {
                                    let _ = rr.send_response(channel, answer.clone());
                                }
                                Seen::AskedForRecord(peer)
                            }
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

/// A raw peer that provides `account` as itself (its ADD_PROVIDER carries
/// its address), with `record_answer` its answer on the record protocol.
async fn raw_provider(
    brand: &LocalIdentity,
    account: &str,
    bootstrap: &Dht,
    record_answer: Option<Vec<u8>>,
) -> RawPeer {
    let key = libp2p_keypair(&brand.identity).unwrap();
    let raw = RawPeer::start_as(key, Mode::Server, StoreInserts::FilterBoth, record_answer).await;
    let boot = bootstrap.listen_addrs().await.unwrap().remove(0);
    let (boot_peer, own) = (bootstrap.peer_id(), without_p2p(raw.addr.clone()));
    let provider_key = account_provider_key(&AccountId::new(account).unwrap());
    raw.run(move |s| {
        s.add_external_address(own);
        s.behaviour_mut().kad.add_address(&boot_peer, without_p2p(boot));
        s.behaviour_mut().kad.start_providing(provider_key.into()).unwrap();
    })
    .await;
    raw
}

/// Looks `account` up until its provider entry has arrived (it is on its way
/// from the raw peer) or the patience runs out; the last answer.
async fn lookup_when_provided(user: &Dht, account: &str) -> Result<Vec<SignedRecord>, DhtError> {
    let account = AccountId::new(account).unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let answer = user.find_by_account(&account).await;
        let unannounced = matches!(&answer, Err(DhtError::NotFound { .. }) | Err(DhtError::NoPeers { .. }));
        if !unannounced || Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_asks_the_provider_itself_for_its_record() {
    let (boot, _) = node(server(vec![])).await;
    let brand = LocalIdentity::generate(&mut OsRng);
    let signed = record(&brand, "direct.near", 3);
    // The record is stored nowhere on the DHT: only the brand has it.
    let mut raw = raw_provider(&brand, "direct.near", &boot, Some(signed.encoded().to_vec())).await;
    let (user, _) = node(client(boot.listen_addrs().await.unwrap())).await;

    let found = lookup_when_provided(&user, "direct.near").await.expect("the provider's own answer");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].encoded(), signed.encoded());
    let me = user.peer_id();
    raw.next("the user's record request", |s| matches!(s, Seen::AskedForRecord(p) if *p == me).then_some(())).await;
    assert_eq!(boot.stored(record_key(&brand.agent_id())).await.unwrap(), None, "no copy was on the DHT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_providers_answer_that_is_not_its_own_valid_record_is_not_taken() {
    let (boot, _) = node(server(vec![])).await;
    let user = node(client(boot.listen_addrs().await.unwrap())).await.0;
    let ids: Vec<LocalIdentity> = (0..3).map(|_| LocalIdentity::generate(&mut OsRng)).collect();
    let other = LocalIdentity::generate(&mut OsRng);
    let mut forged = record(&ids[1], "forged.near", 1).encoded().to_vec();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let answers = [
        // Another agent's valid record, claiming the account asked for.
        (&ids[0], "someone-else.near", record(&other, "someone-else.near", 1).encoded().to_vec()),
        // Its own record with a bad signature.
        (&ids[1], "forged.near", forged),
        // More than a record may be.
        (&ids[2], "oversized.near", vec![0x01; 2049]),
    ];
    let mut raws = Vec::new();
    for (id, account, answer) in answers {
        raws.push(raw_provider(id, account, &boot, Some(answer)).await);
        match lookup_when_provided(&user, account).await {
            Err(DhtError::NoValidRecord { .. }) => {}
            other => panic!("{account}: the answer must not be taken: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_without_the_record_protocol_is_walked_for() {
    let (boot, _) = node(server(vec![])).await;
    let brand = LocalIdentity::generate(&mut OsRng);
    let signed = record(&brand, "walked.near", 1);
    let raw = raw_provider(&brand, "walked.near", &boot, None).await;
    // Its record is on the DHT (the bootstrap node holds it), as a node
    // that only speaks Kademlia would leave it.
    let (peer, kr) = (boot.peer_id(), kad_record(&signed));
    raw.run(move |s| s.behaviour_mut().kad.put_record_to(kr, [peer].into_iter(), Quorum::One)).await;
    let key = record_key(&brand.agent_id());
    let deadline = Instant::now() + PATIENCE;
    while boot.stored(key.clone()).await.unwrap().is_none() {
        assert!(Instant::now() < deadline, "the bootstrap node never stored the record");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (user, _) = node(client(boot.listen_addrs().await.unwrap())).await;
    let found = lookup_when_provided(&user, "walked.near").await.expect("the walked-for record");
    assert_eq!(found[0].encoded(), signed.encoded());
}

/// The ADD_PROVIDER of `account` a raw peer received, if `seen` is one.
fn add_provider_of(account: &str, seen: &Seen) -> Option<kad::ProviderRecord> {
    let key = account_provider_key(&AccountId::new(account).unwrap());
    match seen.kad() {
        Some(kad::Event::InboundRequest { request: kad::InboundRequest::AddProvider { record: Some(p) } })
            if p.key.as_ref() == key.as_slice() =>
        {
            Some(p.clone())
        }
        _ => None,
    }
}

/// On a slow network a brand's announcement walk can time out before it
/// reaches anyone; Kademlia then stores its provider entries nowhere, and
/// without a retry nobody finds the brand until the next republish (10 min).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announcement_whose_walk_timed_out_is_made_again_soon() {
    let mut peer = RawPeer::start(Mode::Server, StoreInserts::FilterBoth).await;
    let config = DhtConfig {
        query_timeout: Duration::from_secs(1),
        announce_retry: Duration::from_millis(500),
        ..server(vec![peer.addr.clone()])
    };
    assert!(config.query_timeout < config.request_timeout, "the walk times out waiting for the silent peer");
    let (brand, identity) = node(config).await;
    let me = brand.peer_id();
    peer.next("the brand's connection", |s| matches!(s, Seen::Connected(p) if *p == me).then_some(())).await;

    // The brand's only peer is silent while the brand publishes: the walks time out.
    let resume = peer.pause();
    let published = brand.publish(record(&identity, "retried.near", 1)).await;
    assert!(published.is_err(), "the record's walk timed out: {published:?}");
    drop(resume);
    // The peer answers again; the announcement is made again, and arrives.
    let announced = peer.next("the announcement made again", |s| add_provider_of("retried.near", s)).await;
    assert_eq!(announced.provider, me);
}
