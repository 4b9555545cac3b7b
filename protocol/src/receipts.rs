//! Receipts that cover a batch of answers (spec §8.7): the payee signs one
//! Merkle root over many answers' leaves instead of one receipt per answer,
//! so a paid request costs no signature on either side; each answer stays
//! provable alone, offline, by its leaf, its inclusion path and the signed
//! root ([`ReceiptProof`]).
//!
//! - [`leaf_hash`], [`merkle_root`], [`inclusion_path`]: the tree (RFC 6962
//!   shape, domain-separated leaves and nodes, SHA-256).
//! - [`ReceiptBatch`]: the signed message (kind 11) a payee sends on a
//!   unidirectional stream: the channel, a sequence number, the entries and
//!   the signature over the root.
//! - [`ReceiptBatcher`]: the payee's side as a sans-IO machine: leaves in,
//!   signed batches out when 64 leaves are pending or 5 ms have passed.
//! - [`ReceiptWaiter`]: the payer's side: answers waiting for their receipt,
//!   checked against the batch (one signature verification per batch).

use std::collections::{BTreeMap, HashMap, VecDeque};

use borsh::BorshSerialize;
use sha2::{Digest, Sha256};

use crate::cbor::{CborError, Reader, Writer};
use crate::identity::{Keypair, PublicKey};
use crate::ledger::ChannelRef;
use crate::payment::PaymentError;

/// Domain tag of a batch root's signed bytes.
pub const ROOT_DOMAIN: [u8; 20] = *b"agentwire:rootsig:v1";
/// Most entries in one batch.
pub const MAX_BATCH: usize = 256;

/// One answer in a batch: the request it answers and what it was charged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchEntry {
    /// The request's correlation id on the connection.
    pub id: u64,
    /// SHA-256 of the Request as received.
    pub request_hash: [u8; 32],
    /// SHA-256 of the answer's body or chunk data.
    pub response_hash: [u8; 32],
    /// The channel's charged total including this answer (as a receipt's).
    pub cumulative: u128,
}

/// `SHA-256(0x00 || request_hash || response_hash || LE128(cumulative))`.
pub fn leaf_hash(e: &BatchEntry) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(e.request_hash);
    h.update(e.response_hash);
    h.update(e.cumulative.to_le_bytes());
    h.finalize().into()
}

