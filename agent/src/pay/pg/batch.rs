//! Group commit for the writes an answer waits on (admissions, settlements,
//! the start of a streamed answer, take-backs): a few writer tasks each take
//! everything queued (up to `max_batch`) and commit it as one transaction,
//! pipelined on one connection — one round trip and one WAL flush for the
//! whole batch, so commits are batched exactly when there is load.
//!
//! A batch locks channel rows in one order (sorted by channel), so two
//! endpoints' batches cannot deadlock each other; a serialization failure or
//! deadlock the server reports anyway is retried. A statement the server
//! refuses aborts its transaction, so the batch is then run one write at a
//! time to find it. A connection that fails or times out after the batch
//! was sent leaves its outcome unknown: every write in it gets
//! [`DbError::Ambiguous`] and the caller takes it back (`sql::FORGIVE`).

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Object, Pool};
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::db::{db_err, retryable, DbError};
use super::sql;

/// A channel instance as statement parameters (decimal text), ordered for locking.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// Contract account.
    pub contract: String,
    /// Channel id, decimal.
    pub id: String,
    /// Epoch, decimal.
    pub epoch: String,
}

/// One write an answer waits on.
#[derive(Debug)]
pub enum Write {
    /// [`sql::ADMIT`].
    Admit {
        /// The channel.
        key: Key,
        /// The voucher's total.
        offered: String,
        /// The price.
        price: String,
        /// The voucher's signature.
        signature: Vec<u8>,
        /// This endpoint.
        endpoint: i64,
        /// The admission's number.
        seq: i64,
        /// 0, or 1 for content that leaves at once.
        state: i16,
    },
    /// [`sql::SETTLE`].
    Settle {
        /// The channel (for the lock order).
        key: Key,
        /// The admitting endpoint.
        endpoint: i64,
        /// The admission's number.
        seq: i64,
        /// The charge.
        actual: String,
    },
    /// [`sql::DELIVERING`].
    Delivering {
        /// The channel (for the lock order).
        key: Key,
        /// The admitting endpoint.
        endpoint: i64,
        /// The admission's number.
        seq: i64,
    },
    /// [`sql::FORGIVE`].
    Forgive {
        /// The channel (for the lock order).
        key: Key,
        /// The admitting endpoint.
        endpoint: i64,
        /// The admission's number.
        seq: i64,
    },
}

impl Write {
    fn key(&self) -> &Key {
        match self {
            Write::Admit { key, .. }
            | Write::Settle { key, .. }
            | Write::Delivering { key, .. }
            | Write::Forgive { key, .. } => key,
        }
    }

    fn sql(&self) -> &'static str {
        match self {
            Write::Admit { .. } => sql::ADMIT,
            Write::Settle { .. } => sql::SETTLE,
            Write::Delivering { .. } => sql::DELIVERING,
            Write::Forgive { .. } => sql::FORGIVE,
        }
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        match self {
            Write::Admit { key, offered, price, signature, endpoint, seq, state } => {
                vec![&key.contract, &key.id, &key.epoch, offered, price, signature, endpoint, seq, state]
            }
            Write::Settle { endpoint, seq, actual, .. } => vec![endpoint, seq, actual],
            Write::Delivering { endpoint, seq, .. } | Write::Forgive { endpoint, seq, .. } => vec![endpoint, seq],
        }
    }
}

/// What a write returned: its statement's first row, if any.
pub type Reply = Result<Option<Row>, DbError>;

struct Job {
    write: Write,
    reply: oneshot::Sender<Reply>,
}

/// How the writers run.
#[derive(Clone, Debug)]
pub struct BatchSettings {
    /// Writer tasks (each commits one batch at a time on its own connection).
    pub writers: usize,
    /// Writes in one transaction at most.
    pub max_batch: usize,
    /// Writes queued at most (beyond it, callers wait).
    pub queue: usize,
    /// A batch's commit is given up after this long (its outcome is then unknown).
    pub timeout: Duration,
}

/// The queue of writes, served by the writer tasks.
#[derive(Clone)]
pub struct Writes {
    tx: mpsc::Sender<Job>,
}

/// Attempts at a batch the server aborted for a retryable reason.
const RETRIES: usize = 5;

impl Writes {
    /// Starts the writers on `pool`.
    pub fn start(pool: Pool, settings: BatchSettings) -> (Writes, Vec<tokio::task::JoinHandle<()>>) {
        let (tx, rx) = mpsc::channel(settings.queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let tasks = (0..settings.writers.max(1))
            .map(|_| tokio::spawn(writer(rx.clone(), pool.clone(), settings.clone())))
            .collect();
        (Writes { tx }, tasks)
    }

    /// Commits `write` (with whatever else is queued) and returns its row.
    pub async fn run(&self, write: Write) -> Reply {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { write, reply })
            .await
            .map_err(|_| DbError::Unreachable("the store's writers have stopped".into()))?;
        rx.await.unwrap_or_else(|_| Err(DbError::Ambiguous("the store's writer stopped".into())))
    }
}

