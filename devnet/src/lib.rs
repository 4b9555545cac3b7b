//! A local NEAR devnet for AgentWire: NEAR's JSON-RPC in front of a one-shard
//! chain that runs contracts in NEAR's real VM (`near-vm-runner` 0.38, the
//! mainnet cost table) with real gas, executes the receipts they create
//! (transfers, cross-contract calls, callbacks with promise results), and
//! keeps its state on disk when asked.
//!
//! - [`Devnet`]: start one in-process (tests, `agentwire demo`, `agentwire devnet`).
//! - [`chain`]: transaction checks and execution; [`receipts`]: receipts in the VM.
//! - [`rpc`], [`http`]: the JSON-RPC and its HTTP server; [`history`]: the
//!   receipts of finished transactions and lookups into them.
//! - [`vm`]: one contract in the VM, for per-method gas measurements.

pub mod chain;
pub mod contracts;
pub mod fees;
pub mod history;
pub mod http;
pub mod receipts;
pub mod rpc;
pub mod state;
pub mod vm;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use near_crypto::{ED25519SecretKey, SecretKey};
use near_primitives::types::AccountId;

pub use chain::Chain;
pub use http::HttpLimits;

/// One NEAR, in yoctoNEAR.
pub const ONE_NEAR: u128 = 1_000_000_000_000_000_000_000_000;

/// How to start a devnet.
#[derive(Clone, Debug)]
pub struct DevnetConfig {
    /// Where the JSON-RPC listens (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// Keep state in this file across restarts; `None` keeps it in memory.
    pub state_file: Option<PathBuf>,
    /// Chain id reported by `status`.
    pub chain_id: String,
    /// The root account: the registrar and faucet (`alice` → `alice.<root>`).
    pub root_account: String,
    /// The root's balance at genesis, yoctoNEAR.
    pub root_balance: u128,
    /// HTTP bounds.
    pub http: HttpLimits,
}

impl Default for DevnetConfig {
    fn default() -> Self {
        DevnetConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            state_file: None,
            chain_id: "agentwire-devnet".into(),
            root_account: "devnet".into(),
            root_balance: 1_000_000_000 * ONE_NEAR,
            http: HttpLimits::default(),
        }
    }
}

/// Why the devnet could not do something.
#[derive(Debug)]
pub enum DevnetError {
    /// The listen address could not be bound.
    Bind(std::io::Error),
    /// The state file could not be read or written.
    State(state::StateFileError),
    /// An account id is not valid NEAR syntax.
    BadAccountId(String),
    /// The account exists already, or the faucet ran dry.
    AccountNotCreated(String),
}

impl std::fmt::Display for DevnetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DevnetError::Bind(e) => {
                write!(f, "cannot listen for JSON-RPC: {e} (is another devnet running on that port?)")
            }
            DevnetError::State(e) => write!(f, "{e}"),
            DevnetError::BadAccountId(a) => write!(f, "{a:?} is not a valid NEAR account id"),
            DevnetError::AccountNotCreated(a) => {
                write!(f, "account {a} was not created: it exists, or the root cannot fund it")
            }
        }
    }
}

impl std::error::Error for DevnetError {}

/// An account the devnet created, with its full-access key.
#[derive(Clone, Debug)]
pub struct DevAccount {
    /// The account.
    pub account_id: AccountId,
    /// Its full-access secret key (`ed25519:...`).
    pub secret_key: SecretKey,
}

/// A fresh ed25519 key from the operating system's RNG.
pub fn random_secret_key() -> SecretKey {
    let signing = ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng);
    SecretKey::ED25519(ED25519SecretKey(signing.to_keypair_bytes()))
}

