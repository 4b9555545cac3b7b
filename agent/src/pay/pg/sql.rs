//! Every statement the shared money store runs. A channel instance is the
//! key `(contract, channel_id, epoch)`; amounts, ids and epochs go in and
//! out as decimal text (`$n::text::numeric`, `col::text`).
//!
//! An admission's row in `agentwire_admissions` has a state:
//! 0 admitted (its answer has not begun to leave), 1 delivering (a streamed
//! answer's content has begun to leave), 2 settled (`charged` charged),
//! 3 forgiven. Rows in state 0 or 1 are the channel's pending admissions.

/// Admits one voucher for one price, in one statement (spec §8.3 steps 1,
/// 6–8; the binding and the signature are checked in process first): the
/// channel's row is updated only if it is not closing, the voucher is within
/// the deposit and `spent + price <= max(accepted, offered)`; the credit
/// paid ahead is used before the forgiven credit; the admission's row is
/// written with it. Nothing changes unless everything does. The endpoint
/// must be live (not swept): its row is share-locked so a sweep waits for
/// this admission, or this admission sees the sweep.
///
/// `$1` contract, `$2` channel id, `$3` epoch, `$4` offered, `$5` price,
/// `$6` signature, `$7` endpoint, `$8` sequence, `$9` state (0 or 1).
pub const ADMIT: &str = r#"
WITH me AS (
    SELECT id FROM agentwire_endpoints WHERE id = $7::bigint AND swept_at IS NULL FOR KEY SHARE
), old AS (
    SELECT accepted FROM agentwire_channels
    WHERE contract = $1::text AND channel_id = $2::text::numeric AND epoch = $3::text::numeric
      AND EXISTS (SELECT 1 FROM me)
    FOR UPDATE
), c AS (
    UPDATE agentwire_channels ch SET
        spent = ch.spent + $5::text::numeric,
        forgiven = ch.forgiven - GREATEST(0, $5::text::numeric
            - (GREATEST(ch.accepted, $4::text::numeric) - ch.spent - ch.forgiven)),
        accepted = GREATEST(ch.accepted, $4::text::numeric),
        signature = CASE WHEN $4::text::numeric > ch.accepted THEN $6::bytea ELSE ch.signature END
    FROM old
    WHERE ch.contract = $1::text AND ch.channel_id = $2::text::numeric AND ch.epoch = $3::text::numeric
      AND NOT ch.closing
      AND $4::text::numeric <= ch.deposit
      AND ch.spent + $5::text::numeric <= GREATEST(ch.accepted, $4::text::numeric)
    RETURNING ch.spent::text AS required, $4::text::numeric > old.accepted AS raised,
        ch.accepted = $4::text::numeric AS current
), a AS (
    INSERT INTO agentwire_admissions (endpoint, seq, contract, channel_id, epoch, price, state)
    SELECT $7::bigint, $8::bigint, $1::text, $2::text::numeric, $3::text::numeric, $5::text::numeric, $9::smallint
    FROM c
    RETURNING seq
)
SELECT c.required, c.raised, c.current FROM c, a
"#;

/// Settles a pending admission at `actual` (at most its price): what was
/// not charged becomes forgiven credit. No row: the admission was not
/// pending (forgiven by a sweep).
///
/// `$1` endpoint, `$2` sequence, `$3` actual.
pub const SETTLE: &str = r#"
WITH a AS (
    UPDATE agentwire_admissions SET state = 2, charged = LEAST(price, $3::text::numeric)
    WHERE endpoint = $1::bigint AND seq = $2::bigint AND state < 2
    RETURNING contract, channel_id, epoch, price - charged AS refund
), c AS (
    UPDATE agentwire_channels ch SET spent = ch.spent - a.refund, forgiven = ch.forgiven + a.refund
    FROM a
    WHERE ch.contract = a.contract AND ch.channel_id = a.channel_id AND ch.epoch = a.epoch AND a.refund > 0
    RETURNING 1
)
SELECT a.refund::text AS refund FROM a
"#;

/// A streamed answer's content begins to leave: its admission is charged
/// even if the endpoint dies (idempotent). No row: it is not pending (it was
/// taken back by a sweep).
///
/// `$1` endpoint, `$2` sequence.
pub const DELIVERING: &str = r#"
UPDATE agentwire_admissions SET state = 1
WHERE endpoint = $1::bigint AND seq = $2::bigint AND state < 2
RETURNING seq
"#;

