//! The tables of the shared money store, created and migrated by the agent
//! at start. Migrations are numbered; `agentwire_schema` holds the number
//! applied, and a row lock on it makes endpoints that start together apply
//! each migration once.
//!
//! Amounts are `NUMERIC(39,0)` (every u128 fits; no float ever), channel ids
//! and epochs `NUMERIC(20,0)` (every u64). Rust sends and reads them as
//! decimal text, so no client-side numeric type can round them.

use deadpool_postgres::Pool;

use super::db::{db_err, DbError};

/// The migrations, in order; the schema version is how many are applied.
const MIGRATIONS: &[&str] = &[
    // 1: channels, endpoints and their admissions, the claimer lease.
    r#"
CREATE TABLE agentwire_channels (
    contract    TEXT NOT NULL,
    channel_id  NUMERIC(20,0) NOT NULL,
    epoch       NUMERIC(20,0) NOT NULL,
    payee       TEXT NOT NULL,
    payer_key   BYTEA NOT NULL,
    currency    TEXT NOT NULL,
    deposit     NUMERIC(39,0) NOT NULL,
    accepted    NUMERIC(39,0) NOT NULL DEFAULT 0,
    signature   BYTEA,
    spent       NUMERIC(39,0) NOT NULL DEFAULT 0,
    forgiven    NUMERIC(39,0) NOT NULL DEFAULT 0,
    claimed     NUMERIC(39,0) NOT NULL DEFAULT 0,
    closing     BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (contract, channel_id, epoch),
    CHECK (spent >= 0 AND forgiven >= 0 AND spent + forgiven <= accepted AND accepted <= deposit)
);
CREATE INDEX agentwire_channels_payee ON agentwire_channels (payee);
CREATE TABLE agentwire_endpoints (
    id        BIGINT PRIMARY KEY,
    payee     TEXT NOT NULL,
    agent     TEXT NOT NULL,
    started   TIMESTAMPTZ NOT NULL DEFAULT now(),
    seen      TIMESTAMPTZ NOT NULL DEFAULT now(),
    swept_at  TIMESTAMPTZ
);
CREATE TABLE agentwire_admissions (
    endpoint    BIGINT NOT NULL REFERENCES agentwire_endpoints (id),
    seq         BIGINT NOT NULL,
    contract    TEXT NOT NULL,
    channel_id  NUMERIC(20,0) NOT NULL,
    epoch       NUMERIC(20,0) NOT NULL,
    price       NUMERIC(39,0) NOT NULL,
    charged     NUMERIC(39,0) NOT NULL DEFAULT 0,
    state       SMALLINT NOT NULL,
    PRIMARY KEY (endpoint, seq)
);
CREATE INDEX agentwire_admissions_open ON agentwire_admissions (contract, channel_id, epoch) WHERE state < 2;
CREATE TABLE agentwire_leases (
    payee    TEXT PRIMARY KEY,
    holder   BIGINT NOT NULL,
    since    TIMESTAMPTZ NOT NULL,
    expires  TIMESTAMPTZ NOT NULL
);
"#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Creates or migrates the schema. Refuses a database migrated by a newer
/// agent (its tables may mean something this one does not know).
pub async fn migrate(pool: &Pool) -> Result<(), DbError> {
    let mut client = pool.get().await.map_err(|e| DbError::Unreachable(e.to_string()))?;
    // Two endpoints creating the table at once: one of them gets a
    // duplicate error; the table then exists.
    if let Err(e) = client
        .batch_execute("CREATE TABLE IF NOT EXISTS agentwire_schema (id INT PRIMARY KEY, version INT NOT NULL)")
        .await
    {
        let dup = e.code().is_some_and(|c| c.code() == "23505" || c.code() == "42P07");
        if !dup {
            return Err(db_err(e));
        }
    }
    let tx = client.transaction().await.map_err(db_err)?;
    tx.execute("INSERT INTO agentwire_schema (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING", &[])
        .await
        .map_err(db_err)?;
    let row =
        tx.query_one("SELECT version FROM agentwire_schema WHERE id = 1 FOR UPDATE", &[]).await.map_err(db_err)?;
    let version: i32 = row.try_get(0).map_err(db_err)?;
    if version > SCHEMA_VERSION {
        return Err(DbError::Refused(format!(
            "the database schema is version {version}, newer than this agent's {SCHEMA_VERSION}: upgrade the agent"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        tx.batch_execute(sql).await.map_err(db_err)?;
        tracing::info!(version = i + 1, "payment database migrated");
    }
    tx.execute("UPDATE agentwire_schema SET version = $1 WHERE id = 1", &[&SCHEMA_VERSION]).await.map_err(db_err)?;
    tx.commit().await.map_err(db_err)
}
