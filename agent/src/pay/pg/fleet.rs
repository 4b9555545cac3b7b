//! The fleet's bookkeeping in the shared store: who is alive, who claims,
//! and what dead endpoints leave behind.
//!
//! - Each endpoint (process) joins under a random id and says it is alive
//!   every quarter of the lease. One the database has not heard from for a
//!   whole lease is dead; one that finds it was taken for dead (a long
//!   partition from the database) joins again under a new id: its
//!   admissions in flight were forgiven, and their answers are not sent.
//! - The claimer lease (one row per brand) is held by one endpoint at a
//!   time, renewed at every `claimer()` call, and taken by another once it
//!   expires: a dead claimer is replaced within one lease and one tick.
//! - The holder, once it has held the lease for a whole lease (so every live
//!   endpoint has since said it is alive, even after the database itself was
//!   down), sweeps dead endpoints: their admissions whose answer had not
//!   begun to leave are forgiven, streamed ones charged (`sql::SWEEP`).
//! - Every endpoint drops the rows of its own settled admissions every
//!   second; the holder drops swept endpoints an hour after the sweep.

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::{Duration, Instant};

use rand_core::{OsRng, RngCore};

use super::batch::Write;
use super::db::{db_err, get, DbError};
use super::{sql, Inner};

/// How long a swept endpoint's rows are kept (a partitioned endpoint that
/// comes back still finds what became of its admissions).
const KEEP_SWEPT: Duration = Duration::from_secs(3600);

