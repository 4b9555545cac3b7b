//! A command's failure as the user reads it: what happened (`message`), a
//! stable name for the cause (`code`) and the one thing to do (`action`).
//! Text on stderr (`error: …` then the action), or under `--json` one line
//! `{"error": {"code", "message", "action"}}` on stderr; the exit status is 1
//! (2 for a command line clap refused).

use std::fmt::Display;
use std::path::Path;

use agentwire_agent::brand::BrandError;
use agentwire_agent::dht::DhtError;
use agentwire_agent::keyfile::KeyFileError;
use agentwire_agent::near::NearError;
use agentwire_agent::pay::store::{Store, StoreError};
use agentwire_agent::pay::{PayError, QueryError};
use agentwire_agent::quic::TransportError;
use agentwire_agent::user::UserError;
use agentwire_protocol::payment::PaymentError;

/// A failed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    /// A stable name for the cause (`NearWrongKey`, `StoreLocked`, a §10 code name, …).
    pub code: String,
    /// What happened, in words.
    pub message: String,
    /// The one thing to do about it.
    pub action: String,
}

impl CliError {
    /// An error with its code, message and action.
    pub fn new(code: impl Into<String>, message: impl Display, action: impl Into<String>) -> CliError {
        CliError { code: code.into(), message: message.to_string(), action: action.into() }
    }

    /// A command line that is valid for clap but not for us.
    pub fn usage(message: impl Display) -> CliError {
        CliError::new("Usage", message, "see `agentwire <command> --help`")
    }

    /// Prints it as the user asked: text, or one JSON line.
    pub fn print(&self, json: bool) {
        if json {
            let v =
                serde_json::json!({ "error": { "code": self.code, "message": self.message, "action": self.action } });
            eprintln!("{v}");
        } else {
            eprintln!("error: {}\n  {}", self.message, self.action);
        }
    }

    /// The same error with its message prefixed by what was being done.
    pub fn context(mut self, doing: impl Display) -> CliError {
        self.message = format!("{doing}: {}", self.message);
        self
    }
}

impl From<NearError> for CliError {
    fn from(e: NearError) -> CliError {
        CliError::new(e.code(), &e, e.action())
    }
}

impl From<DhtError> for CliError {
    fn from(e: DhtError) -> CliError {
        let code = match &e {
            DhtError::Setup(_) => "DhtSetup",
            DhtError::Listen { .. } => "PortInUse",
            DhtError::BootstrapAddress { .. } => "BadBootstrapAddress",
            DhtError::BootstrapUnreachable(_) => "BootstrapUnreachable",
            DhtError::NotFound { .. } => "NotFound",
            DhtError::NoValidRecord { .. } => "NoValidRecord",
            DhtError::Timeout { .. } => "DhtTimeout",
            DhtError::NoPeers { .. } => "NoDhtPeers",
            DhtError::Publish(_) => "PublishFailed",
            _ => "Dht",
        };
        CliError::new(code, &e, e.action())
    }
}

impl From<TransportError> for CliError {
    fn from(e: TransportError) -> CliError {
        match &e {
            TransportError::Bind { addr, source } if source.kind() == std::io::ErrorKind::AddrInUse => CliError::new(
                "PortInUse",
                &e,
                format!(
                    "choose another port than {} (port 0 picks a free one), or stop the process using it",
                    addr.port()
                ),
            ),
            TransportError::Bind { .. } => {
                CliError::new("CannotBind", &e, "choose an address of this machine (or port 0 for any free port)")
            }
            _ => {
                let code = match e.remote() {
                    Some((code, _)) => code,
                    None => e.code(),
                };
                CliError::new(format!("{code:?}"), &e, action_words(e.action()))
            }
        }
    }
}

/// A protocol action (what the caller of a failed request should do) in words.
fn action_words(action: agentwire_protocol::wire::Action) -> &'static str {
    use agentwire_protocol::wire::Action;
    match action {
        Action::FixRequest => "fix the request (the service name, the question); it will fail the same way again",
        Action::Pay => "pay: give --near-account and --near-key-file, or top up the channel, then retry",
        Action::RetryLater => "retry later",
        Action::Reconnect => "retry (a new session is opened)",
        Action::GiveUp => "do not retry with this agent",
    }
}

