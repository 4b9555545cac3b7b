//! A brand fronting a model, used the way agents use models today: the
//! official `openai` Python package, pointed at `agentwire gateway`, gets a
//! completion and a streamed completion (text delta by delta) from a brand
//! whose `openai` handler fronts a local OpenAI-compatible server, priced per
//! token. Every bad request gets an OpenAI-shaped error with the right status
//! and costs nothing: the chain pays the brand exactly the tokens used × the
//! unit prices, to the yocto. Spending limits refuse before anything is
//! signed. `examples/brand.toml`, with every commented service uncommented,
//! parses and serves.
//!
//! The Python packages are installed (pinned, tests/python/requirements.txt)
//! by scripts/test.sh; without Python the Python parts say SKIPPED, unless
//! AGENTWIRE_REQUIRE_PYTHON=1 (set by scripts/test.sh once installed).

#[path = "support/fake_openai.rs"]
mod fake_openai;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agentwire_agent::brand::{self, RunningBrand};
use agentwire_agent::config::BrandConfig;
use agentwire_agent::devnet::{provision, Provisioned};
use agentwire_agent::dht::Dht;
use agentwire_agent::gateway::{self, Gateway};
use agentwire_agent::near::{ChannelClient, NearAccount};
use agentwire_agent::pay::store::{Store, StoreConfig};
use agentwire_agent::pay::{query, Limits, Payer, PayerConfig, Spending};
use agentwire_agent::quic::TransportLimits;
use agentwire_agent::user::{Lookup, UserAgent};
use agentwire_devnet::{Devnet, DevnetConfig, ONE_NEAR};
use agentwire_protocol::account::AccountId;
use agentwire_protocol::chat::{ChatAnswer, ChatRequest};
use agentwire_protocol::identity::{Keypair, LocalIdentity};
use agentwire_protocol::money::Currency;
use agentwire_protocol::record::SignedRecord;
use fake_openai::{deltas, FakeOpenAi, REPLY};
use rand_core::OsRng;
use serde_json::Value;

/// Unit prices (yoctoNEAR) and the cap of the model service.
const INPUT: u128 = 7_000_000_000_000_000_000;
const OUTPUT: u128 = 13_000_000_000_000_000_000;
const CAP: u32 = 64;
const CEILING: u128 = ONE_NEAR / 10;

/// The Python with the pinned `openai` and `mcp` packages, or why not.
pub fn python() -> Result<(PathBuf, Option<String>), String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("python");
    let exe = std::env::var_os("AGENTWIRE_PYTHON").map(PathBuf::from).unwrap_or_else(|| root.join(".venv/bin/python"));
    let path = std::env::var("AGENTWIRE_PYTHONPATH").ok();
    let mut probe = std::process::Command::new(&exe);
    probe.args(["-c", "import openai, mcp"]);
    if let Some(p) = &path {
        probe.env("PYTHONPATH", p);
    }
    match probe.output() {
        Ok(o) if o.status.success() => Ok((exe, path)),
        Ok(o) => Err(format!("{} cannot import openai and mcp: {}", exe.display(), String::from_utf8_lossy(&o.stderr))),
        Err(e) => Err(format!("{}: {e}", exe.display())),
    }
}

/// Python, or SKIPPED (a failure when scripts/test.sh installed it).
fn python_or_skip(test: &str) -> Option<(PathBuf, Option<String>)> {
    match python() {
        Ok(p) => Some(p),
        Err(why) if std::env::var_os("AGENTWIRE_REQUIRE_PYTHON").is_some() => {
            panic!("{test}: Python with the pinned packages is required here: {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED {test}: {why} (run scripts/test.sh, which installs tests/python/requirements.txt)");
            None
        }
    }
}

struct Net {
    _devnet: Devnet,
    ready: Provisioned,
    _boot: Dht,
    boot_addr: String,
    dir: PathBuf,
}