fn node(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two below `n` (n ≥ 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// Every level of a Merkle tree over a batch's leaves, leaves first: the
/// root and each inclusion path are read off it, so a batch of n answers
/// costs about 2n hashes in all rather than about 2n per answer's proof.
/// The shape is RFC 6962 §2.1's (split at the largest power of two below n),
/// which is the same tree as pairing each level's nodes left to right and
/// carrying an odd last node up unchanged.
#[derive(Clone, Debug)]
pub struct MerkleTree {
    levels: Vec<Vec<[u8; 32]>>,
}

impl MerkleTree {
    /// The tree over `leaves`; `None` for none.
    pub fn new(leaves: Vec<[u8; 32]>) -> Option<MerkleTree> {
        if leaves.is_empty() {
            return None;
        }
        let mut levels = vec![leaves];
        while let Some(level) = levels.last().filter(|l| l.len() > 1) {
            let up = level
                .chunks(2)
                .map(|pair| pair.iter().copied().reduce(|left, right| node(&left, &right)).unwrap_or_default())
                .collect();
            levels.push(up);
        }
        Some(MerkleTree { levels })
    }

    /// The root.
    pub fn root(&self) -> [u8; 32] {
        self.levels.last().and_then(|l| l.first()).copied().unwrap_or_default()
    }

    /// The inclusion path of leaf `index` (siblings from the leaf up); a node
    /// carried up unchanged has no sibling at that level.
    pub fn path(&self, index: usize) -> Option<Vec<[u8; 32]>> {
        if index >= self.levels.first()?.len() {
            return None;
        }
        let mut path = Vec::with_capacity(self.levels.len());
        let mut i = index;
        for level in &self.levels[..self.levels.len() - 1] {
            if let Some(sibling) = level.get(i ^ 1) {
                path.push(*sibling);
            }
            i /= 2;
        }
        Some(path)
    }
}

/// The Merkle root of `leaves` (RFC 6962 §2.1 shape); `None` for none.
pub fn merkle_root(leaves: &[[u8; 32]]) -> Option<[u8; 32]> {
    MerkleTree::new(leaves.to_vec()).map(|t| t.root())
}

/// The inclusion path of leaf `index` (siblings from the leaf up).
pub fn inclusion_path(leaves: &[[u8; 32]], index: usize) -> Option<Vec<[u8; 32]>> {
    MerkleTree::new(leaves.to_vec())?.path(index)
}

/// The root from a leaf, its index among `count` leaves and its path.
pub fn root_from_path(leaf: [u8; 32], index: usize, count: usize, path: &[[u8; 32]]) -> Option<[u8; 32]> {
    if index >= count {
        return None;
    }
    // Rebuild the splits top-down to know each sibling's side, then fold bottom-up.
    let mut sides = Vec::new();
    let (mut lo, mut hi, mut i) = (0usize, count, index);
    while hi - lo > 1 {
        let k = split(hi - lo);
        if i < k {
            sides.push(false); // sibling on the right
            hi = lo + k;
        } else {
            sides.push(true); // sibling on the left
            lo += k;
            i -= k;
        }
    }
    if sides.len() != path.len() {
        return None;
    }
    let mut acc = leaf;
    for (sibling, left) in path.iter().zip(sides.iter().rev()) {
        acc = if *left { node(sibling, &acc) } else { node(&acc, sibling) };
    }
    Some(acc)
}

#[derive(BorshSerialize)]
struct RootSigningBody<'a> {
    domain: [u8; 20],
    contract: &'a str,
    channel_id: u64,
    epoch: u64,
    seq: u64,
    count: u32,
    root: [u8; 32],
}

/// The bytes a payee signs for a batch: Borsh of `(domain, contract,
/// channel_id, epoch, seq, count, root)`.
pub fn root_signing_bytes(channel: &ChannelRef, seq: u64, count: u32, root: &[u8; 32]) -> Vec<u8> {
    let body = RootSigningBody {
        domain: ROOT_DOMAIN,
        contract: channel.contract.as_str(),
        channel_id: channel.channel_id,
        epoch: channel.epoch,
        seq,
        count,
        root: *root,
    };
    let mut out = Vec::with_capacity(140);
    let _ = body.serialize(&mut out);
    out
}

/// A signed batch of receipts (message kind 11).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptBatch {
    /// The channel that paid for every entry.
    pub channel: ChannelRef,
    /// The batch's number among the payee's batches on this connection and channel, from 0.
    pub seq: u64,
    /// The answers, in leaf order (1..=256).
    pub entries: Vec<BatchEntry>,
    /// The payee's identity signature over the root.
    pub signature: [u8; 64],
}

impl ReceiptBatch {
    /// Signs `entries` (1..=256 of them) as batch `seq` of `channel`.
    pub fn sign(channel: ChannelRef, seq: u64, entries: Vec<BatchEntry>, key: &Keypair) -> Option<ReceiptBatch> {
        if entries.is_empty() || entries.len() > MAX_BATCH {
            return None;
        }
        let root = MerkleTree::new(entries.iter().map(leaf_hash).collect())?.root();
        let signature = key.sign_raw(&root_signing_bytes(&channel, seq, entries.len() as u32, &root));
        Some(ReceiptBatch { channel, seq, entries, signature })
    }

    /// The Merkle tree over the entries.
    pub fn tree(&self) -> Option<MerkleTree> {
        MerkleTree::new(self.entries.iter().map(leaf_hash).collect())
    }

    /// The Merkle root over the entries.
    pub fn root(&self) -> Option<[u8; 32]> {
        self.tree().map(|t| t.root())
    }

    /// Verifies the signature over the root under the payee's identity key (strict).
    pub fn verify(&self, payee: &PublicKey) -> Result<(), PaymentError> {
        self.verify_tree(payee).map(|_| ())
    }

    /// Verifies the signature and returns the tree, for reading the proofs off it.
    pub fn verify_tree(&self, payee: &PublicKey) -> Result<MerkleTree, PaymentError> {
        let tree = self.tree().ok_or(PaymentError::BadSignature)?;
        let bytes = root_signing_bytes(&self.channel, self.seq, self.entries.len() as u32, &tree.root());
        payee.verify_raw(&bytes, &self.signature).map_err(|_| PaymentError::BadSignature)?;
        Ok(tree)
    }

    /// The proof that entry `index` is in this batch, for keeping offline.
    pub fn proof(&self, index: usize) -> Option<ReceiptProof> {
        self.proof_in(&self.tree()?, index)
    }