/// Takes back, in full, an admission whose answer did not leave although
/// its admission or settlement may have committed (the connection failed
/// mid-commit): pending, its price; settled, what it was charged. Idempotent.
///
/// `$1` endpoint, `$2` sequence.
pub const FORGIVE: &str = r#"
WITH old AS (
    SELECT contract, channel_id, epoch, CASE WHEN state = 2 THEN charged ELSE price END AS refund
    FROM agentwire_admissions WHERE endpoint = $1::bigint AND seq = $2::bigint AND state < 3
    FOR UPDATE
), a AS (
    UPDATE agentwire_admissions x SET state = 3, charged = 0
    FROM old WHERE x.endpoint = $1::bigint AND x.seq = $2::bigint
    RETURNING x.seq
), c AS (
    UPDATE agentwire_channels ch SET spent = ch.spent - old.refund, forgiven = ch.forgiven + old.refund
    FROM old
    WHERE ch.contract = old.contract AND ch.channel_id = old.channel_id AND ch.epoch = old.epoch
      AND old.refund > 0
    RETURNING 1
)
SELECT count(*) AS n FROM a
"#;

/// Makes a channel checked on chain known, or refreshes what the chain
/// says of it (the deposit and claimed total only grow; a close only starts).
///
/// `$1` contract, `$2` id, `$3` epoch, `$4` payee, `$5` payer key, `$6`
/// currency, `$7` deposit, `$8` claimed, `$9` closing.
pub const LOAD: &str = r#"
INSERT INTO agentwire_channels (contract, channel_id, epoch, payee, payer_key, currency, deposit, claimed, closing)
VALUES ($1::text, $2::text::numeric, $3::text::numeric, $4::text, $5::bytea, $6::text, $7::text::numeric,
        $8::text::numeric, $9::boolean)
ON CONFLICT (contract, channel_id, epoch) DO UPDATE SET
    deposit = GREATEST(agentwire_channels.deposit, excluded.deposit),
    claimed = GREATEST(agentwire_channels.claimed, excluded.claimed),
    closing = agentwire_channels.closing OR excluded.closing
RETURNING payee, payer_key, currency, deposit::text AS deposit, accepted::text AS accepted, signature,
    spent::text AS spent, forgiven::text AS forgiven, claimed::text AS claimed
"#;

/// The key of one channel instance: `$1` contract, `$2` id, `$3` epoch.
macro_rules! key {
    () => {
        "contract = $1::text AND channel_id = $2::text::numeric AND epoch = $3::text::numeric"
    };
}

/// `$4` the deposit read on chain.
pub const TOP_UP: &str =
    concat!("UPDATE agentwire_channels SET deposit = GREATEST(deposit, $4::text::numeric) WHERE ", key!());

/// A close started.
pub const START_CLOSE: &str = concat!("UPDATE agentwire_channels SET closing = TRUE WHERE ", key!());

/// `$4` the total the chain has paid out.
pub const RECORD_CLAIM: &str =
    concat!("UPDATE agentwire_channels SET claimed = GREATEST(claimed, $4::text::numeric) WHERE ", key!());

/// The highest voucher.
pub const HIGHEST: &str =
    concat!("SELECT accepted::text AS accepted, signature FROM agentwire_channels WHERE ", key!());

/// Why an admission matched nothing; `$4` this endpoint.
pub const REFUSAL: &str = concat!(
    "SELECT closing, deposit::text AS deposit, spent::text AS spent, accepted::text AS accepted, ",
    "(SELECT swept_at IS NOT NULL FROM agentwire_endpoints WHERE id = $4::bigint) AS swept ",
    "FROM agentwire_channels WHERE ",
    key!()
);

/// Whether a close started.
pub const CLOSING: &str = concat!("SELECT closing FROM agentwire_channels WHERE ", key!());

/// Every channel of a payee through a contract with its pending total, in
/// one snapshot. `$1` payee, `$2` contract.
pub const CHANNELS: &str = r#"
SELECT ch.channel_id::text AS channel_id, ch.epoch::text AS epoch, ch.payer_key, ch.accepted::text AS accepted,
    ch.signature, ch.spent::text AS spent, ch.forgiven::text AS forgiven, ch.claimed::text AS claimed, ch.closing,
    (SELECT COALESCE(sum(a.price), 0) FROM agentwire_admissions a
     WHERE a.contract = ch.contract AND a.channel_id = ch.channel_id AND a.epoch = ch.epoch AND a.state < 2
    )::text AS pending
FROM agentwire_channels ch
WHERE ch.payee = $1::text AND ch.contract = $2::text
ORDER BY ch.channel_id
"#;

/// An endpoint joins the fleet. `$1` id, `$2` payee, `$3` agent.
pub const REGISTER: &str =
    "INSERT INTO agentwire_endpoints (id, payee, agent) VALUES ($1::bigint, $2::text, $3::text) ON CONFLICT DO NOTHING RETURNING id";