async fn net(name: &str, accounts: &[&str]) -> Net {
    let devnet = Devnet::start(DevnetConfig::default()).unwrap();
    let ready = provision(&devnet, accounts, 100 * ONE_NEAR, 0).await.unwrap();
    let (boot, boot_addr) = Dht::loopback_bootstrap().await.unwrap();
    let dir = std::env::temp_dir().join(format!("agentwire-model-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Net { _devnet: devnet, ready, _boot: boot, boot_addr: boot_addr.to_string(), dir }
}

impl Net {
    fn secret(&self, account: &str) -> String {
        self.ready.users.iter().find(|u| u.account_id.as_str() == account).unwrap().secret_key.to_string()
    }

    fn chain(&self) -> ChannelClient {
        ChannelClient::new(&self.ready.rpc_url, self.ready.channels.as_str()).unwrap()
    }

    async fn brand(&self, name: &str, services: &str) -> RunningBrand {
        std::fs::write(self.dir.join(format!("{name}.near-key")), self.secret(&format!("{name}.devnet"))).unwrap();
        let path = self.dir.join(format!("{name}.toml"));
        let config = format!(
            "identity = \"{name}.key\"\nnear_account = \"{name}.devnet\"\nlisten = \"127.0.0.1:0\"\n\
             p2p_listen = [\"/ip4/127.0.0.1/udp/0/quic-v1\"]\nbootstrap = [\"{}\"]\n\n[payments]\nnear_rpc = \"{}\"\n\
             near_key_file = \"{name}.near-key\"\nstore = \"{name}-vouchers\"\n\n{services}\n",
            self.boot_addr, self.ready.rpc_url
        );
        std::fs::write(&path, config).unwrap();
        brand::start(BrandConfig::load(&path).unwrap(), TransportLimits::default()).await.unwrap()
    }

    async fn user(&self, name: &str, spending: Spending) -> (UserAgent, Payer) {
        let me = Arc::new(LocalIdentity::generate(&mut OsRng));
        let user = UserAgent::start(me, vec![self.boot_addr.parse().unwrap()], None, TransportLimits::default())
            .await
            .unwrap();
        let store = Store::open(&self.dir.join(format!("{name}-payer")), StoreConfig::default()).unwrap();
        let near = NearAccount::new(&format!("{name}.devnet"), &self.secret(&format!("{name}.devnet"))).unwrap();
        let config = PayerConfig { deposit_queries: 20, ..PayerConfig::default() };
        let payer = Payer::near(self.chain(), near, Keypair::generate(&mut OsRng), store, config).unwrap();
        (user, payer.with_spending(spending))
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

fn model_service(url: &str) -> String {
    format!(
        "[[service]]\nname = \"assistant\"\ndescription = \"A model, per token\"\nprice = \"{CEILING}\"\n\
         per_token = {{ input = \"{INPUT}\", output = \"{OUTPUT}\" }}\n\
         handler = {{ kind = \"openai\", url = \"{url}\", models = [\"fake-1\"], max_tokens = {CAP}, api_key = \"sk-brand\" }}\n"
    )
}

fn charge(usage: &Value) -> u128 {
    let n = |k: &str| u128::from(usage[k].as_u64().unwrap());
    n("prompt_tokens") * INPUT + n("completion_tokens") * OUTPUT
}

async fn run_python(exe: &Path, path: &Option<String>, args: &[&str]) -> Value {
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(args);
    if let Some(p) = path {
        cmd.env("PYTHONPATH", p);
    }
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output()).await.expect("python timed out").unwrap();
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_package_gets_completions_through_the_gateway_and_the_chain_pays_tokens_times_prices() {
    let Some((py, pypath)) = python_or_skip("openai through the gateway") else { return };
    let upstream = FakeOpenAi::start().await;
    let n = net("openai", &["model", "u1"]).await;
    let brand = n.brand("model", &model_service(&upstream.base_url)).await;
    let (user, payer) = n.user("u1", Spending::unlimited()).await;
    find(&user, "model.devnet").await;
    let gw = Arc::new(Gateway::new(user, Some(payer), None).discover(vec!["assistant".into()]));
    let addr = gateway::start(gw.clone(), "127.0.0.1:0".parse().unwrap(), false).await.unwrap();
    let base = format!("http://{addr}/v1");

    let out = run_python(
        &py,
        &pypath,
        &[
            &format!("{}/python/openai_gateway.py", env!("CARGO_MANIFEST_DIR")),
            &base,
            "model.devnet/assistant",
            &CAP.to_string(),
        ],
    )
    .await;

    // The completion: the whole reply, OpenAI's usage, the payment beside it.
    let c = &out["completion"];
    assert_eq!(c["text"], REPLY, "{out}");
    assert_eq!(c["finish_reason"], "stop");
    let mut delivered = charge(&c["usage"]);
    assert_eq!(c["agentwire"]["paid"], delivered.to_string(), "the answer cost its tokens × the unit prices: {c}");
    assert!(c["agentwire"]["receipt"]["cumulative"].is_string());
    // The stream: delta by delta, as the upstream produced them (multi-byte characters whole).
    let s = &out["stream"];
    let got: Vec<String> = s["deltas"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_owned()).collect();
    assert_eq!(got, deltas(CAP as usize), "{s}");
    assert_eq!(s["finish_reason"], "stop");
    let streamed = charge(&s["usage"]);
    assert_eq!(s["agentwire"]["paid"], streamed.to_string(), "{s}");
    delivered += streamed;
    // The brand asked the upstream with its own key, its model, the cap, a stream with usage.
    let chats = upstream.chats();
    assert!(chats.iter().all(|c| c.authorization.as_deref() == Some("Bearer sk-brand")));
    assert!(chats.iter().all(|c| c.body["model"] == "fake-1" && c.body["stream_options"]["include_usage"] == true));
    assert!(chats.iter().all(|c| c.body["max_tokens"].as_u64().unwrap() <= u64::from(CAP)));

    // Every bad request: an OpenAI-shaped error with the right status.
    let bad = &out["bad"];
    let expect = [
        ("no_messages", Some(400), "messages"),
        ("unknown_model", Some(404), "model"),
        ("unknown_brand", Some(404), "model"),
        ("max_tokens_above_cap", Some(400), "max_tokens"),
        ("slash_too_many", Some(400), "model"),
        ("not_json", Some(400), ""),
        ("upstream_garbage", Some(502), ""),
        ("upstream_cut", Some(502), ""),
        ("upstream_cut_streamed", None, ""),
    ];
    for (case, status, param) in expect {
        let b = &bad[case];
        assert_eq!(b["status"].as_u64().map(|s| s as u16), status, "{case}: {b}");
        let e = if b["error"]["error"].is_object() { &b["error"]["error"] } else { &b["error"] };
        assert!(
            e["message"].is_string() && e["type"].is_string() && e["code"].is_string(),
            "{case}: OpenAI's shape: {b}"
        );
        if !param.is_empty() {
            assert_eq!(e["param"], param, "{case}: {b}");
        }
    }
    assert_eq!(bad["upstream_garbage"]["error"]["code"], "UpstreamFailed", "{bad}");
    // The models list names the service with its per-token prices.
    let m = out["models"].as_array().unwrap().iter().find(|m| m["id"] == "model.devnet/assistant").cloned();
    let m = m.unwrap_or_else(|| panic!("{}", out["models"]));
    assert_eq!(m["agentwire"]["pricing"]["kind"], "per_token");
    assert_eq!(m["agentwire"]["pricing"]["output"], OUTPUT.to_string());

    // The brand charged exactly the tokens used × the unit prices (the rest of
    // what was signed is the payer's credit) ...
    let money = brand.payee.as_ref().unwrap().money().channels().await.unwrap();
    assert_eq!(money.len(), 1);
    assert_eq!(money[0].charged, delivered, "the brand's charged total: {money:?}");
    // ... and claims that on shutdown (`claim` with `amount`, contract §4.9).
    let report = brand.shutdown().await;
    let channels = n.chain().channels_of(&"u1.devnet".parse().unwrap()).await.unwrap();
    assert_eq!(channels.len(), 1, "{channels:?}");
    assert!(report.unclaimed.is_empty(), "every claim went through (needs the contract's claim amount): {report:?}");
    assert_eq!(
        channels[0].claimed, delivered,
        "the chain paid the brand exactly the tokens used × the unit prices, and nothing for the failed requests"
    );
    let _ = std::fs::remove_dir_all(&n.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spending_limits_refuse_before_anything_is_signed() {
    let upstream = FakeOpenAi::start().await;
    let n = net("limits", &["model", "u2", "u3"]).await;
    let brand = n.brand("model", &model_service(&upstream.base_url)).await;
    let ask = ChatRequest::ask("Hi");
    let ceiling = find_ceiling(&n, &ask).await;

    // A maximum price below the query's ceiling: refused, no channel, nothing signed.
    let tight = Limits { max_price: Some(ceiling - 1), ..Limits::default() };
    let (user, payer) = n.user("u2", Spending::new(HashMap::from([(Currency::Near, tight)]), None).unwrap()).await;
    let record = find(&user, "model.devnet").await;
    let conn = user.session(&record).await.unwrap();
    let e = query(&conn, &record, "assistant", ask.encode(), Some(&payer), |_| async {}).await.unwrap_err();
    assert!(e.to_string().contains("maximum price per query") && e.to_string().contains("nothing was signed"), "{e}");
    assert!(payer.status().await.unwrap().is_empty(), "no channel was opened");
    assert!(n.chain().channels_of(&"u2.devnet".parse().unwrap()).await.unwrap().is_empty());
    // Through the gateway: 402 in OpenAI's shape.
    let gw = Arc::new(Gateway::new(user, Some(payer), None));
    let addr = gateway::start(gw.clone(), "127.0.0.1:0".parse().unwrap(), false).await.unwrap();
    let body = serde_json::json!({"model": "model.devnet/assistant", "messages": [{"role": "user", "content": "Hi"}]});
    let r = reqwest::Client::new().post(format!("http://{addr}/v1/chat/completions")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 402);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["error"]["code"].as_str(), v["error"]["type"].as_str()),
        (Some("SpendingLimit"), Some("payment_error")),
        "{v}"
    );
    assert!(gw.payer().unwrap().status().await.unwrap().is_empty(), "still nothing signed");

    // A daily budget of one ceiling: the first query fits, the second would not.
    let daily = Limits { per_day: Some(ceiling), ..Limits::default() };
    let (user, payer) = n.user("u3", Spending::new(HashMap::from([(Currency::Near, daily)]), None).unwrap()).await;
    let record = find(&user, "model.devnet").await;
    let conn = user.session(&record).await.unwrap();
    let first = query(&conn, &record, "assistant", ask.encode(), Some(&payer), |_| async {}).await.unwrap();
    assert_eq!(ChatAnswer::decode(&first.body).unwrap().text, REPLY);
    let signed = payer.status().await.unwrap()[0].signed;
    assert_eq!(signed, ceiling, "under a budget nothing is signed beyond the query's ceiling (no paying ahead)");
    let e = query(&conn, &record, "assistant", ask.encode(), Some(&payer), |_| async {}).await.unwrap_err();
    assert!(e.to_string().contains("daily budget"), "{e}");
    assert_eq!(payer.status().await.unwrap()[0].signed, signed, "the refused query signed nothing");
    assert_eq!(payer.spending().spent_today(), vec![("NEAR".to_owned(), first.paid)]);
    brand.shutdown().await;
    let _ = std::fs::remove_dir_all(&n.dir);
}

/// The ceiling of `ask` at the model service, from its record (as payer and payee compute it).
async fn find_ceiling(n: &Net, ask: &ChatRequest) -> u128 {
    let me = Arc::new(LocalIdentity::generate(&mut OsRng));
    let user =
        UserAgent::start(me, vec![n.boot_addr.parse().unwrap()], None, TransportLimits::default()).await.unwrap();
    let record = find(&user, "model.devnet").await;
    let service = record.record().service("assistant").unwrap().clone();
    service.admission(&ask.encode()).unwrap()
}

/// `examples/brand.toml` with every commented `[[service]]` uncommented
/// (its URLs pointed at local test servers, its ports at free ones) parses,
/// starts and answers every service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_brand_config_with_every_service_uncommented_parses_and_serves() {
    let upstream = FakeOpenAi::start().await;
    let n = net("example", &["bob", "u4"]).await;
    let example =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/brand.toml")).unwrap();
    let mut lines = Vec::new();
    let mut uncommented = 0;
    for line in example.lines() {
        let setting = line.strip_prefix("# ").filter(|rest| {
            rest.starts_with("[[service]]")
                || rest
                    .split_once(" = ")
                    .is_some_and(|(k, _)| !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        });
        match setting {
            Some(rest) => {
                uncommented += 1;
                lines.push(rest.to_owned());
            }
            None => lines.push(line.to_owned()),
        }
    }
    assert!(uncommented >= 8, "the example's commented services were found ({uncommented} lines)");
    let lookup_url = upstream.base_url.replace("/v1", "/lookup");
    let mut text = lines.join("\n");
    for (from, to) in [
        ("http://127.0.0.1:8080/v1", upstream.base_url.as_str()),
        ("http://127.0.0.1:8081/lookup", lookup_url.as_str()),
        ("listen = \"127.0.0.1:4433\"", "listen = \"127.0.0.1:0\""),
        ("\"/ip4/127.0.0.1/udp/4001/quic-v1\", \"/ip4/127.0.0.1/tcp/4001\"", "\"/ip4/127.0.0.1/udp/0/quic-v1\""),
        ("bootstrap = []", &format!("bootstrap = [\"{}\"]", n.boot_addr)),
        ("metrics = \"127.0.0.1:9464\"", "metrics = \"127.0.0.1:0\""),
        ("near_rpc = \"http://127.0.0.1:3030\"", &format!("near_rpc = \"{}\"", n.ready.rpc_url)),
    ] {
        assert!(text.contains(from), "examples/brand.toml no longer has {from:?}");
        text = text.replace(from, to);
    }
    std::fs::create_dir_all(n.dir.join("keys")).unwrap();
    std::fs::write(n.dir.join("keys/bob.devnet.near-key"), n.secret("bob.devnet")).unwrap();
    let path = n.dir.join("brand.toml");
    std::fs::write(&path, &text).unwrap();
    // The example reads the upstream's key from the environment.
    std::env::set_var("UPSTREAM_API_KEY", "sk-from-env");
    let config = BrandConfig::load(&path).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let names: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["chat", "story", "hours", "assistant", "lookup"]);
    let brand = brand::start(config, TransportLimits::default()).await.unwrap();
    let (user, payer) = n.user("u4", Spending::unlimited()).await;
    let record = find(&user, "bob.devnet").await;
    let conn = user.session(&record).await.unwrap();
    let ask = |service: &'static str, body: Vec<u8>| {
        let (conn, record, payer) = (conn.clone(), record.clone(), &payer);
        async move { query(&conn, &record, service, body, Some(payer), |_| async {}).await.unwrap() }
    };
    assert_eq!(ask("chat", b"hello".to_vec()).await.body, b"hello");
    assert_eq!(ask("story", b"one two three four".to_vec()).await.body, b"one two three four");
    assert_eq!(ask("hours", Vec::new()).await.body, b"Mon-Fri 9:00-18:00");
    let answer = ask("assistant", ChatRequest::ask("Hello").encode()).await;
    assert_eq!(ChatAnswer::decode(&answer.body).unwrap().text, REPLY);
    assert_eq!(upstream.chats().last().unwrap().authorization.as_deref(), Some("Bearer sk-from-env"));
    assert_eq!(ask("lookup", b"opening hours?".to_vec()).await.body, b"opening hours?");
    brand.shutdown().await;
    let _ = std::fs::remove_dir_all(&n.dir);
}