impl From<UserError> for CliError {
    fn from(e: UserError) -> CliError {
        match e {
            UserError::Dht(d) => d.into(),
            UserError::Transport(t) => t.into(),
            UserError::Registry(n) => {
                let action = format!(
                    "{}; or pass --skip-registry-check for pure messaging (the brand's account is then unverified)",
                    n.action()
                );
                CliError::new(n.code(), format!("checking the endpoint registry: {n}"), action)
            }
            other => {
                let code = match &other {
                    UserError::NotRegistered(_) => "NotRegistered",
                    UserError::NoAddress => "NoAddress",
                    UserError::Unanswered(_) => "BrandUnanswered",
                    _ => "User",
                };
                CliError::new(code, &other, other.action())
            }
        }
    }
}

impl From<PayError> for CliError {
    fn from(e: PayError) -> CliError {
        match e {
            PayError::Chain(n) => n.into(),
            PayError::Store(s) => CliError::new("Store", format!("payment state store: {s}"), store_action(&s)),
            PayError::NoChannel => CliError::new(
                "NoChannel",
                &e,
                "open one (`agentwire channel open`, or a paid query opens it); `agentwire channel status` lists yours",
            ),
            PayError::Payment(p) => {
                let action = match p {
                    PaymentError::ExceedsDeposit { .. } | PaymentError::InsufficientFunds { .. } => {
                        "top up the channel (`agentwire channel top-up`)"
                    }
                    PaymentError::ChannelClosing => "the channel is closing: finalize it, then open a new one",
                    _ => "check the channel with `agentwire channel status`",
                };
                CliError::new("Payment", format!("payment: {p}"), action)
            }
            PayError::Receipt(_) => {
                CliError::new("BadReceipt", &e, "keep the request and the answer as evidence and stop using this brand")
            }
            other => CliError::new("Payment", &other, "do not pay this brand more than its record says"),
        }
    }
}

impl From<QueryError> for CliError {
    fn from(e: QueryError) -> CliError {
        match e {
            QueryError::Transport(t) => t.into(),
            QueryError::Pay(p) => p.into(),
            other => {
                let (code, action) = match &other {
                    QueryError::NoPayer { .. } => {
                        ("PaymentRequired", "give --near-account and --near-key-file to pay for it")
                    }
                    _ => ("NoPayments", "ask a free service, or another agent of this brand"),
                };
                CliError::new(code, &other, action)
            }
        }
    }
}

impl From<KeyFileError> for CliError {
    fn from(e: KeyFileError) -> CliError {
        let action = match &e {
            KeyFileError::Exists(_) => "use it (`agentwire identity show --key …`), or choose another --key path",
            KeyFileError::Malformed(_) => "give the key file `agentwire identity create` wrote",
            _ => "check the path and its permissions",
        };
        CliError::new("KeyFile", &e, action)
    }
}

impl From<BrandError> for CliError {
    fn from(e: BrandError) -> CliError {
        match e {
            BrandError::Dht(d) => d.into(),
            BrandError::Transport(t) => t.into(),
            BrandError::Key(k) => k.into(),
            BrandError::Config(text) => {
                CliError::new("Config", text, "fix the configuration file (see examples/brand.toml)")
            }
        }
    }
}

fn store_action(e: &StoreError) -> &'static str {
    match e {
        StoreError::Corrupt { .. } => "restore the directory from a backup; do not delete it (it holds signed totals)",
        StoreError::Busy => "retry",
        _ => "check the directory and its permissions",
    }
}

/// A store that could not be opened in `dir`: when it is locked, who holds it
/// and what to use instead.
pub fn store_open(dir: &Path, e: StoreError, instead: &str) -> CliError {
    if let StoreError::Locked = e {
        let holder = Store::lock_holder(dir).unwrap_or_else(|| "another process".into());
        return CliError::new(
            "StoreLocked",
            format!("the payment state in {} is in use by {holder}", dir.display()),
            format!("{instead}, or stop that process first"),
        );
    }
    CliError::new("Store", format!("{}: {e}", dir.display()), store_action(&e))
}