/// An endpoint says it is alive; no row: it was swept (taken for dead).
pub const HEARTBEAT: &str =
    "UPDATE agentwire_endpoints SET seen = now() WHERE id = $1::bigint AND swept_at IS NULL RETURNING id";

/// Takes or renews the claimer lease of a payee: held by `$2` until `$3`
/// milliseconds from now. A row: held, with whether it has been held for a
/// whole lease (since then every live endpoint has had time to say so).
pub const LEASE: &str = r#"
INSERT INTO agentwire_leases (payee, holder, since, expires)
VALUES ($1::text, $2::bigint, now(), now() + $3::bigint * interval '1 millisecond')
ON CONFLICT (payee) DO UPDATE SET
    holder = excluded.holder,
    since = CASE WHEN agentwire_leases.holder = excluded.holder AND agentwire_leases.expires >= now()
                 THEN agentwire_leases.since ELSE now() END,
    expires = excluded.expires
WHERE agentwire_leases.holder = excluded.holder OR agentwire_leases.expires < now()
RETURNING now() - since >= $3::bigint * interval '1 millisecond' AS settled
"#;

/// Gives the lease up. `$1` payee, `$2` holder.
pub const RELEASE: &str = "DELETE FROM agentwire_leases WHERE payee = $1::text AND holder = $2::bigint";

/// Locks the payee's endpoints not seen for `$2` milliseconds (in a
/// transaction, before [`SWEEP`]): admissions in flight on them finish first.
pub const DEAD: &str = r#"
SELECT id FROM agentwire_endpoints
WHERE payee = $1::text AND swept_at IS NULL AND seen < now() - $2::bigint * interval '1 millisecond'
FOR UPDATE
"#;

/// Takes back what dead endpoints `$1` admitted: answers that had not begun
/// to leave are forgiven (a settlement is durable before its answer leaves,
/// so none of them did); streamed answers that had begun are charged.
pub const SWEEP: &str = r#"
WITH f AS (
    UPDATE agentwire_admissions SET state = 3, charged = 0
    WHERE endpoint = ANY($1::bigint[]) AND state = 0
    RETURNING contract, channel_id, epoch, price
), g AS (
    SELECT contract, channel_id, epoch, sum(price) AS total FROM f GROUP BY contract, channel_id, epoch
), c AS (
    UPDATE agentwire_channels ch SET spent = ch.spent - g.total, forgiven = ch.forgiven + g.total
    FROM g WHERE ch.contract = g.contract AND ch.channel_id = g.channel_id AND ch.epoch = g.epoch
    RETURNING 1
), d AS (
    UPDATE agentwire_admissions SET state = 2, charged = price
    WHERE endpoint = ANY($1::bigint[]) AND state = 1
    RETURNING 1
)
UPDATE agentwire_endpoints SET swept_at = now() WHERE id = ANY($1::bigint[]) RETURNING id
"#;

/// An endpoint drops the rows of its settled and forgiven admissions
/// numbered below `$2` (none of which can still need taking back).
pub const FORGET_OWN: &str =
    "DELETE FROM agentwire_admissions WHERE endpoint = $1::bigint AND state >= 2 AND seq < $2::bigint";

/// The claimer drops endpoints swept over `$2` milliseconds ago, and their rows.
pub const FORGET_SWEPT: &str = r#"
WITH gone AS (
    SELECT id FROM agentwire_endpoints
    WHERE payee = $1::text AND swept_at < now() - $2::bigint * interval '1 millisecond'
), a AS (
    DELETE FROM agentwire_admissions WHERE endpoint IN (SELECT id FROM gone) RETURNING 1
)
SELECT count(*) AS n FROM a
"#;

/// Deletes swept endpoints that have no rows left.
pub const FORGET_ENDPOINTS: &str = r#"
DELETE FROM agentwire_endpoints e
WHERE e.payee = $1::text AND e.swept_at < now() - $2::bigint * interval '1 millisecond'
  AND NOT EXISTS (SELECT 1 FROM agentwire_admissions a WHERE a.endpoint = e.id)
"#;

/// An endpoint leaves: its row goes if nothing of it is left.
pub const LEAVE: &str = r#"
DELETE FROM agentwire_endpoints e WHERE e.id = $1::bigint
  AND NOT EXISTS (SELECT 1 FROM agentwire_admissions a WHERE a.endpoint = e.id)
RETURNING id
"#;

/// An endpoint leaves with admissions still open: marked long unseen, so
/// the next sweep takes them back.
pub const LEAVE_OPEN: &str = "UPDATE agentwire_endpoints SET seen = 'epoch' WHERE id = $1::bigint";