/// A running devnet.
pub struct Devnet {
    addr: SocketAddr,
    chain: Arc<Mutex<Chain>>,
    root: DevAccount,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn parse_account(s: &str) -> Result<AccountId, DevnetError> {
    s.parse().map_err(|_| DevnetError::BadAccountId(s.to_owned()))
}

impl Devnet {
    /// Opens (or creates) the chain and serves its JSON-RPC.
    pub fn start(config: DevnetConfig) -> Result<Devnet, DevnetError> {
        let root_id = parse_account(&config.root_account)?;
        let fresh = random_secret_key();
        let mut chain = Chain::open(
            &config.chain_id,
            config.state_file.clone(),
            &root_id,
            &fresh.public_key(),
            config.root_balance,
        )
        .map_err(DevnetError::State)?;
        let root_key = match chain.state.dev_keys.get(&root_id).and_then(|k| k.parse::<SecretKey>().ok()) {
            Some(k) => k,
            None => {
                chain.state.dev_keys.insert(root_id.clone(), fresh.to_string());
                chain.persist().map_err(DevnetError::State)?;
                fresh
            }
        };
        let listener = TcpListener::bind(config.listen).map_err(DevnetError::Bind)?;
        let addr = listener.local_addr().map_err(DevnetError::Bind)?;
        let chain = Arc::new(Mutex::new(chain));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (chain, stop, limits) = (chain.clone(), stop.clone(), config.http);
            std::thread::spawn(move || http::serve(listener, chain, stop, limits))
        };
        Ok(Devnet {
            addr,
            chain,
            root: DevAccount { account_id: root_id, secret_key: root_key },
            stop,
            thread: Some(thread),
        })
    }

    /// The JSON-RPC URL, e.g. `http://127.0.0.1:3030`.
    pub fn rpc_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the JSON-RPC listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The root account (registrar and faucet).
    pub fn root(&self) -> &DevAccount {
        &self.root
    }

    /// Direct access to the chain (tests, inspection).
    pub fn chain(&self) -> MutexGuard<'_, Chain> {
        match self.chain.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Creates `name` (a bare name becomes `name.<root>`) holding `balance`
    /// yoctoNEAR from the root, with a new full-access key.
    pub fn create_account(&self, name: &str, balance: u128) -> Result<DevAccount, DevnetError> {
        let full = if name.contains('.') { name.to_owned() } else { format!("{name}.{}", self.root.account_id) };
        let account_id = parse_account(&full)?;
        let secret_key = random_secret_key();
        let mut chain = self.chain();
        if !chain.create_funded_account(&account_id, &secret_key.public_key(), balance).map_err(DevnetError::State)? {
            return Err(DevnetError::AccountNotCreated(full));
        }
        chain.state.dev_keys.insert(account_id.clone(), secret_key.to_string());
        chain.persist().map_err(DevnetError::State)?;
        Ok(DevAccount { account_id, secret_key })
    }

    /// Accounts the devnet created, with their keys (root first).
    pub fn dev_accounts(&self) -> Vec<DevAccount> {
        let chain = self.chain();
        let mut out = vec![self.root.clone()];
        for (id, key) in &chain.state.dev_keys {
            if id != &self.root.account_id {
                if let Ok(secret_key) = key.parse() {
                    out.push(DevAccount { account_id: id.clone(), secret_key });
                }
            }
        }
        out
    }

    /// Skips `delta_height` blocks of one second each.
    pub fn fast_forward(&self, delta_height: u64) -> Result<(), DevnetError> {
        self.chain().fast_forward(delta_height).map(|_| ()).map_err(DevnetError::State)
    }

    /// A NEAR account's balance, yoctoNEAR (0 if it does not exist).
    pub fn balance(&self, account: &str) -> u128 {
        let Ok(id) = account.parse::<AccountId>() else { return 0 };
        self.chain().state.accounts.get(&id).map(|a| a.amount).unwrap_or(0)
    }

    /// Stops serving and waits for the server thread.
    pub fn shutdown(mut self) {
        self.stop_server();
    }

    fn stop_server(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        self.stop_server();
    }
}