    /// [`proof`](Self::proof) with the batch's tree already built.
    pub fn proof_in(&self, tree: &MerkleTree, index: usize) -> Option<ReceiptProof> {
        Some(ReceiptProof {
            channel: self.channel.clone(),
            seq: self.seq,
            count: self.entries.len() as u32,
            index: index as u32,
            entry: self.entries.get(index)?.clone(),
            path: tree.path(index)?,
            signature: self.signature,
        })
    }

    /// CBOR fields after the envelope: `contract, channel_id, epoch, seq, [[id, request_hash, response_hash, cumulative]*], signature`.
    pub fn encode_fields(&self, w: &mut Writer) {
        w.text(self.channel.contract.as_str()).u64(self.channel.channel_id).u64(self.channel.epoch).u64(self.seq);
        w.array(self.entries.len() as u64);
        for e in &self.entries {
            w.array(4).u64(e.id).bytes(&e.request_hash).bytes(&e.response_hash).amount(e.cumulative);
        }
        w.bytes(&self.signature);
    }

    /// Reads the fields written by [`ReceiptBatch::encode_fields`].
    pub fn decode_fields(r: &mut Reader<'_>) -> Result<ReceiptBatch, CborError> {
        let contract = crate::account::AccountId::new(r.text(64, "batch contract")?)
            .map_err(|_| CborError::InvalidValue("batch contract"))?;
        let channel_id = r.u64("batch channel_id")?;
        let epoch = r.u64("batch epoch")?;
        let seq = r.u64("batch seq")?;
        let n = r.array("batch entries")?;
        if n == 0 || n > MAX_BATCH as u64 {
            return Err(CborError::InvalidValue("batch entries"));
        }
        let mut entries = Vec::with_capacity(n as usize);
        for _ in 0..n {
            r.array_of(4, "batch entry")?;
            let id = r.u64("entry id")?;
            let request_hash = r.fixed::<32>("entry request_hash")?;
            let response_hash = r.fixed::<32>("entry response_hash")?;
            let cumulative = r.amount("entry cumulative")?;
            entries.push(BatchEntry { id, request_hash, response_hash, cumulative });
        }
        let signature = r.fixed::<64>("batch signature")?;
        Ok(ReceiptBatch { channel: ChannelRef { contract, channel_id, epoch }, seq, entries, signature })
    }
}

/// One answer's receipt out of a batch: verifiable alone, offline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptProof {
    /// The channel.
    pub channel: ChannelRef,
    /// The batch's sequence number.
    pub seq: u64,
    /// Leaves in the batch.
    pub count: u32,
    /// This answer's leaf index.
    pub index: u32,
    /// The answer's entry.
    pub entry: BatchEntry,
    /// Siblings from the leaf up to the root.
    pub path: Vec<[u8; 32]>,
    /// The payee's signature over the root.
    pub signature: [u8; 64],
}

impl ReceiptProof {
    /// Recomputes the root from the leaf and its path and checks the payee's signature.
    pub fn verify(&self, payee: &PublicKey) -> Result<(), PaymentError> {
        let root = root_from_path(leaf_hash(&self.entry), self.index as usize, self.count as usize, &self.path)
            .ok_or(PaymentError::BadSignature)?;
        let bytes = root_signing_bytes(&self.channel, self.seq, self.count, &root);
        payee.verify_raw(&bytes, &self.signature).map_err(|_| PaymentError::BadSignature)
    }
}

/// The payee's batching of receipts on one connection, sans-IO: leaves are
/// added as answers leave; a channel's batch is signed and handed out once it
/// holds `max_leaves` or its oldest leaf is `max_delay_ms` old (or on
/// request: [`flush`](Self::flush)).
pub struct ReceiptBatcher {
    max_leaves: usize,
    max_delay_ms: u64,
    open: BTreeMap<ChannelKey, Open>,
    next_seq: HashMap<ChannelKey, u64>,
    ready: VecDeque<(ChannelRef, u64, Vec<BatchEntry>)>,
}

type ChannelKey = (String, u64, u64);

fn key_of(c: &ChannelRef) -> ChannelKey {
    (c.contract.as_str().to_owned(), c.channel_id, c.epoch)
}

struct Open {
    channel: ChannelRef,
    entries: Vec<BatchEntry>,
    since_ms: u64,
}

