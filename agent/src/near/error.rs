//! What went wrong talking to NEAR, by cause, each with one action: the RPC
//! did not answer, the key is not the account's, the account does not
//! exist, the balance is too low, or the contract refused (in its own
//! words). `near-api`'s nested errors are read by type here, so no Rust
//! debug output reaches a user.

use near_api::errors::{ExecuteTransactionError, MetaSignError, QueryError, RetryError, SendRequestError, SignerError};
use near_api::types::errors::ExecutionError;
use near_api::types::transaction::result::ExecutionFailure;
use near_openapi_types::{ActionErrorKind, FunctionCallError, RpcQueryError, RpcTransactionError, TxExecutionError};

use crate::units::near;

/// What went wrong talking to NEAR. `Display` says the cause;
/// [`NearError::action`] says what to do; [`NearError::code`] names it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NearError {
    /// The RPC could not be reached (refused, timed out, not HTTP): start it or fix the URL.
    #[error("the NEAR RPC at {url} did not answer: {detail}")]
    Unreachable {
        /// The RPC URL.
        url: String,
        /// What the connection attempt got.
        detail: String,
    },
    /// The RPC answered with an error that is not about the request (it is
    /// syncing, an internal error): retry later.
    #[error("the NEAR RPC refused the request: {0}")]
    Rpc(String),
    /// The secret key is not an access key of the account: use the account's key.
    #[error("the key {public_key} is not an access key of {account}")]
    WrongKey {
        /// The signing account.
        account: String,
        /// The public key of the secret key given.
        public_key: String,
    },
    /// The account does not exist on this network.
    #[error("the NEAR account {account} does not exist on this network")]
    NoAccount {
        /// The account.
        account: String,
    },
    /// The signer's balance does not cover what the transaction attaches plus its gas.
    #[error(
        "{account} has {} but this {method} attaches {} and may burn up to {} of gas",
        near(*.balance), near(*.attached), near(*.gas)
    )]
    NotEnoughBalance {
        /// The signing account.
        account: String,
        /// The contract method.
        method: String,
        /// Its liquid balance, yoctoNEAR.
        balance: u128,
        /// What the transaction attaches, yoctoNEAR.
        attached: u128,
        /// The most its gas can cost at the lowest gas price, yoctoNEAR.
        gas: u128,
    },
    /// The network refused the transaction before running it, for a reason
    /// the RPC did not give (it changed nothing).
    #[error("NEAR refused the {method} transaction before running it (invalid transaction)")]
    InvalidTransaction {
        /// The contract method.
        method: String,
    },
    /// The transaction ran and the contract refused it: fix the request.
    /// Gas was still paid (`tokens_burnt`); attached deposits came back.
    #[error("the contract refused {method}: {reason}")]
    Failed {
        /// The contract method.
        method: String,
        /// The contract's or runtime's reason, in its words.
        reason: String,
        /// yoctoNEAR burnt for gas by the failed transaction (0 if it never ran).
        tokens_burnt: u128,
    },
    /// The answer did not have the expected shape: the contract or RPC is not what we expect.
    #[error("unexpected answer from NEAR: {0}")]
    BadResponse(String),
    /// An account id or key was not valid.
    #[error("invalid {what}: {value}")]
    Invalid {
        /// What was being parsed.
        what: &'static str,
        /// The offending value.
        value: String,
    },
}