async fn writer(rx: Arc<Mutex<mpsc::Receiver<Job>>>, pool: Pool, settings: BatchSettings) {
    loop {
        let mut jobs = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            let mut jobs = vec![first];
            while jobs.len() < settings.max_batch {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            jobs
        };
        // One lock order for every batch of every endpoint.
        jobs.sort_by(|a, b| a.write.key().cmp(b.write.key()));
        let writes: Vec<&Write> = jobs.iter().map(|j| &j.write).collect();
        let replies = commit(&pool, &writes, settings.timeout).await;
        for (job, reply) in jobs.into_iter().zip(replies) {
            let _ = job.reply.send(reply);
        }
    }
}

enum Outcome {
    Done(Vec<Reply>),
    /// The server aborted it for a reason worth another try.
    Retry,
    /// The server refused one of the writes: nothing was committed.
    Refused,
}

async fn commit(pool: &Pool, writes: &[&Write], timeout: Duration) -> Vec<Reply> {
    let all = |e: DbError| writes.iter().map(|_| Err(e.clone())).collect::<Vec<_>>();
    for _ in 0..RETRIES {
        let client = match tokio::time::timeout(timeout, pool.get()).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return all(DbError::Unreachable(e.to_string())),
            Err(_) => return all(DbError::Unreachable("no connection within the timeout".into())),
        };
        let attempt = tokio::time::timeout(timeout, transaction(&client, writes)).await;
        match attempt {
            Ok(Ok(Outcome::Done(replies))) => return replies,
            Ok(Ok(Outcome::Retry)) => continue,
            Ok(Ok(Outcome::Refused)) => return one_by_one(&client, writes).await,
            Ok(Err(e)) => {
                drop(Object::take(client));
                return all(e);
            }
            Err(_) => {
                // The connection may be mid-transaction: never reuse it.
                drop(Object::take(client));
                return all(DbError::Ambiguous("the commit did not answer within the timeout".into()));
            }
        }
    }
    all(DbError::Refused("the database kept aborting the transaction (serialization failures)".into()))
}

/// Runs `writes` as one transaction (one alone needs none). `Err`: the
/// connection failed, the outcome is unknown.
async fn transaction(client: &Object, writes: &[&Write]) -> Result<Outcome, DbError> {
    let mut statements = Vec::with_capacity(writes.len());
    for w in writes {
        statements.push(client.prepare_cached(w.sql()).await.map_err(db_err)?);
    }
    if let [w] = writes {
        return match client.query(&statements[0], &w.params()).await {
            Ok(rows) => Ok(Outcome::Done(vec![Ok(rows.into_iter().next())])),
            Err(e) if retryable(&e) => Ok(Outcome::Retry),
            Err(e) => match db_err(e) {
                DbError::Refused(r) => Ok(Outcome::Done(vec![Err(DbError::Refused(r))])),
                other => Err(other),
            },
        };
    }
    let params: Vec<_> = writes.iter().map(|w| w.params()).collect();
    // Pipelined: each request is queued on the connection when first polled, in this order.
    let begin = client.batch_execute("BEGIN");
    let queries = futures::future::join_all(statements.iter().zip(&params).map(|(s, p)| client.query(s, p)));
    let end = client.batch_execute("COMMIT");
    let (begin, results, end) = futures::join!(begin, queries, end);
    begin.map_err(db_err)?;
    let mut refused = false;
    let mut replies = Vec::with_capacity(results.len());
    for r in results {
        match r {
            Ok(rows) => replies.push(Ok(rows.into_iter().next())),
            Err(e) if retryable(&e) => return Ok(Outcome::Retry),
            Err(e) if e.as_db_error().is_some() => refused = true,
            Err(e) => return Err(db_err(e)),
        }
    }
    match end {
        Err(e) if retryable(&e) => Ok(Outcome::Retry),
        Err(e) if e.as_db_error().is_some() => Ok(Outcome::Refused),
        Err(e) => Err(db_err(e)),
        // A failed statement made the COMMIT a rollback: nothing was committed.
        Ok(()) if refused => Ok(Outcome::Refused),
        Ok(()) => Ok(Outcome::Done(replies)),
    }
}

/// After a refused batch: each write in its own transaction.
async fn one_by_one(client: &Object, writes: &[&Write]) -> Vec<Reply> {
    let mut replies = Vec::with_capacity(writes.len());
    for w in writes {
        let mut reply = Err(DbError::Refused("the database kept aborting the transaction".into()));
        for _ in 0..RETRIES {
            match transaction(client, std::slice::from_ref(w)).await {
                Ok(Outcome::Done(mut r)) => {
                    reply = r.pop().unwrap_or_else(|| Err(DbError::Ambiguous("no reply".into())));
                    break;
                }
                Ok(Outcome::Retry) => continue,
                Ok(Outcome::Refused) => break,
                Err(e) => {
                    reply = Err(e);
                    break;
                }
            }
        }
        replies.push(reply);
    }
    replies
}
