//! Pay only for what was delivered (spec §13.10), to the yoctoNEAR on chain:
//! an answer whose upstream is down is not charged and the brand says so
//! with a signed statement; a ceiling-priced answer is charged its actual
//! amount; the credit left over pays the next queries; the brand's claim
//! takes exactly what it charged.

use std::collections::HashMap;
use std::sync::Arc;

use agentwire_agent::devnet::provision;
use agentwire_agent::near::{ChannelClient, NearAccount};
use agentwire_agent::pay::store::{Store, StoreConfig};
use agentwire_agent::pay::{query, Payee, PayeeConfig, Payer, PayerConfig, Price};
use agentwire_agent::quic::{
    connect, Answer, AnswerFuture, IncomingRequest, Meter, Server, Service, Target, TransportLimits,
};
use agentwire_agent::services::Router;
use agentwire_devnet::{Devnet, DevnetConfig, ONE_NEAR};
use agentwire_protocol::account::AccountId;
use agentwire_protocol::identity::{Keypair, LocalIdentity};
use agentwire_protocol::money::Currency;
use agentwire_protocol::record::{AgentRecord, Service as Offered};
use agentwire_protocol::wire::ErrorCode;
use rand_core::OsRng;

const PRICE: u128 = ONE_NEAR / 1000;
/// A ceiling-priced service's most per query; it charges `UNIT` per byte answered.
const CEILING: u128 = 100 * UNIT;
const UNIT: u128 = ONE_NEAR / 100_000;

/// `chat` echoes; `down` is a brand whose upstream is down; `metered` charges per byte.
struct Brand;

impl Service for Brand {
    fn handle(&self, r: IncomingRequest) -> AnswerFuture {
        Box::pin(async move {
            match r.service.as_str() {
                "down" => Answer::Error(ErrorCode::UpstreamFailed, "upstream answered 502".into()),
                "metered" => {
                    let actual = r.body.len() as u128 * UNIT;
                    Answer::Charged(r.body, actual)
                }
                _ => Answer::Response(r.body),
            }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_answers_cost_nothing_and_ceilings_charge_the_actual_amount() {
    let devnet = Devnet::start(DevnetConfig::default()).unwrap();
    let ready = provision(&devnet, &["brand", "alice"], 100 * ONE_NEAR, 0).await.unwrap();
    let secret = |who: &str| ready.users.iter().find(|u| u.account_id.as_str() == who).unwrap().secret_key.to_string();
    let chain = ChannelClient::new(&ready.rpc_url, ready.channels.as_str()).unwrap();
    let dir = std::env::temp_dir().join(format!("agentwire-pay-on-delivery-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);

    let price = |p| Price::per_query(p, Currency::Near, None);
    let prices: HashMap<String, Price> =
        [("chat".into(), price(PRICE)), ("down".into(), price(PRICE)), ("metered".into(), price(CEILING))].into();
    let payee = Arc::new(
        Payee::near(
            chain.clone(),
            NearAccount::new("brand.devnet", &secret("brand.devnet")).unwrap(),
            prices,
            Store::open(&dir.join("payee"), StoreConfig::default()).unwrap(),
            PayeeConfig::default(),
        )
        .unwrap(),
    );
    let brand = Arc::new(LocalIdentity::generate(&mut OsRng));
    let router =
        Router::new().route("chat", Arc::new(Brand)).route("down", Arc::new(Brand)).route("metered", Arc::new(Brand));
    let caps = vec!["pay/1".to_string(), "stream/1".to_string()];
    let meter: Arc<dyn Meter> = payee.clone();
    let limits = TransportLimits::default();
    let server = Server::bind_metered(
        "127.0.0.1:0".parse().unwrap(),
        brand.clone(),
        caps.clone(),
        Arc::new(router),
        Some(meter),
        limits,
    )
    .unwrap();
    let addr = server.local_addr().unwrap();
    let offer = |name: &str, price| Offered::per_query(name, "", price, Currency::Near);
    let record = AgentRecord {
        identity: brand.identity.public(),
        near_account: AccountId::new("brand.devnet").unwrap(),
        noise_static: brand.noise.public(),
        quic_addrs: vec![addr],
        p2p_addrs: vec![],
        services: vec![offer("chat", PRICE), offer("down", PRICE), offer("metered", CEILING)],
        channel_contract: AccountId::new("channels.devnet").unwrap(),
        min_deposit: 0,
        seq: 1,
        expires_at: u64::MAX / 2,
    }
    .sign(&brand.identity)
    .unwrap();
    let target = Target { addr, identity: Some(brand.identity.public()), noise_static: Some(brand.noise.public()) };
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let conn = connect(&ep, Arc::new(LocalIdentity::generate(&mut OsRng)), &target, &caps, limits).await.unwrap();
    let payer = Payer::near(
        chain.clone(),
        NearAccount::new("alice.devnet", &secret("alice.devnet")).unwrap(),
        Keypair::generate(&mut OsRng),
        Store::open(&dir.join("payer"), StoreConfig::default()).unwrap(),
        PayerConfig::default(),
    )
    .unwrap();
    let ask = |service: &'static str, body: &'static [u8]| {
        let (conn, record, payer) = (&conn, &record, &payer);
        async move { query(conn, record, service, body.to_vec(), Some(payer), |_| async {}).await }
    };

    // A paid answer.
    assert_eq!(ask("chat", b"hello").await.unwrap().paid, PRICE);
    // The upstream is down: an error, with the brand's signed statement that it did not charge.
    let err = ask("down", b"hello").await.unwrap_err();
    assert!(err.to_string().contains("not charged"), "{err}");
    let status = payer.load("brand.devnet", &Currency::Near).await.unwrap();
    assert_eq!(status.charged, PRICE, "the statement says the channel's charged total is still one price");
    // A ceiling-priced answer: admitted at its ceiling, charged per byte.
    let out = ask("metered", b"twelve bytes").await.unwrap();
    let actual = 12 * UNIT;
    assert_eq!(out.paid, actual, "charged its actual amount");
    assert_eq!(out.charged_total().unwrap().1, PRICE + actual, "the receipt states the charged total");
    // The credit left over (the failed query, the rest of the ceiling) pays the next queries.
    for _ in 0..3 {
        assert_eq!(ask("chat", b"again").await.unwrap().paid, PRICE);
    }
    let charged = 4 * PRICE + actual;

    // The brand claims what it charged, and nothing for the answer that failed.
    let claims = payee.claim_due(true).await;
    let id = payer.load("brand.devnet", &Currency::Near).await.unwrap().channel_id;
    assert_eq!(claims, vec![(id, charged)]);
    let view = chain.get_channel(id).await.unwrap().unwrap();
    assert_eq!(view.claimed, charged, "the chain paid the brand exactly the answers delivered, to the yocto");
    server.shutdown().await;
    drop(devnet);
    let _ = std::fs::remove_dir_all(&dir);
}