impl NearError {
    /// A stable name for the cause (the `code` of a JSON error).
    pub fn code(&self) -> &'static str {
        match self {
            NearError::Unreachable { .. } => "NearUnreachable",
            NearError::Rpc(_) => "NearRpcError",
            NearError::WrongKey { .. } => "NearWrongKey",
            NearError::NoAccount { .. } => "NearNoAccount",
            NearError::NotEnoughBalance { .. } => "NearNotEnoughBalance",
            NearError::InvalidTransaction { .. } => "NearInvalidTransaction",
            NearError::Failed { .. } => "ContractRefused",
            NearError::BadResponse(_) => "NearBadAnswer",
            NearError::Invalid { .. } => "Invalid",
        }
    }

    /// The one thing to do about it.
    pub fn action(&self) -> String {
        match self {
            NearError::Unreachable { url, .. } => format!(
                "start the NEAR RPC (`agentwire devnet` serves one on 127.0.0.1:3030) or pass the right --near-rpc (now {url})"
            ),
            NearError::Rpc(_) => "retry later; if it persists, use another NEAR RPC".into(),
            NearError::WrongKey { account, .. } => format!(
                "use a key file holding a key of {account} (`agentwire devnet --keys-dir DIR` writes DIR/<account>.near-key), \
                 or name the account that key belongs to"
            ),
            NearError::NoAccount { account } => {
                format!("check the account name ({account}) and that --near-rpc is the network it lives on")
            }
            NearError::NotEnoughBalance { account, .. } => {
                format!("add NEAR to {account}, or attach less (a smaller deposit, --deposit-queries or --amount)")
            }
            NearError::InvalidTransaction { .. } => {
                "check the account's key, nonce and balance with a NEAR explorer or the RPC, then retry".into()
            }
            NearError::Failed { .. } => "fix the request as the contract's reason says; nothing was changed".into(),
            NearError::BadResponse(_) => "check that --contract names an AgentWire channel contract".into(),
            NearError::Invalid { what, .. } => format!("fix the {what}"),
        }
    }

    /// Whether the RPC was not reached at all (nothing is known about the chain).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, NearError::Unreachable { .. })
    }
}

/// The words of a transport failure: reqwest's chain of causes, the innermost last.
fn transport_words(e: &(dyn std::error::Error + 'static)) -> String {
    let mut words = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !words.contains(&text) {
            words = format!("{words}: {text}");
        }
        source = s.source();
    }
    words
}

/// A request that never got an answer, or the server's error, from a
/// `near-api` send. `None` for the server's typed errors (the caller reads those).
fn send_error<E: std::fmt::Debug + Send + Sync>(e: &SendRequestError<E>, url: &str) -> Option<NearError> {
    match e {
        SendRequestError::TransportError(t) => {
            Some(NearError::Unreachable { url: url.to_owned(), detail: transport_words(t) })
        }
        SendRequestError::ServerError(_) => None,
        SendRequestError::WasmExecutionError(f) => {
            Some(NearError::Failed { method: "view".into(), reason: function_call_words(f), tokens_burnt: 0 })
        }
        SendRequestError::InternalError(i) => Some(NearError::Rpc(json_words(i))),
        SendRequestError::RequestValidationError(v) => Some(NearError::Rpc(json_words(v))),
        SendRequestError::RequestCreationError(c) => Some(NearError::Rpc(c.to_string())),
    }
}

fn retried<E>(e: &RetryError<E>) -> Option<&E> {
    match e {
        RetryError::RetriesExhausted(e) | RetryError::Critical(e) => Some(e),
        RetryError::NoRpcEndpoints | RetryError::InvalidApiKey(_) => None,
    }
}

/// A view, a balance or a nonce query that failed. `account` is the account
/// it was about (the signer, for a nonce).
pub(crate) fn from_query(e: &QueryError<RpcQueryError>, url: &str, account: &str, what: &str) -> NearError {
    let QueryError::QueryError(inner) = e else { return NearError::Rpc(format!("{what}: {e}")) };
    let Some(send) = retried(inner) else { return NearError::Rpc(format!("{what}: {inner}")) };
    if let Some(e) = send_error(send, url) {
        return match e {
            NearError::Failed { reason, .. } => NearError::Failed { method: what.to_owned(), reason, tokens_burnt: 0 },
            other => other,
        };
    }
    let SendRequestError::ServerError(server) = send else { return NearError::Rpc(format!("{what}: {send}")) };
    match server {
        RpcQueryError::UnknownAccessKey { public_key, .. } => {
            NearError::WrongKey { account: account.to_owned(), public_key: public_key.to_string() }
        }
        RpcQueryError::UnknownAccount { requested_account_id, .. } => {
            NearError::NoAccount { account: requested_account_id.to_string() }
        }
        RpcQueryError::ContractExecutionError { error, vm_error, .. } => NearError::Failed {
            method: what.to_owned(),
            reason: match error {
                FunctionCallError::ExecutionError(_) => function_call_words(error),
                _ if !vm_error.is_empty() => vm_error.clone(),
                _ => function_call_words(error),
            },
            tokens_burnt: 0,
        },
        RpcQueryError::NoContractCode { contract_account_id, .. } => NearError::Failed {
            method: what.to_owned(),
            reason: format!("{contract_account_id} has no contract deployed"),
            tokens_burnt: 0,
        },
        other => NearError::Rpc(format!("{what}: {}", json_words(other))),
    }
}