/// How often settled rows are dropped and take-backs retried.
const TICK: Duration = Duration::from_millis(250);

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Inner {
    /// Joins the fleet under a new random id.
    pub(super) async fn join(&self) -> Result<(), DbError> {
        for _ in 0..8 {
            let id = (OsRng.next_u64() >> 1).max(1) as i64;
            let rows = self.query(sql::REGISTER, &[&id, &self.config.payee, &self.config.agent]).await?;
            if !rows.is_empty() {
                self.endpoint.store(id, Ordering::Release);
                tracing::info!(endpoint = id, payee = %self.config.payee, "joined the fleet's payment database");
                return Ok(());
            }
        }
        Err(DbError::Refused("no free endpoint id after 8 tries".into()))
    }

    async fn heartbeat(&self) -> Result<(), DbError> {
        let me = self.endpoint.load(Ordering::Acquire);
        if self.query(sql::HEARTBEAT, &[&me]).await?.is_empty() {
            tracing::warn!(
                endpoint = me,
                "the payment database took this endpoint for dead (not heard from within the lease): \
                 its unsettled admissions were forgiven; joining again"
            );
            self.join().await?;
        }
        Ok(())
    }

    /// Takes or renews the claimer lease; the holder sweeps dead endpoints.
    pub(super) async fn claimer(&self) -> Result<bool, DbError> {
        let me = self.endpoint.load(Ordering::Acquire);
        let lease = millis(self.config.lease);
        let rows = self.query(sql::LEASE, &[&self.config.payee, &me, &lease]).await?;
        let Some(row) = rows.first() else { return Ok(false) };
        if get::<bool>(row, "settled")? {
            if let Err(e) = self.sweep(lease).await {
                tracing::warn!(error = %e, "could not sweep dead endpoints; will retry");
            }
        }
        Ok(true)
    }

    async fn sweep(&self, lease: i64) -> Result<(), DbError> {
        let run = async {
            let mut client = self.pool.get().await.map_err(|e| DbError::Unreachable(e.to_string()))?;
            let tx = client.transaction().await.map_err(db_err)?;
            // Locked first: admissions in flight on these endpoints commit before the sweep reads.
            let dead = tx.query(sql::DEAD, &[&self.config.payee, &lease]).await.map_err(db_err)?;
            let dead = dead.iter().map(|r| get::<i64>(r, "id")).collect::<Result<Vec<_>, _>>()?;
            if !dead.is_empty() {
                tx.query(sql::SWEEP, &[&dead]).await.map_err(db_err)?;
            }
            tx.commit().await.map_err(db_err)?;
            if !dead.is_empty() {
                tracing::warn!(endpoints = ?dead, "dead endpoints swept: what they admitted and never answered is forgiven");
            }
            let keep = millis(KEEP_SWEPT);
            let client = self.pool.get().await.map_err(|e| DbError::Unreachable(e.to_string()))?;
            client.query(sql::FORGET_SWEPT, &[&self.config.payee, &keep]).await.map_err(db_err)?;
            client.execute(sql::FORGET_ENDPOINTS, &[&self.config.payee, &keep]).await.map_err(db_err)?;
            Ok(())
        };
        tokio::time::timeout(self.config.timeout, run)
            .await
            .unwrap_or_else(|_| Err(DbError::Ambiguous("the sweep did not finish within the timeout".into())))
    }

    /// Commits the queued take-backs; the ones that fail stay queued.
    async fn take_backs(&self) {
        let queued = self.take_backs.lock().map(|t| t.clone()).unwrap_or_default();
        for (key, endpoint, seq) in queued {
            let write = Write::Forgive { key: key.clone(), endpoint, seq };
            match self.writes.run(write).await {
                Ok(_) => {
                    if let Ok(mut t) = self.take_backs.lock() {
                        t.retain(|(k, e, s)| !(k == &key && *e == endpoint && *s == seq));
                    }
                    tracing::info!(endpoint, seq, "an admission whose answer did not leave was taken back");
                }
                Err(e) => {
                    tracing::debug!(error = %e, "taking an admission back failed; will retry");
                    return;
                }
            }
        }
    }

    /// Drops the rows of this endpoint's settled admissions, except while
    /// one may still have to be taken back.
    async fn forget_settled(&self) -> Result<(), DbError> {
        let below = {
            let open = self.open.lock().map_err(|_| DbError::Refused("poisoned".into()))?;
            open.keys().min().copied().unwrap_or_else(|| self.next_seq.load(Ordering::Acquire))
        };
        if self.take_backs.lock().map(|t| !t.is_empty()).unwrap_or(true) {
            return Ok(());
        }
        let me = self.endpoint.load(Ordering::Acquire);
        let below = i64::try_from(below).unwrap_or(i64::MAX);
        self.query(sql::FORGET_OWN, &[&me, &below]).await.map(|_| ())
    }

    /// Leaves the fleet: the lease given up, settled rows dropped, the
    /// endpoint's row deleted (or, with admissions still open, left for the
    /// next sweep).
    pub(super) async fn leave(&self) {
        self.take_backs().await;
        let me = self.endpoint.load(Ordering::Acquire);
        let _ = self.query(sql::RELEASE, &[&self.config.payee, &me]).await;
        let _ = self.forget_settled().await;
        match self.query(sql::LEAVE, &[&me]).await {
            Ok(rows) if !rows.is_empty() => tracing::info!(endpoint = me, "left the fleet"),
            _ => {
                let _ = self.query(sql::LEAVE_OPEN, &[&me]).await;
                tracing::warn!(endpoint = me, "left the fleet with admissions open: the next sweep takes them back");
            }
        }
    }
}

/// Says the endpoint is alive (on its own, so a slow take-back never delays
/// it), retries take-backs and drops settled rows, until the store is dropped.
pub(super) async fn housekeeping(inner: Weak<Inner>) {
    futures::join!(beats(inner.clone()), chores(inner));
}

async fn beats(inner: Weak<Inner>) {
    let every = match inner.upgrade() {
        Some(i) => (i.config.lease / 4).max(Duration::from_millis(50)),
        None => return,
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        if let Err(e) = inner.heartbeat().await {
            tracing::warn!(error = %e, "cannot reach the payment database to say this endpoint is alive");
        }
    }
}

async fn chores(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut forgot = Instant::now();
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        inner.take_backs().await;
        if forgot.elapsed() >= Duration::from_secs(1) {
            forgot = Instant::now();
            if let Err(e) = inner.forget_settled().await {
                tracing::debug!(error = %e, "could not drop settled admissions; will retry");
            }
        }
    }
}