impl ReceiptBatcher {
    /// Batches of at most `max_leaves` (1..=256), at most `max_delay_ms` old.
    pub fn new(max_leaves: usize, max_delay_ms: u64) -> ReceiptBatcher {
        ReceiptBatcher {
            max_leaves: max_leaves.clamp(1, MAX_BATCH),
            max_delay_ms,
            open: BTreeMap::new(),
            next_seq: HashMap::new(),
            ready: VecDeque::new(),
        }
    }

    /// An answer on `channel` left at `now_ms`.
    pub fn add(&mut self, channel: &ChannelRef, entry: BatchEntry, now_ms: u64) {
        let key = key_of(channel);
        let open = self.open.entry(key.clone()).or_insert_with(|| Open {
            channel: channel.clone(),
            entries: Vec::new(),
            since_ms: now_ms,
        });
        open.entries.push(entry);
        if open.entries.len() >= self.max_leaves {
            self.close(&key);
        }
    }

    /// Closes `channel`'s open batch now (a payer asked for its receipts).
    pub fn flush(&mut self, channel: &ChannelRef) {
        self.close(&key_of(channel));
    }

    /// Closes every open batch (the connection ends).
    pub fn flush_all(&mut self) {
        let keys: Vec<ChannelKey> = self.open.keys().cloned().collect();
        for k in keys {
            self.close(&k);
        }
    }

    fn close(&mut self, key: &ChannelKey) {
        if let Some(open) = self.open.remove(key) {
            let seq = self.next_seq.entry(key.clone()).or_insert(0);
            self.ready.push_back((open.channel, *seq, open.entries));
            *seq += 1;
        }
    }

    /// When the oldest open batch is due.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.open.values().map(|o| o.since_ms.saturating_add(self.max_delay_ms)).min()
    }

    /// Closes the batches that are due at `now_ms`.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let due: Vec<ChannelKey> = self
            .open
            .iter()
            .filter(|(_, o)| o.since_ms.saturating_add(self.max_delay_ms) <= now_ms)
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            self.close(&k);
        }
    }

    /// The next closed batch, signed with `key`.
    pub fn poll_batch(&mut self, key: &Keypair) -> Option<ReceiptBatch> {
        let (channel, seq, entries) = self.ready.pop_front()?;
        ReceiptBatch::sign(channel, seq, entries, key)
    }

    /// Leaves not yet in a closed batch.
    pub fn pending(&self) -> usize {
        self.open.values().map(|o| o.entries.len()).sum()
    }
}

/// An answer waiting for its batch receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Expected {
    channel: ChannelRef,
    request_hash: [u8; 32],
    response_hash: [u8; 32],
    deadline_ms: u64,
}

/// What a batch settled for one answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settled {
    /// The request's id.
    pub id: u64,
    /// The charged total the batch states with it.
    pub cumulative: u128,
    /// Its receipt, provable offline.
    pub proof: ReceiptProof,
}

/// Why a batch is refused (the payer keeps it as evidence and stops using the payee).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchError {
    /// The signature over the root does not verify.
    BadSignature,
    /// An entry names a request we did not send, or one already settled (a replay).
    Unexpected { id: u64 },
    /// An entry's hashes are not those of our request and the answer we received.
    Mismatch { id: u64 },
    /// An entry's channel is not the one that paid.
    WrongChannel { id: u64 },
    /// A batch number seen before on this channel (a replay).
    Replayed { seq: u64 },
}

/// The payer's answers waiting for their batch receipts on one connection,
/// sans-IO. A batch may overtake the answers it covers (they travel on other
/// streams), so entries for answers not yet expected are kept, bounded, until
/// their answer arrives.
#[derive(Default)]
pub struct ReceiptWaiter {
    expected: HashMap<u64, Expected>,
    /// Verified entries whose answer has not arrived yet: (channel, entry, proof).
    early: HashMap<u64, (ChannelRef, BatchEntry, ReceiptProof, u64)>,
    seen: HashMap<ChannelKey, Vec<u64>>,
}

/// Entries kept for answers that have not arrived (a bound: more are refused).
pub const MAX_EARLY: usize = 1024;

impl ReceiptWaiter {
    /// A waiter with nothing expected.
    pub fn new() -> ReceiptWaiter {
        ReceiptWaiter::default()
    }