/// Any other query that failed (blocks, status): unreachable, or the RPC's error.
pub(crate) fn from_other_query<E: std::fmt::Debug + std::fmt::Display + serde::Serialize + Send + Sync>(
    e: &QueryError<E>,
    url: &str,
    what: &str,
) -> NearError {
    let QueryError::QueryError(inner) = e else { return NearError::Rpc(format!("{what}: {e}")) };
    match retried(inner) {
        Some(SendRequestError::ServerError(server)) => NearError::Rpc(format!("{what}: {}", json_words(server))),
        Some(send) => send_error(send, url).unwrap_or_else(|| NearError::Rpc(format!("{what}: {send}"))),
        None => NearError::Rpc(format!("{what}: {inner}")),
    }
}

/// A transaction that could not be sent or was refused before it ran.
/// `InvalidTransaction` says nothing more here: nearcore puts the reason in
/// the error's `data`, which `near-api` drops, so the caller checks the
/// balance itself.
pub(crate) fn from_send(e: &ExecuteTransactionError, url: &str, signer: &str, method: &str) -> NearError {
    match e {
        ExecuteTransactionError::MetaSignError(MetaSignError::SignerError(SignerError::FetchNonceError(q)))
        | ExecuteTransactionError::SignerError(SignerError::FetchNonceError(q)) => {
            from_query(q, url, signer, "the signer's access key")
        }
        ExecuteTransactionError::PreQueryError(q) => from_query(q, url, signer, method),
        ExecuteTransactionError::TransactionError(retry) => {
            let Some(send) = retried(retry) else { return NearError::Rpc(format!("{method}: {retry}")) };
            if let Some(e) = send_error(send, url) {
                return e;
            }
            match send {
                SendRequestError::ServerError(RpcTransactionError::InvalidTransaction(_)) => {
                    NearError::InvalidTransaction { method: method.to_owned() }
                }
                SendRequestError::ServerError(RpcTransactionError::TimeoutError) => NearError::Rpc(format!(
                    "{method}: the transaction was not final in time; check its status before retrying"
                )),
                SendRequestError::ServerError(other) => NearError::Rpc(format!("{method}: {}", json_words(other))),
                other => NearError::Rpc(format!("{method}: {other}")),
            }
        }
        other => NearError::Rpc(format!("{method}: {other}")),
    }
}

/// Why a transaction that ran failed, in the contract's words when it
/// panicked ("challenge period runs until …"), else the runtime's error as JSON.
pub(crate) fn refusal(failure: &ExecutionFailure) -> String {
    let errors: Vec<TxExecutionError> = failure
        .failures()
        .into_iter()
        .filter_map(|o| match o.clone().into_result() {
            Err(ExecutionError::TransactionExecutionFailed(e)) => Some(*e),
            _ => None,
        })
        .collect();
    let Some(first) = errors.first() else { return "the transaction failed (no reason given)".into() };
    match first {
        TxExecutionError::ActionError(a) => match &a.kind {
            ActionErrorKind::FunctionCallError(f) => function_call_words(f),
            other => json_words(other),
        },
        TxExecutionError::InvalidTxError(e) => json_words(e),
    }
}

/// A contract's panic message without the runtime's prefix, or the error as JSON.
fn function_call_words(f: &FunctionCallError) -> String {
    match f {
        FunctionCallError::ExecutionError(text) => {
            text.strip_prefix("Smart contract panicked: ").unwrap_or(text).to_owned()
        }
        other => json_words(other),
    }
}

/// A typed error as compact JSON (`{"AccountDoesNotExist":{"account_id":"x"}}`):
/// the RPC's own words, never Rust's debug form.
fn json_words<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "an error the RPC could not describe".into())
}
