//! Pay-per-query end to end through the devnet: several users pay several
//! brands per query (whole answers, metered streams, a NEP-141 channel,
//! automatic top-ups); the brands claim on shutdown, and the chain pays each
//! brand exactly the sum of the prices of the answers delivered, to the
//! yocto. A payer's unilateral close is claimed inside the challenge period.
//! Bad payments (underpaying, replayed, forged, other channel, after a close
//! started, unknown channel, a receipt that does not verify) are refused
//! with a clear error, nothing is served and nothing is persisted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agentwire_agent::brand::{self, RunningBrand};
use agentwire_agent::config::BrandConfig;
use agentwire_agent::devnet::{provision, Provisioned};
use agentwire_agent::dht::Dht;
use agentwire_agent::near::{ChannelClient, NearAccount};
use agentwire_agent::pay::store::{Store, StoreConfig, StoreError};
use agentwire_agent::pay::{query, PayError, Payer, PayerConfig};
use agentwire_agent::quic::{TransportError, TransportLimits};
use agentwire_agent::user::{Lookup, UserAgent};
use agentwire_devnet::{Devnet, DevnetConfig, ONE_NEAR};
use agentwire_protocol::account::AccountId;
use agentwire_protocol::identity::{Keypair, LocalIdentity};
use agentwire_protocol::payment::SignedVoucher;
use agentwire_protocol::record::{Currency, SignedRecord};
use agentwire_protocol::voucher::Voucher;
use agentwire_protocol::wire::ErrorCode;
use rand_core::OsRng;

const MILLI: u128 = ONE_NEAR / 1000;
const USDC_CENT: u128 = 10_000;

struct Net {
    devnet: Devnet,
    ready: Provisioned,
    boot: Dht,
    boot_addr: String,
    dir: PathBuf,
}