    /// Request `id` on `channel` was answered; its receipt is due by
    /// `deadline_ms`. If its batch came first, it is settled now.
    pub fn expect(
        &mut self,
        id: u64,
        channel: ChannelRef,
        request_hash: [u8; 32],
        response_hash: [u8; 32],
        deadline_ms: u64,
    ) -> Option<Result<Settled, BatchError>> {
        if let Some((ch, entry, proof, _)) = self.early.remove(&id) {
            if ch != channel {
                return Some(Err(BatchError::WrongChannel { id }));
            }
            if entry.request_hash != request_hash || entry.response_hash != response_hash {
                return Some(Err(BatchError::Mismatch { id }));
            }
            return Some(Ok(Settled { id, cumulative: entry.cumulative, proof }));
        }
        self.expected.insert(id, Expected { channel, request_hash, response_hash, deadline_ms });
        None
    }

    /// Checks `batch` (one signature verification) and settles the entries
    /// whose answers arrived; the others wait for them. Each result is for
    /// one entry; an error that concerns the whole batch comes alone.
    pub fn handle_batch(
        &mut self,
        batch: &ReceiptBatch,
        payee: &PublicKey,
        now_ms: u64,
    ) -> Result<Vec<Result<Settled, BatchError>>, BatchError> {
        let key = key_of(&batch.channel);
        if self.seen.get(&key).is_some_and(|s| s.contains(&batch.seq)) {
            return Err(BatchError::Replayed { seq: batch.seq });
        }
        let tree = batch.verify_tree(payee).map_err(|_| BatchError::BadSignature)?;
        let seen = self.seen.entry(key).or_default();
        seen.push(batch.seq);
        if seen.len() > 4096 {
            seen.drain(..2048);
        }
        let mut out = Vec::with_capacity(batch.entries.len());
        for (i, e) in batch.entries.iter().enumerate() {
            let Some(proof) = batch.proof_in(&tree, i) else { continue };
            match self.expected.remove(&e.id) {
                Some(x) if x.channel != batch.channel => out.push(Err(BatchError::WrongChannel { id: e.id })),
                Some(x) if x.request_hash != e.request_hash || x.response_hash != e.response_hash => {
                    out.push(Err(BatchError::Mismatch { id: e.id }))
                }
                Some(_) => out.push(Ok(Settled { id: e.id, cumulative: e.cumulative, proof })),
                None if self.early.len() < MAX_EARLY && !self.early.contains_key(&e.id) => {
                    self.early.insert(e.id, (batch.channel.clone(), e.clone(), proof, now_ms));
                }
                None => out.push(Err(BatchError::Unexpected { id: e.id })),
            }
        }
        Ok(out)
    }

    /// The answers whose receipt is overdue at `now_ms` (withheld): removed
    /// and returned. Early entries older than `keep_early_ms` are dropped.
    pub fn overdue(&mut self, now_ms: u64, keep_early_ms: u64) -> Vec<u64> {
        let late: Vec<u64> = self.expected.iter().filter(|(_, x)| x.deadline_ms <= now_ms).map(|(id, _)| *id).collect();
        for id in &late {
            self.expected.remove(id);
        }
        self.early.retain(|_, (_, _, _, at)| at.saturating_add(keep_early_ms) > now_ms);
        late
    }

