//! The connection pool and what the store needs around it: errors sorted by
//! what they mean for money (nothing happened / may have happened), and
//! amounts and ids passed as decimal text.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::{NoTls, Row};

/// A database failure, by what it means for the operation.
#[derive(Clone, Debug, thiserror::Error)]
pub enum DbError {
    /// No connection could be had: the operation was not sent.
    #[error("cannot reach the database: {0}")]
    Unreachable(String),
    /// The database refused the operation: it did not happen.
    #[error("the database refused: {0}")]
    Refused(String),
    /// The connection failed or timed out after the operation was sent: it
    /// may or may not have been committed.
    #[error("the database connection failed mid-operation: {0}")]
    Ambiguous(String),
}

impl DbError {
    /// Whether the operation certainly did not happen.
    pub fn nothing_happened(&self) -> bool {
        !matches!(self, DbError::Ambiguous(_))
    }
}

/// Sorts a client error: a server's error means the statement (and its
/// transaction) did not happen; anything else happened on the connection
/// and leaves the outcome unknown.
pub fn db_err(e: tokio_postgres::Error) -> DbError {
    match e.as_db_error() {
        Some(d) => DbError::Refused(format!("{} ({})", d.message(), d.code().code())),
        None => DbError::Ambiguous(e.to_string()),
    }
}

/// Whether the server aborted a transaction that may succeed if run again
/// (serialization failure, deadlock): retried by the caller.
pub fn retryable(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| c.code() == "40001" || c.code() == "40P01")
}

/// Connection settings.
#[derive(Clone, Debug)]
pub struct PoolSettings {
    /// `postgres://user@host:port/db` (or key=value form).
    pub url: String,
    /// Connections at most.
    pub size: usize,
    /// Connecting, and waiting for a free connection, at most this long.
    pub connect_timeout: Duration,
}

/// A pool whose connections commit synchronously (a commit is acknowledged
/// once its WAL is flushed), whatever the server's default.
pub fn pool(settings: &PoolSettings) -> Result<Pool, DbError> {
    let mut config: tokio_postgres::Config =
        settings.url.parse().map_err(|e: tokio_postgres::Error| DbError::Refused(format!("store URL: {e}")))?;
    config.options("-c synchronous_commit=on");
    config.connect_timeout(settings.connect_timeout);
    config.application_name("agentwire");
    let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager)
        .max_size(settings.size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(settings.connect_timeout))
        .create_timeout(Some(settings.connect_timeout))
        .recycle_timeout(Some(settings.connect_timeout))
        .build()
        .map_err(|e| DbError::Refused(format!("connection pool: {e}")))
}

/// An amount read back as text (`NUMERIC::text`).
pub fn amount(row: &Row, column: &str) -> Result<u128, DbError> {
    let text: String = row.try_get(column).map_err(|e| DbError::Refused(format!("column {column}: {e}")))?;
    text.parse().map_err(|_| DbError::Refused(format!("column {column}: {text:?} is not a u128")))
}

/// An id or epoch read back as text.
pub fn id(row: &Row, column: &str) -> Result<u64, DbError> {
    let text: String = row.try_get(column).map_err(|e| DbError::Refused(format!("column {column}: {e}")))?;
    text.parse().map_err(|_| DbError::Refused(format!("column {column}: {text:?} is not a u64")))
}

/// Any other column.
pub fn get<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, column: &str) -> Result<T, DbError> {
    row.try_get(column).map_err(|e| DbError::Refused(format!("column {column}: {e}")))
}