async fn net(name: &str, accounts: &[&str]) -> Net {
    let devnet = Devnet::start(DevnetConfig::default()).unwrap();
    let ready = provision(&devnet, accounts, 100 * ONE_NEAR, 1_000 * 1_000_000).await.unwrap();
    let (boot, boot_addr) = Dht::loopback_bootstrap().await.unwrap();
    let boot_addr = boot_addr.to_string();
    let dir = std::env::temp_dir().join(format!("agentwire-paid-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Net { devnet, ready, boot, boot_addr, dir }
}

impl Net {
    fn secret(&self, account: &str) -> String {
        self.ready.users.iter().find(|u| u.account_id.as_str() == account).unwrap().secret_key.to_string()
    }

    fn near(&self, account: &str) -> NearAccount {
        NearAccount::new(account, &self.secret(account)).unwrap()
    }

    fn chain(&self) -> ChannelClient {
        ChannelClient::new(&self.ready.rpc_url, self.ready.channels.as_str()).unwrap()
    }

    async fn brand(&self, name: &str, services: &str) -> RunningBrand {
        self.brand_with(name, services, TransportLimits::default()).await
    }

    async fn brand_with(&self, name: &str, services: &str, limits: TransportLimits) -> RunningBrand {
        let account = format!("{name}.devnet");
        std::fs::write(self.dir.join(format!("{name}.near-key")), self.secret(&account)).unwrap();
        let path = self.dir.join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                r#"identity = "{name}.key"
near_account = "{account}"
listen = "127.0.0.1:0"
p2p_listen = ["/ip4/127.0.0.1/udp/0/quic-v1"]
bootstrap = ["{boot}"]

[payments]
near_rpc = "{rpc}"
near_key_file = "{name}.near-key"
store = "{name}-vouchers"
watch_every_secs = 1

{services}
"#,
                boot = self.boot_addr,
                rpc = self.ready.rpc_url
            ),
        )
        .unwrap();
        brand::start(BrandConfig::load(&path).unwrap(), limits).await.unwrap()
    }

    async fn user(&self, name: &str, key: Keypair, config: PayerConfig) -> (UserAgent, Payer) {
        self.user_on(&self.dir.join(format!("{name}-payer")), name, key, config).await
    }

    /// A user agent whose payer keeps its state in `store_dir` (reopened after
    /// an earlier payer there was dropped: its writer thread lets go of the lock).
    async fn user_on(&self, store_dir: &Path, name: &str, key: Keypair, config: PayerConfig) -> (UserAgent, Payer) {
        let me = Arc::new(LocalIdentity::generate(&mut OsRng));
        let user = UserAgent::start(me, vec![self.boot_addr.parse().unwrap()], None, TransportLimits::default())
            .await
            .unwrap();
        let mut store = Store::open(store_dir, StoreConfig::default());
        for _ in 0..50 {
            if !matches!(store, Err(StoreError::Locked)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            store = Store::open(store_dir, StoreConfig::default());
        }
        let payer =
            Payer::near(self.chain(), self.near(&format!("{name}.devnet")), key, store.unwrap(), config).unwrap();
        (user, payer)
    }
}

async fn find(user: &UserAgent, account: &str) -> SignedRecord {
    let lookup = Lookup::Account(AccountId::new(account).unwrap());
    for _ in 0..50 {
        if let Ok(found) = user.find(&lookup).await {
            return found[0].clone();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{account} not found");
}

const ACME: &str = r#"
[[service]]
name = "chat"
price = "1000000000000000000000"
handler = { kind = "echo" }

[[service]]
name = "story"
price = "2000000000000000000000"
increment = { chunks = 3, price = "500000000000000000000" }
handler = { kind = "words" }

[[service]]
name = "hours"
handler = { kind = "static", text = "9-5" }
"#;

/// Text with two-, three- and four-byte characters.
const NON_ASCII: &str = "Olá, café ☕ 𝄞 ok";

/// An HTTP/1.1 upstream that answers every request with `text`, chunked one
/// byte per chunk (each flushed): its URL.
async fn byte_by_byte_upstream(text: &'static str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/bytes", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut seen = Vec::new();
                // The head, then whatever body came with it (the answer does not depend on it).
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
                if sock.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                for b in text.as_bytes() {
                    let chunk = [b"1\r\n".as_slice(), &[*b], b"\r\n"].concat();
                    if sock.write_all(&chunk).await.is_err() || sock.flush().await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                let _ = sock.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    url
}

const GLOBEX: &str = r#"
[[service]]
name = "chat"
price = "3000000000000000000000"
handler = { kind = "echo" }

[[service]]
name = "ask"
price = "10000"
currency = "usdc.devnet"
handler = { kind = "echo" }
"#;

fn small_deposits() -> PayerConfig {
    // Deposits of 4 queries, topped up by 4 when fewer than 2 are left: every user tops up.
    PayerConfig { deposit_queries: 4, top_up_below_queries: 2, top_up_queries: 4, ..PayerConfig::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_pay_brands_per_query_and_the_chain_pays_exactly_what_was_delivered() {
    let users = ["u1", "u2", "u3"];
    let n = net("e2e", &["acme", "globex", "u1", "u2", "u3"]).await;
    let acme = n.brand("acme", ACME).await;
    let globex = n.brand("globex", GLOBEX).await;
    let (acme_payee, globex_payee) = (acme.payee.clone().unwrap(), globex.payee.clone().unwrap());
    let before: HashMap<&str, u128> =
        [("acme.devnet", n.devnet.balance("acme.devnet")), ("globex.devnet", n.devnet.balance("globex.devnet"))].into();
    let token: near_api::AccountId = "usdc.devnet".parse().unwrap();
    let chain = n.chain();
    let usdc_before = chain.ft_balance_of(&token, &"globex.devnet".parse().unwrap()).await.unwrap();

    // What each brand delivered, per currency.
    let mut delivered: HashMap<(&str, bool), u128> = HashMap::new();
    let mut payers = Vec::new();
    for name in users {
        let (user, payer) = n.user(name, Keypair::generate(&mut OsRng), small_deposits()).await;
        for brand in ["acme.devnet", "globex.devnet"] {
            let record = find(&user, brand).await;
            let conn = user.session(&record).await.unwrap();
            for i in 0..6 {
                let q = format!("{name} asks {brand} #{i}");
                let out =
                    query(&conn, &record, "chat", q.clone().into_bytes(), Some(&payer), |_| async {}).await.unwrap();
                assert_eq!(out.body, q.as_bytes());
                assert!(out.charged_total().is_some(), "a paid answer carries a checked receipt");
                *delivered.entry((brand, false)).or_default() += out.paid;
            }
            let free = query(&conn, &record, "hours", Vec::new(), Some(&payer), |_| async {}).await;
            if brand == "acme.devnet" {
                let free = free.unwrap();
                assert_eq!((free.body.as_slice(), free.paid, free.receipt.is_none()), (&b"9-5"[..], 0, true));
                assert!(free.proof.is_none());
                // 8 words: the price buys chunks 0-2, two increments buy 3-5 and 6-7.
                let mut chunks = 0;
                let story = b"one two three four five six seven eight".to_vec();
                let out = query(&conn, &record, "story", story.clone(), Some(&payer), |_| {
                    chunks += 1;
                    async {}
                })
                .await
                .unwrap();
                assert_eq!((out.body, out.streamed, chunks), (story, true, 8));
                assert_eq!(out.paid, 2 * MILLI + 2 * MILLI / 2);
                *delivered.entry((brand, false)).or_default() += out.paid;
            } else {
                for i in 0..3 {
                    let q = format!("{name} in usdc #{i}").into_bytes();
                    let out = query(&conn, &record, "ask", q, Some(&payer), |_| async {}).await.unwrap();
                    assert_eq!(out.paid, USDC_CENT);
                    *delivered.entry((brand, true)).or_default() += out.paid;
                }
            }
        }
        // Every channel was topped up: its deposit grew beyond the first 4 queries' worth.
        let first_deposit = |s: &agentwire_agent::pay::ChannelStatus| match (s.payee.as_str(), s.currency.as_str()) {
            ("acme.devnet", _) => 4 * MILLI,
            (_, "NEAR") => 4 * 3 * MILLI,
            _ => 4 * USDC_CENT,
        };
        let status = payer.status().await.unwrap();
        assert_eq!(status.len(), 3, "{status:?}");
        for s in status {
            assert!(s.deposit > first_deposit(&s) && s.deposit >= s.signed, "{s:?}");
            assert!(!s.signed_unconfirmed, "a running payer knows what it signed: {s:?}");
        }
        payers.push((user, payer));
    }
    let per_user_acme = 6 * MILLI + 3 * MILLI;
    assert_eq!(delivered[&("acme.devnet", false)], 3 * per_user_acme);
    assert_eq!(delivered[&("globex.devnet", false)], 3 * 6 * 3 * MILLI);
    assert_eq!(delivered[&("globex.devnet", true)], 3 * 3 * USDC_CENT);

    // Shutdown claims everything durable, and says what it claimed.
    let reports = [acme.shutdown().await, globex.shutdown().await];
    assert!(reports.iter().all(|r| r.unclaimed.is_empty() && !r.claimed.is_empty()), "{reports:?}");
    let mut claimed: HashMap<(String, bool), u128> = HashMap::new();
    for (_, payer) in &payers {
        for s in payer.status().await.unwrap() {
            let view = chain.get_channel(s.channel_id).await.unwrap().unwrap();
            for (id, total) in reports.iter().flat_map(|r| &r.claimed) {
                assert!(*id != s.channel_id || *total == view.claimed, "shutdown reported {total} on {id}: {view:?}");
            }
            // What it charged, never the credit paid ahead beyond it (`claim` with `amount`).
            assert_eq!(view.claimed, s.charged, "the brand claimed exactly what it charged this payer: {s:?}");
            assert!(view.claimed <= s.signed, "never more than the payer signed: {s:?}");
            let token = !matches!(view.currency, agentwire_agent::near::Currency::Near);
            *claimed.entry((view.payee.to_string(), token)).or_default() += view.claimed;
        }
    }
    for ((brand, token), sum) in &delivered {
        assert_eq!(claimed[&(brand.to_string(), *token)], *sum, "{brand} token={token}");
    }
    let acme_after = n.devnet.balance("acme.devnet");
    assert_eq!(acme_after, before["acme.devnet"] + delivered[&("acme.devnet", false)] - acme_payee.gas_burnt());
    let globex_after = n.devnet.balance("globex.devnet");
    assert_eq!(globex_after, before["globex.devnet"] + delivered[&("globex.devnet", false)] - globex_payee.gas_burnt());
    let usdc_after = chain.ft_balance_of(&token, &"globex.devnet".parse().unwrap()).await.unwrap();
    assert_eq!(usdc_after, usdc_before + delivered[&("globex.devnet", true)]);

    drop(n.boot);
    let _ = std::fs::remove_dir_all(&n.dir);
}

/// A payer process that restarts knows only the last total it recorded and
/// its reservation (up to 64 queries ahead). It asks the brand for its last
/// voucher before paying again, so each query still costs exactly its price:
/// the brand claims what was delivered, never the reservation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_payer_pays_the_price_not_its_reservation() {
    let n = net("restart", &["acme", "u1"]).await;
    let acme = n.brand("acme", ACME).await;
    let seed = Keypair::generate(&mut OsRng).seed();
    let dir = n.dir.join("u1-payer");
    let mut delivered = 0;
    let mut channel = None;
    for run in 0..3 {
        // Each run is a payer process: 2 queries, then it goes away.
        let (user, payer) = n.user_on(&dir, "u1", Keypair::from_seed(&seed), PayerConfig::default()).await;
        if run > 0 {
            let s = payer.status().await.unwrap();
            // The store knows what it signed (paid ahead included), not yet what the brand charged.
            assert!(s.len() == 1 && s[0].signed_unconfirmed && s[0].signed >= delivered, "{s:?}");
        }
        let record = find(&user, "acme.devnet").await;
        let conn = user.session(&record).await.unwrap();
        for _ in 0..2 {
            let out = query(&conn, &record, "chat", b"hi".to_vec(), Some(&payer), |_| async {}).await.unwrap();
            assert_eq!(out.paid, MILLI);
            delivered += out.paid;
            assert_eq!(out.charged_total().unwrap().1, delivered, "one channel, exactly what was delivered");
        }
        let s = payer.status().await.unwrap();
        // Charged exactly what was delivered (the receipts say so); after a restart what was signed
        // stays a floor (`signed_unconfirmed`) until the brand states its highest voucher.
        assert!(s.len() == 1 && s[0].charged == delivered, "{s:?}");
        assert_eq!(s[0].signed_unconfirmed, run > 0, "{s:?}");
        assert!(s[0].signed >= delivered && s[0].signed - delivered <= 8 * MILLI, "{s:?}");
        assert_eq!(*channel.get_or_insert(s[0].channel_id), s[0].channel_id, "the same channel across restarts");
    }
    let report = acme.shutdown().await;
    let id = channel.unwrap();
    assert_eq!(report.claimed, vec![(id, delivered)], "{report:?}");
    assert_eq!(n.chain().get_channel(id).await.unwrap().unwrap().claimed, 6 * MILLI);
    let _ = std::fs::remove_dir_all(&n.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payers_unilateral_close_is_claimed_inside_the_challenge_period() {
    let n = net("close", &["acme", "u1"]).await;
    let acme = n.brand("acme", ACME).await;
    let (user, payer) = n.user("u1", Keypair::generate(&mut OsRng), PayerConfig::default()).await;
    let record = find(&user, "acme.devnet").await;
    let conn = user.session(&record).await.unwrap();
    for _ in 0..3 {
        query(&conn, &record, "chat", b"hi".to_vec(), Some(&payer), |_| async {}).await.unwrap();
    }
    let id = payer.status().await.unwrap()[0].channel_id;
    let chain = n.chain();
    assert_eq!(chain.get_channel(id).await.unwrap().unwrap().claimed, 0, "claims wait for the policy");
    payer.start_close("acme.devnet", &Currency::Near).await.unwrap();
    // The brand's watcher sees the close and claims at once, with no time passing on chain.
    let mut claimed = 0;
    for _ in 0..100 {
        claimed = chain.get_channel(id).await.unwrap().unwrap().claimed;
        if claimed == 3 * MILLI {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(claimed, 3 * MILLI, "claimed inside the challenge period");
    n.devnet.fast_forward(3_601).unwrap();
    let payer_before = n.devnet.balance("u1.devnet");
    let view = chain.get_channel(id).await.unwrap().unwrap();
    let o = chain.finalize(&n.near("u1.devnet"), id).await.unwrap();
    assert_eq!(n.devnet.balance("u1.devnet"), payer_before + view.deposit - 3 * MILLI - o.tokens_burnt);
    acme.shutdown().await;
    let _ = std::fs::remove_dir_all(&n.dir);
}

fn sign(key: &Keypair, channel_id: u64, epoch: u64, cumulative: u128) -> SignedVoucher {
    let v = Voucher { contract: AccountId::new("channels.devnet").unwrap(), channel_id, epoch, cumulative };
    SignedVoucher::sign(v, key)
}

fn code(r: Result<agentwire_agent::quic::FirstAnswer, TransportError>) -> String {
    match r {
        Ok(agentwire_agent::quic::FirstAnswer::PaymentRequired(p)) => {
            format!("PaymentRequired(last={:?})", p.last_voucher.map(|v| v.voucher.cumulative))
        }
        Ok(_) => "answered".into(),
        Err(e) if e.remote().is_some() => format!("{:?}", e.code()),
        Err(e) => format!("other: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_payments_get_a_clear_error_no_service_and_nothing_persisted() {
    let n = net("bad", &["acme", "globex", "u1", "u2"]).await;
    let acme = n.brand("acme", ACME).await;
    let globex = n.brand("globex", GLOBEX).await;
    let seed = [7u8; 32];
    // Paying exactly (no paying ahead), so each total below is the one expected.
    let exact = PayerConfig { pay_ahead_queries: 0, ..PayerConfig::default() };
    let (user, payer) = n.user("u1", Keypair::from_seed(&seed), exact).await;
    let key = Keypair::from_seed(&seed);
    let record = find(&user, "acme.devnet").await;
    let conn = user.session(&record).await.unwrap();
    // One honest query opens the channel (deposit 100 queries).
    let out = query(&conn, &record, "chat", b"hi".to_vec(), Some(&payer), |_| async {}).await.unwrap();
    let s = payer.status().await.unwrap()[0].clone();
    let (id, epoch) = (s.channel_id, s.epoch);
    let payee = acme.payee.clone().unwrap();
    let served = || acme.server.stats().requests.load(std::sync::atomic::Ordering::Relaxed);
    let durable = || async { payee.channels().await.iter().find(|c| c.0 == id).map(|c| c.1) };
    let (served0, durable0) = (served(), durable().await);
    assert_eq!(durable0, Some(MILLI));

    let call = |v: Option<SignedVoucher>| conn.call("chat", b"x".to_vec(), v);
    // Underpaying: the total does not cover this request.
    assert_eq!(
        code(call(Some(sign(&key, id, epoch, MILLI + MILLI / 2))).await),
        format!("PaymentRequired(last=Some({MILLI}))")
    );
    // Replayed: the voucher already used buys nothing.
    let used = sign(&key, id, epoch, MILLI);
    assert_eq!(code(call(Some(used)).await), format!("PaymentRequired(last=Some({MILLI}))"));
    // Forged: signed by another key.
    let forger = Keypair::generate(&mut OsRng);
    assert_eq!(code(call(Some(sign(&forger, id, epoch, 2 * MILLI))).await), "InvalidVoucher");
    // Wrong epoch, wrong contract.
    assert_eq!(code(call(Some(sign(&key, id, epoch + 1, 2 * MILLI))).await), "InvalidVoucher");
    let other =
        Voucher { contract: AccountId::new("other.devnet").unwrap(), channel_id: id, epoch, cumulative: 2 * MILLI };
    assert_eq!(code(call(Some(SignedVoucher::sign(other, &key))).await), "InvalidVoucher");
    // A channel that does not exist, and one that pays another brand.
    assert_eq!(code(call(Some(sign(&key, 999_999, 0, 2 * MILLI))).await), "UnknownChannel");
    let g = find(&user, "globex.devnet").await;
    let gconn = user.session(&g).await.unwrap();
    query(&gconn, &g, "chat", b"hi".to_vec(), Some(&payer), |_| async {}).await.unwrap();
    let gid = payer.status().await.unwrap().iter().find(|c| c.payee == "globex.devnet").unwrap().channel_id;
    assert_eq!(code(call(Some(sign(&key, gid, 0, 100 * MILLI))).await), "UnknownChannel");
    // Another payer's channel with acme: the voucher is not signed by its payer key.
    let (_, payer2) = n.user("u2", Keypair::generate(&mut OsRng), PayerConfig::default()).await;
    let _ = payer2.pay("acme.devnet", &Currency::Near, 0, MILLI).await.unwrap();
    let id2 = payer2.status().await.unwrap()[0].channel_id;
    assert_eq!(code(call(Some(sign(&key, id2, 0, 2 * MILLI))).await), "InvalidVoucher");
    // Above the deposit.
    assert_eq!(code(call(Some(sign(&key, id, epoch, 1_000 * MILLI))).await), "ExceedsDeposit");
    // No voucher at all on a priced service.
    assert_eq!(code(call(None).await), "PaymentRequired(last=None)");
    assert_eq!((served(), durable().await), (served0, durable0), "nothing served, nothing persisted");

    // A receipt that does not verify is refused by the payer: a tampered entry
    // of a batch, and a total above what the payer signed.
    let who = record.record().identity;
    let mut bad = out.proof.clone().expect("receipts come in batches");
    bad.verify(&who).expect("the untouched receipt verifies");
    bad.entry.cumulative += 1;
    assert!(bad.verify(&who).is_err(), "a tampered receipt does not verify");
    let r = payer.check_total("acme.devnet", &Currency::Near, 2 * MILLI).await;
    assert!(matches!(r, Err(PayError::Receipt(_))), "{r:?}");

    // After the payer starts a close, vouchers are refused once the brand has seen it.
    payer.start_close("acme.devnet", &Currency::Near).await.unwrap();
    let mut last = String::new();
    for _ in 0..50 {
        last = code(call(Some(sign(&key, id, epoch, 5 * MILLI))).await);
        if last == "ChannelClosing" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last, "ChannelClosing");
    // The honest payer does not pay on a closing channel: it opens a new one.
    let again = query(&conn, &record, "chat", b"again".to_vec(), Some(&payer), |_| async {}).await.unwrap();
    assert_eq!(again.paid, MILLI);
    assert_ne!(payer.status().await.unwrap().iter().find(|c| c.payee == "acme.devnet").unwrap().channel_id, id);
    acme.shutdown().await;
    globex.shutdown().await;
    let _ = std::fs::remove_dir_all(&n.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metered_stream_stops_when_the_next_increment_is_not_paid() {
    use agentwire_agent::quic::{FirstAnswer, StreamEvent};
    let n = net("metered", &["acme", "u1"]).await;
    let limits = TransportLimits { payment_timeout: Duration::from_millis(800), ..TransportLimits::default() };
    let acme = n.brand_with("acme", ACME, limits).await;
    let (user, payer) = n.user("u1", Keypair::generate(&mut OsRng), PayerConfig::default()).await;
    let record = find(&user, "acme.devnet").await;
    let conn = user.session(&record).await.unwrap();
    let story = b"one two three four five six seven".to_vec();

    // Not paid: three chunks, the request for more, then an Error and nothing else.
    let v = payer.pay("acme.devnet", &Currency::Near, 0, 2 * MILLI).await.unwrap().voucher;
    let (first, _) = conn.call_hashed("story", story.clone(), Some(v)).await.unwrap();
    let FirstAnswer::Stream(mut s) = first else { panic!("a stream") };
    let mut chunks = 0;
    let end = loop {
        match s.next_event().await {
            Ok(StreamEvent::Chunk(_)) => chunks += 1,
            Ok(StreamEvent::PaymentRequired(p)) => assert_eq!((p.price, chunks), (MILLI / 2, 3)),
            Ok(StreamEvent::End) => panic!("the stream must not end as if complete"),
            Err(e) => break e,
        }
    };
    assert_eq!(chunks, 3, "no chunk beyond what was paid");
    assert_eq!(end.remote().map(|r| r.0), Some(ErrorCode::PaymentRequired), "{end:?}");

    // Paid with a forged voucher: the stream stops with the voucher's error.
    let v = payer.pay("acme.devnet", &Currency::Near, 0, 2 * MILLI).await.unwrap().voucher;
    let (first, _) = conn.call_hashed("story", story.clone(), Some(v)).await.unwrap();
    let FirstAnswer::Stream(mut s) = first else { panic!("a stream") };
    let forger = Keypair::generate(&mut OsRng);
    let end = loop {
        match s.next_event().await {
            Ok(StreamEvent::Chunk(_)) => {}
            Ok(StreamEvent::PaymentRequired(p)) => {
                let s2 = payer.status().await.unwrap()[0].clone();
                s.pay(sign(&forger, s2.channel_id, s2.epoch, s2.signed + p.price)).await.unwrap();
            }
            Ok(StreamEvent::End) => panic!("the stream must not end as if complete"),
            Err(e) => break e,
        }
    };
    assert_eq!(end.remote().map(|r| r.0), Some(ErrorCode::InvalidVoucher), "{end:?}");

    // Paid honestly, through the query flow: the whole story and a receipt.
    let out = query(&conn, &record, "story", story.clone(), Some(&payer), |_| async {}).await.unwrap();
    assert_eq!((out.body, out.paid), (story, 2 * MILLI + 2 * MILLI / 2));
    acme.shutdown().await;
    let _ = std::fs::remove_dir_all(&n.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_answers_json_and_server_sent_events_and_explains_errors() {
    use agentwire_agent::gateway::{self, Gateway};
    let n = net("gateway", &["acme", "u1"]).await;
    // A free service whose HTTP upstream streams its text one byte per chunk.
    let bytes = byte_by_byte_upstream(NON_ASCII).await;
    let services = format!(
        "{ACME}\n[[service]]\nname = \"bytes\"\nhandler = {{ kind = \"http\", url = \"{bytes}\", stream = true }}\n"
    );
    let acme = n.brand("acme", &services).await;
    let (user, payer) = n.user("u1", Keypair::generate(&mut OsRng), PayerConfig::default()).await;
    find(&user, "acme.devnet").await;
    let gw = Arc::new(Gateway::new(user, Some(payer), Some("s3cret".into())));
    let addr = gateway::start(gw.clone(), "127.0.0.1:0".parse().unwrap(), false).await.unwrap();
    assert!(gateway::start(gw.clone(), "0.0.0.0:0".parse().unwrap(), false).await.is_err(), "loopback only");
    let http = reqwest::Client::new();
    let url = |p: &str| format!("http://{addr}{p}");
    let post = |p: &str, body: &str| http.post(url(p)).bearer_auth("s3cret").body(body.to_owned());

    let r = http.post(url("/v1/query/acme.devnet/chat")).body("hi").send().await.unwrap();
    assert_eq!(r.status(), 401, "the bearer token is required");

    let v: serde_json::Value = post("/v1/query/acme.devnet/chat", "hello").send().await.unwrap().json().await.unwrap();
    assert_eq!(v["answer"], "hello");
    assert_eq!(v["paid"], MILLI.to_string());
    assert_eq!(v["receipt"]["cumulative"], MILLI.to_string());

    let sse = post("/v1/query/acme.devnet/story", "one two three four five")
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(sse.headers()["content-type"], "text/event-stream");
    let text = sse.text().await.unwrap();
    let chunks: Vec<&str> = text.lines().filter(|l| l.starts_with("event: chunk")).collect();
    assert_eq!(chunks.len(), 5, "{text}");
    assert!(text.contains("event: end"), "{text}");
    assert!(text.contains(&format!("\"paid\":\"{}\"", 2 * MILLI + MILLI / 2)), "{text}");

    // Issue 14: text split inside UTF-8 sequences came out as U+FFFD. Every
    // character arrives whole, whatever the upstream's chunking.
    let sse = post("/v1/query/acme.devnet/bytes", "x").header("Accept", "text/event-stream").send().await.unwrap();
    let text = sse.text().await.unwrap();
    let mut joined = String::new();
    for line in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(chunk) = v["data"].as_str() {
            joined.push_str(chunk);
        }
    }
    assert_eq!(joined, NON_ASCII, "{text}");
    assert!(!text.contains('\u{fffd}'), "{text}");

    // Issue 14: a known path with the wrong method is 405 with Allow, and the
    // action is written for a client, not a spec section.
    let r = http.get(url("/v1/query/acme.devnet/chat")).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let v: serde_json::Value = r.json().await.unwrap();
    let action = v["error"]["action"].as_str().unwrap();
    assert!(action.contains("POST") && !action.contains('§'), "{v}");

    let r = post("/v1/query/acme.devnet/nope", "x").send().await.unwrap();
    assert_eq!(r.status(), 404, "no such service at the brand");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "UnknownService");
    assert_eq!(post("/v1/query/bad..name/chat", "x").send().await.unwrap().status(), 400);
    assert_eq!(post("/v1/query/nobody.devnet/chat", "x").send().await.unwrap().status(), 404);
    let big = "x".repeat(gateway::MAX_BODY + 1);
    assert_eq!(post("/v1/query/acme.devnet/chat", &big).send().await.unwrap().status(), 413);

    let v: serde_json::Value =
        http.get(url("/v1/channels")).bearer_auth("s3cret").send().await.unwrap().json().await.unwrap();
    assert_eq!(v["channels"][0]["payee"], "acme.devnet");
    // Charged what was delivered; signed ahead of it by at most the default 8 queries' worth.
    assert_eq!(v["channels"][0]["charged"], (MILLI + 2 * MILLI + MILLI / 2).to_string());
    let signed: u128 = v["channels"][0]["signed"].as_str().unwrap().parse().unwrap();
    assert!((MILLI + 2 * MILLI + MILLI / 2..=MILLI + 2 * MILLI + MILLI / 2 + 8 * MILLI).contains(&signed), "{v}");
    acme.shutdown().await;
    let _ = std::fs::remove_dir_all(&n.dir);
}