    /// The earliest receipt deadline.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.expected.values().map(|x| x.deadline_ms).min()
    }

    /// Answers waiting.
    pub fn len(&self) -> usize {
        self.expected.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.expected.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{account, identity};

    fn entry(i: u64) -> BatchEntry {
        BatchEntry {
            id: i,
            request_hash: [i as u8; 32],
            response_hash: [(i + 1) as u8; 32],
            cumulative: u128::from(i) * 10,
        }
    }

    fn channel() -> ChannelRef {
        ChannelRef { contract: account("pay.near"), channel_id: 1, epoch: 7 }
    }

    /// RFC 6962 §2.1 as written (the recursive split), the reference for the tree.
    fn reference_root(leaves: &[[u8; 32]]) -> [u8; 32] {
        match leaves.len() {
            1 => leaves[0],
            n => {
                let k = split(n);
                node(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
            }
        }
    }

    #[test]
    fn the_tree_is_rfc_6962s_and_every_path_leads_to_its_root() {
        for n in (1..=70).chain([127, 128, 129, 255, 256]) {
            let leaves: Vec<[u8; 32]> = (0..n).map(|i: usize| Sha256::digest(i.to_le_bytes()).into()).collect();
            let tree = MerkleTree::new(leaves.clone()).unwrap();
            assert_eq!(tree.root(), reference_root(&leaves), "{n} leaves");
            // `root_from_path` follows RFC 6962's splits on its own.
            for (i, leaf) in leaves.iter().enumerate() {
                assert_eq!(root_from_path(*leaf, i, n, &tree.path(i).unwrap()), Some(tree.root()), "leaf {i} of {n}");
            }
            assert_eq!(tree.path(n), None);
        }
    }

    #[test]
    fn every_leaf_of_every_size_proves_the_root() {
        for n in 1..=40usize {
            let leaves: Vec<[u8; 32]> = (0..n as u64).map(|i| leaf_hash(&entry(i))).collect();
            let root = merkle_root(&leaves).unwrap();
            for i in 0..n {
                let path = inclusion_path(&leaves, i).unwrap();
                assert_eq!(root_from_path(leaves[i], i, n, &path), Some(root), "n={n} i={i}");
                // Another index or a tampered sibling does not prove it.
                if n > 1 {
                    assert_ne!(root_from_path(leaves[i], (i + 1) % n, n, &path), Some(root));
                }
                if let Some(first) = path.first() {
                    let mut bad = path.clone();
                    bad[0] = [first[0] ^ 1; 32];
                    assert_ne!(root_from_path(leaves[i], i, n, &bad), Some(root));
                }
            }
        }
        assert_eq!(merkle_root(&[]), None);
    }

    #[test]
    fn the_batcher_closes_on_size_and_time_and_the_waiter_checks_once() {
        let brand = identity("brand");
        let mut b = ReceiptBatcher::new(3, 5);
        let mut w = ReceiptWaiter::new();
        for i in 0..4 {
            assert_eq!(w.expect(i, channel(), entry(i).request_hash, entry(i).response_hash, 1_000), None);
            b.add(&channel(), entry(i), 10);
        }
        let first = b.poll_batch(&brand.identity).expect("three leaves close a batch");
        assert_eq!((first.seq, first.entries.len()), (0, 3));
        assert_eq!(b.poll_batch(&brand.identity), None);
        assert_eq!(b.poll_timeout(), Some(15));
        b.handle_timeout(15);
        let second = b.poll_batch(&brand.identity).expect("5 ms closes the rest");
        assert_eq!((second.seq, second.entries.len()), (1, 1));
        let key = brand.identity.public();
        let settled: Vec<Settled> = w.handle_batch(&first, &key, 0).unwrap().into_iter().map(Result::unwrap).collect();
        assert_eq!(settled.iter().map(|s| s.id).collect::<Vec<_>>(), vec![0, 1, 2]);
        for s in &settled {
            s.proof.verify(&key).unwrap();
        }
        // A replay is detected, and so is a forged batch.
        assert_eq!(w.handle_batch(&first, &key, 0), Err(BatchError::Replayed { seq: 0 }));
        let mut forged = second.clone();
        forged.entries[0].cumulative += 1;
        assert_eq!(w.handle_batch(&forged, &key, 0), Err(BatchError::BadSignature));
        // A withheld receipt is overdue.
        assert_eq!(w.overdue(999, 100), Vec::<u64>::new());
        assert_eq!(w.handle_batch(&second, &key, 0).unwrap().len(), 1);
        assert_eq!(w.expect(9, channel(), [9; 32], [9; 32], 1_000), None);
        assert_eq!(w.overdue(1_000, 100), vec![9]);
        // A batch that overtakes its answer waits for it.
        let early = ReceiptBatch::sign(channel(), 7, vec![entry(20)], &brand.identity).unwrap();
        assert!(w.handle_batch(&early, &key, 0).unwrap().is_empty());
        let got = w.expect(20, channel(), entry(20).request_hash, entry(20).response_hash, 1_000);
        assert_eq!(got.map(|r| r.map(|s| s.cumulative)), Some(Ok(200)));
    }

    #[test]
    fn a_batch_round_trips_its_cbor() {
        let brand = identity("brand");
        let batch = ReceiptBatch::sign(channel(), 3, (0..5).map(entry).collect(), &brand.identity).unwrap();
        let mut w = Writer::new();
        w.array(6);
        batch.encode_fields(&mut w);
        let bytes = w.finish();
        let mut r = Reader::new(&bytes).unwrap();
        r.array("batch").unwrap();
        assert_eq!(ReceiptBatch::decode_fields(&mut r).unwrap(), batch);
    }
}
