//! The agent record: what a brand publishes on the DHT so that users can find
//! it, check who it is, reach it and know its prices.
//!
//! A record is a CBOR array signed by the agent's identity key over its own
//! canonical bytes. Records are small (at most [`MAX_RECORD_BYTES`]), expire,
//! and a higher sequence number replaces a lower one.

use core::fmt;
use std::net::SocketAddr;

use crate::account::AccountId;
use crate::cbor::{CborError, Reader, Writer};
use crate::identity::{AgentId, KeyError, Keypair, NoiseStaticKey, PublicKey};
pub use crate::pricing::{Interface, Pricing};

/// Domain tag of the record signature.
pub const RECORD_TAG: &[u8] = b"agentwire:record:v1";
/// Record format version.
pub const RECORD_VERSION: u64 = 1;
/// Hard bound on an encoded record, in bytes.
pub const MAX_RECORD_BYTES: usize = 2048;
/// Most QUIC socket addresses in a record.
pub const MAX_QUIC_ADDRS: usize = 4;
/// Most libp2p multiaddrs in a record.
pub const MAX_P2P_ADDRS: usize = 8;
/// Most services in a record.
pub const MAX_SERVICES: usize = 8;
/// Longest service name, in bytes.
pub const MAX_SERVICE_NAME: usize = 32;
/// Longest service description, in bytes.
pub const MAX_DESCRIPTION: usize = 160;
/// Longest multiaddr text, in bytes.
pub const MAX_MULTIADDR: usize = 128;
/// Longest QUIC address text (`[v6]:port`), in bytes.
pub const MAX_SOCKET_ADDR: usize = 64;
/// A record may not claim to stay valid longer than this past `now` (7 days).
pub const MAX_RECORD_LIFETIME_SECS: u64 = 7 * 24 * 3600;
pub use crate::money::{Currency, NEAR_CURRENCY};

const FIELDS: u64 = 12;

/// One priced service a brand offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// Name users ask for: 1..=32 bytes of `[a-z0-9._/-]`.
    pub name: String,
    /// Human description, at most 160 bytes.
    pub description: String,
    /// The most one payment for this service can be (per-query: the price of
    /// a query; per-token: the ceiling of any request; metered: the request
    /// and each increment), in the currency's smallest unit.
    pub price: u128,
    /// Currency of `price`.
    pub currency: Currency,
    /// What its bodies are (text unless the record says chat).
    pub interface: Interface,
    /// How it is charged (per query unless the record says otherwise).
    pub pricing: Pricing,
}

impl Service {
    /// A text service at `price` per query.
    pub fn per_query(name: &str, description: &str, price: u128, currency: Currency) -> Service {
        Service {
            name: name.to_owned(),
            description: description.to_owned(),
            price,
            currency,
            interface: Interface::Text,
            pricing: Pricing::PerQuery,
        }
    }

    /// Whether it is written in the v1 four-element form (text, per query).
    fn is_plain(&self) -> bool {
        self.interface == Interface::Text && self.pricing == Pricing::PerQuery
    }

    /// What a request with `body` is admitted for (spec §6.2).
    pub fn admission(&self, body: &[u8]) -> Result<u128, crate::pricing::PriceError> {
        self.pricing.admission(self.price, body)
    }
}

/// Largest `max_output_tokens` or `chunks` a record may state.
const MAX_PRICING_COUNT: u64 = u32::MAX as u64;

/// Checks a service name against the record's naming rule.
pub fn valid_service_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_SERVICE_NAME
        && name.bytes().all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'/' | b'-'))
}

/// The content of an agent record (everything but the signature).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentRecord {
    /// The agent's ed25519 identity key; the agent id derives from it.
    pub identity: PublicKey,
    /// The NEAR account the agent speaks for (checked against the contract's registry).
    pub near_account: AccountId,
    /// The agent's Noise static key (lets initiators use IK).
    pub noise_static: NoiseStaticKey,
    /// QUIC endpoints for sessions.
    pub quic_addrs: Vec<SocketAddr>,
    /// libp2p multiaddrs (text form) for the DHT.
    pub p2p_addrs: Vec<String>,
    /// Services and prices.
    pub services: Vec<Service>,
    /// Account of the channel contract that payments go through.
    pub channel_contract: AccountId,
    /// Smallest channel deposit the agent accepts.
    pub min_deposit: u128,
    /// Sequence number: a higher one replaces a lower one.
    pub seq: u64,
    /// Unix time (seconds) after which the record is invalid.
    pub expires_at: u64,
}

/// A record with its signature and canonical encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedRecord {
    record: AgentRecord,
    signature: [u8; 64],
    encoded: Vec<u8>,
}

/// Why a record was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// Larger than [`MAX_RECORD_BYTES`].
    TooLarge,
    /// Not valid AgentWire CBOR.
    Cbor(CborError),
    /// A record version this implementation does not know.
    UnsupportedVersion(u64),
    /// A key in the record is invalid or weak.
    Key(KeyError),
    /// A field has an invalid value (names the field).
    InvalidField(&'static str),
    /// The signature does not verify under the record's identity key.
    BadSignature,
    /// `expires_at` is not after `now`.
    Expired,
    /// `expires_at` is further than [`MAX_RECORD_LIFETIME_SECS`] past `now`.
    TooFarInFuture,
    /// The sequence number is not above the stored record's.
    StaleSequence,
    /// The record is stored under a different agent id than its key's.
    WrongAgent,
    /// The signing key is not the record's identity key.
    WrongSigner,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::TooLarge => write!(f, "record larger than {MAX_RECORD_BYTES} bytes"),
            RecordError::Cbor(e) => write!(f, "record encoding: {e}"),
            RecordError::UnsupportedVersion(v) => write!(f, "unsupported record version {v}"),
            RecordError::Key(e) => write!(f, "record key: {e}"),
            RecordError::InvalidField(w) => write!(f, "invalid record field: {w}"),
            RecordError::BadSignature => write!(f, "record signature does not verify"),
            RecordError::Expired => write!(f, "record expired"),
            RecordError::TooFarInFuture => write!(f, "record expiry too far in the future"),
            RecordError::StaleSequence => write!(f, "record sequence not newer than the stored one"),
            RecordError::WrongAgent => write!(f, "record stored under another agent's key"),
            RecordError::WrongSigner => write!(f, "signing key is not the record's identity key"),
        }
    }
}

impl std::error::Error for RecordError {}

impl From<CborError> for RecordError {
    fn from(e: CborError) -> Self {
        RecordError::Cbor(e)
    }
}

impl AgentRecord {
    /// The agent id of the record's identity key.
    pub fn agent_id(&self) -> AgentId {
        self.identity.agent_id()
    }

    /// Finds a service by name.
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    fn check_bounds(&self) -> Result<(), RecordError> {
        if self.quic_addrs.len() > MAX_QUIC_ADDRS {
            return Err(RecordError::InvalidField("quic_addrs"));
        }
        // IPv6 scope ids and flow labels are local to one host: never published.
        if self.quic_addrs.iter().any(|a| matches!(a, SocketAddr::V6(a) if a.scope_id() != 0 || a.flowinfo() != 0)) {
            return Err(RecordError::InvalidField("quic_addr"));
        }
        if self.p2p_addrs.len() > MAX_P2P_ADDRS || self.p2p_addrs.iter().any(|a| !valid_multiaddr_text(a)) {
            return Err(RecordError::InvalidField("p2p_addrs"));
        }
        if self.services.len() > MAX_SERVICES {
            return Err(RecordError::InvalidField("services"));
        }
        for (i, s) in self.services.iter().enumerate() {
            if !valid_service_name(&s.name) || self.services[..i].iter().any(|o| o.name == s.name) {
                return Err(RecordError::InvalidField("service name"));
            }
            if s.description.len() > MAX_DESCRIPTION {
                return Err(RecordError::InvalidField("service description"));
            }
            if !s.pricing.valid(s.price, s.interface) {
                return Err(RecordError::InvalidField("service pricing"));
            }
        }
        Ok(())
    }

    /// Canonical CBOR of the first eleven fields (what is signed, after the tag).
    fn encode_unsigned(&self, w: &mut Writer, fields: u64) {
        self.encode_unsigned_with(w, fields, |w| self.encode_services(w));
    }

    /// The first eleven fields with the services array written by
    /// `services` (test fixtures write services the encoder refuses).
    pub(crate) fn encode_unsigned_with(&self, w: &mut Writer, fields: u64, services: impl FnOnce(&mut Writer)) {
        w.array(fields).u64(RECORD_VERSION).bytes(&self.identity.to_bytes()).text(self.near_account.as_str());
        w.bytes(self.noise_static.as_bytes());
        w.array(self.quic_addrs.len() as u64);
        for a in &self.quic_addrs {
            w.text(&a.to_string());
        }
        w.array(self.p2p_addrs.len() as u64);
        for a in &self.p2p_addrs {
            w.text(a);
        }
        services(w);
        w.text(self.channel_contract.as_str()).amount(self.min_deposit).u64(self.seq).u64(self.expires_at);
    }

    /// The services array, each in its one encoding (spec §6.2).
    fn encode_services(&self, w: &mut Writer) {
        w.array(self.services.len() as u64);
        for s in &self.services {
            let n = if s.is_plain() { 4 } else { 6 };
            w.array(n).text(&s.name).text(&s.description).amount(s.price).text(s.currency.as_text());
            if !s.is_plain() {
                w.u64(s.interface.code());
                match &s.pricing {
                    Pricing::PerQuery => w.array(1).u64(0),
                    Pricing::PerToken { input, output, max_output_tokens } => {
                        w.array(4).u64(1).amount(*input).amount(*output).u64(u64::from(*max_output_tokens))
                    }
                    Pricing::Metered { chunks, increment } => {
                        w.array(3).u64(2).u64(u64::from(*chunks)).amount(*increment)
                    }
                };
            }
        }
    }

    /// The bytes the identity key signs: `RECORD_TAG || cbor([fields 0..=10])`.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(RECORD_TAG);
        self.encode_unsigned(&mut w, FIELDS - 1);
        w.finish()
    }

    /// Signs the record with its identity key.
    pub fn sign(self, key: &Keypair) -> Result<SignedRecord, RecordError> {
        if key.public() != self.identity {
            return Err(RecordError::WrongSigner);
        }
        self.check_bounds()?;
        let signature = key.sign_raw(&self.signing_bytes());
        let mut w = Writer::new();
        self.encode_unsigned(&mut w, FIELDS);
        w.bytes(&signature);
        let encoded = w.finish();
        if encoded.len() > MAX_RECORD_BYTES {
            return Err(RecordError::TooLarge);
        }
        Ok(SignedRecord { record: self, signature, encoded })
    }
}

fn valid_multiaddr_text(a: &str) -> bool {
    a.len() <= MAX_MULTIADDR && a.starts_with('/') && a.bytes().all(|c| c.is_ascii_graphic())
}

impl SignedRecord {
    /// Decodes and verifies a record: size, encoding, every field, signature.
    /// Freshness depends on time and is checked by [`SignedRecord::check_fresh`].
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(RecordError::TooLarge);
        }
        let mut r = Reader::new(bytes)?;
        if r.array("record")? != FIELDS {
            return Err(RecordError::Cbor(CborError::Malformed("record field count")));
        }
        let version = r.u64("version")?;
        if version != RECORD_VERSION {
            return Err(RecordError::UnsupportedVersion(version));
        }
        let identity = PublicKey::from_bytes(&r.fixed::<32>("identity_key")?).map_err(RecordError::Key)?;
        let near_account = account(r.text(64, "near_account")?, "near_account")?;
        let noise_static = NoiseStaticKey::from_bytes(&r.fixed::<32>("noise_static")?).map_err(RecordError::Key)?;
        let n = r.array_max(MAX_QUIC_ADDRS, "quic_addrs")?;
        let mut quic_addrs = Vec::with_capacity(n);
        for _ in 0..n {
            let t = r.text(MAX_SOCKET_ADDR, "quic_addr")?;
            let addr: SocketAddr = t.parse().map_err(|_| RecordError::InvalidField("quic_addr"))?;
            // Only the canonical text form, so the encoding stays unique
            // (scope ids are refused by `check_bounds` below).
            if addr.to_string() != t {
                return Err(RecordError::InvalidField("quic_addr"));
            }
            quic_addrs.push(addr);
        }
        let n = r.array_max(MAX_P2P_ADDRS, "p2p_addrs")?;
        let mut p2p_addrs = Vec::with_capacity(n);
        for _ in 0..n {
            p2p_addrs.push(r.text(MAX_MULTIADDR, "p2p_addr")?.to_owned());
        }
        let n = r.array_max(MAX_SERVICES, "services")?;
        let mut services = Vec::with_capacity(n);
        for _ in 0..n {
            services.push(decode_service(&mut r)?);
        }
        let channel_contract = account(r.text(64, "channel_contract")?, "channel_contract")?;
        let min_deposit = r.amount("min_deposit")?;
        let seq = r.u64("seq")?;
        let expires_at = r.u64("expires_at")?;
        let signature = r.fixed::<64>("signature")?;
        r.finish()?;
        let record = AgentRecord {
            identity,
            near_account,
            noise_static,
            quic_addrs,
            p2p_addrs,
            services,
            channel_contract,
            min_deposit,
            seq,
            expires_at,
        };
        record.check_bounds()?;
        identity.verify_raw(&record.signing_bytes(), &signature).map_err(|_| RecordError::BadSignature)?;
        Ok(SignedRecord { record, signature, encoded: bytes.to_vec() })
    }

    /// Refuses a record that has expired or claims too long a life at `now` (unix seconds).
    pub fn check_fresh(&self, now: u64) -> Result<(), RecordError> {
        if self.record.expires_at <= now {
            return Err(RecordError::Expired);
        }
        if self.record.expires_at - now > MAX_RECORD_LIFETIME_SECS {
            return Err(RecordError::TooFarInFuture);
        }
        Ok(())
    }

    /// Full validation a DHT node runs before storing `self` under `key_agent`,
    /// replacing `existing` if any: fresh, stored under its own id, newer sequence.
    pub fn validate_for_store(
        &self,
        key_agent: &AgentId,
        existing: Option<&SignedRecord>,
        now: u64,
    ) -> Result<(), RecordError> {
        if &self.record.agent_id() != key_agent {
            return Err(RecordError::WrongAgent);
        }
        self.check_fresh(now)?;
        if let Some(old) = existing {
            if old.record.identity == self.record.identity && self.record.seq <= old.record.seq {
                return Err(RecordError::StaleSequence);
            }
        }
        Ok(())
    }

    /// The verified content.
    pub fn record(&self) -> &AgentRecord {
        &self.record
    }

    /// The identity signature.
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }

    /// The canonical encoding (what goes into the DHT).
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }
}

/// One service: the v1 four-element form, or six elements with the
/// interface and the pricing (spec §6.2).
fn decode_service(r: &mut Reader<'_>) -> Result<Service, RecordError> {
    let fields = r.array("service")?;
    if fields != 4 && fields != 6 {
        return Err(RecordError::Cbor(CborError::Malformed("service")));
    }
    let name = r.text(MAX_SERVICE_NAME, "service name")?.to_owned();
    let description = r.text(MAX_DESCRIPTION, "service description")?.to_owned();
    let price = r.amount("service price")?;
    let currency = Currency::parse(r.text(64, "currency")?).map_err(|_| RecordError::InvalidField("currency"))?;
    let mut service = Service::per_query(&name, &description, price, currency);
    if fields == 4 {
        return Ok(service);
    }
    let bad = RecordError::InvalidField("service pricing");
    service.interface =
        Interface::from_code(r.u64("service interface")?).ok_or(RecordError::InvalidField("service interface"))?;
    let count = |v: u64| u32::try_from(v).ok().filter(|_| v <= MAX_PRICING_COUNT);
    let parts = r.array("service pricing")?;
    // An empty array has no kind: reading one would read past it.
    if parts == 0 {
        return Err(bad);
    }
    service.pricing = match (r.u64("pricing kind")?, parts) {
        (0, 1) => Pricing::PerQuery,
        (1, 4) => {
            let input = r.amount("pricing input")?;
            let output = r.amount("pricing output")?;
            let max_output_tokens = count(r.u64("max_output_tokens")?).ok_or(bad.clone())?;
            Pricing::PerToken { input, output, max_output_tokens }
        }
        (2, 3) => {
            let chunks = count(r.u64("pricing chunks")?).ok_or(bad.clone())?;
            Pricing::Metered { chunks, increment: r.amount("pricing increment")? }
        }
        _ => return Err(bad),
    };
    // The defaults have one encoding: the four-element form.
    if service.is_plain() {
        return Err(RecordError::InvalidField("service"));
    }
    Ok(service)
}

fn account(s: &str, field: &'static str) -> Result<AccountId, RecordError> {
    AccountId::new(s).map_err(|_| RecordError::InvalidField(field))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::NoiseStaticKeypair;

    pub(crate) fn sample(seq: u64) -> (Keypair, AgentRecord) {
        let key = Keypair::from_seed(&[7; 32]);
        let record = AgentRecord {
            identity: key.public(),
            near_account: AccountId::new("brand.near").unwrap(),
            noise_static: NoiseStaticKeypair::from_secret([8; 32]).public(),
            quic_addrs: vec!["127.0.0.1:4433".parse().unwrap()],
            p2p_addrs: vec!["/ip4/127.0.0.1/udp/4001/quic-v1".into()],
            services: vec![Service::per_query("chat", "Ask the brand", 1_000_000_000_000_000_000_000, Currency::Near)],
            channel_contract: AccountId::new("channels.near").unwrap(),
            min_deposit: 10u128.pow(24),
            seq,
            expires_at: 10_000,
        };
        (key, record)
    }

    #[test]
    fn roundtrip_and_verify() {
        let (key, rec) = sample(1);
        let signed = rec.clone().sign(&key).unwrap();
        let back = SignedRecord::decode(signed.encoded()).unwrap();
        assert_eq!(back.record(), &rec);
        assert!(back.check_fresh(9_999).is_ok());
        assert!(signed.encoded().len() < 1024);
    }

    #[test]
    fn refuses_forged_expired_oversized_and_stale() {
        let (key, rec) = sample(5);
        let signed = rec.clone().sign(&key).unwrap();
        let mut forged = signed.encoded().to_vec();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert_eq!(SignedRecord::decode(&forged), Err(RecordError::BadSignature));
        assert_eq!(signed.check_fresh(10_000), Err(RecordError::Expired));
        let mut far = rec.clone();
        far.expires_at = 10_000 + MAX_RECORD_LIFETIME_SECS + 1;
        assert_eq!(far.sign(&key).unwrap().check_fresh(10_000), Err(RecordError::TooFarInFuture));
        assert_eq!(SignedRecord::decode(&vec![0u8; MAX_RECORD_BYTES + 1]), Err(RecordError::TooLarge));
        let older = sample(4).1.sign(&key).unwrap();
        let id = rec.agent_id();
        assert_eq!(older.validate_for_store(&id, Some(&signed), 9_000), Err(RecordError::StaleSequence));
        assert_eq!(signed.validate_for_store(&id, Some(&signed), 9_000), Err(RecordError::StaleSequence));
        assert!(signed.validate_for_store(&id, Some(&older), 9_000).is_ok());
        let other = Keypair::from_seed(&[9; 32]).public().agent_id();
        assert_eq!(signed.validate_for_store(&other, None, 9_000), Err(RecordError::WrongAgent));
    }

    #[test]
    fn services_state_their_interface_and_pricing_and_v1_services_read_as_text_per_query() {
        let (key, mut rec) = sample(1);
        let v1 = rec.clone().sign(&key).unwrap();
        rec.services.push(Service {
            interface: Interface::Chat,
            pricing: Pricing::PerToken { input: 10, output: 30, max_output_tokens: 256 },
            ..Service::per_query("model", "A model", 30 * 256 + 10 * 4096, Currency::Near)
        });
        rec.services.push(Service {
            pricing: Pricing::Metered { chunks: 3, increment: 5 },
            ..Service::per_query("story", "Words", 20, Currency::Near)
        });
        rec.services.push(Service { interface: Interface::Chat, ..Service::per_query("flat", "", 9, Currency::Near) });
        let signed = rec.clone().sign(&key).unwrap();
        let back = SignedRecord::decode(signed.encoded()).unwrap();
        assert_eq!(back.record(), &rec);
        // The first service is still the v1 four-element array.
        assert_eq!(SignedRecord::decode(v1.encoded()).unwrap().record().services[0].pricing, Pricing::PerQuery);
        // A price that does not cover the cap's output is refused.
        let (key, mut bad) = sample(1);
        bad.services[0] = Service {
            interface: Interface::Chat,
            pricing: Pricing::PerToken { input: 1, output: 2, max_output_tokens: 10 },
            ..Service::per_query("m", "", 19, Currency::Near)
        };
        assert_eq!(bad.sign(&key), Err(RecordError::InvalidField("service pricing")));
    }

    #[test]
    fn services_encode_as_the_spec_writes_them_and_an_empty_pricing_array_is_refused() {
        use crate::testing::{identity, priced_brand_record, record_with_raw_services};
        let brand = identity("brand");
        let rec = priced_brand_record(&brand, 1, 10_000);
        // Each service written by hand per spec §6.2: six elements unless text and per query.
        let raw: Vec<Vec<u8>> = rec
            .services
            .iter()
            .map(|s| {
                let mut w = Writer::new();
                let plain = s.interface == Interface::Text && s.pricing == Pricing::PerQuery;
                w.array(if plain { 4 } else { 6 }).text(&s.name).text(&s.description).amount(s.price);
                w.text(s.currency.as_text());
                if !plain {
                    w.u64(s.interface.code());
                    match s.pricing {
                        Pricing::PerQuery => w.array(1).u64(0),
                        Pricing::PerToken { input, output, max_output_tokens } => {
                            w.array(4).u64(1).amount(input).amount(output).u64(max_output_tokens.into())
                        }
                        Pricing::Metered { chunks, increment } => {
                            w.array(3).u64(2).u64(chunks.into()).amount(increment)
                        }
                    };
                }
                w.finish()
            })
            .collect();
        let signed = rec.clone().sign(&brand.identity).unwrap();
        assert_eq!(record_with_raw_services(&rec, &raw, &brand.identity), signed.encoded());
        assert_eq!(SignedRecord::decode(signed.encoded()).unwrap().record(), &rec);
        // `[]` has no kind: refused as a pricing, not read past its end.
        let mut empty = Writer::new();
        empty.array(6).text("m").text("").amount(5).text("NEAR").u64(1).array(0);
        let bytes = record_with_raw_services(&rec, &[empty.finish()], &brand.identity);
        assert_eq!(SignedRecord::decode(&bytes), Err(RecordError::InvalidField("service pricing")));
    }

    #[test]
    fn refuses_wrong_signer_and_bad_fields() {
        let (_, rec) = sample(1);
        assert_eq!(rec.clone().sign(&Keypair::from_seed(&[1; 32])), Err(RecordError::WrongSigner));
        let (key, mut rec2) = sample(1);
        rec2.services[0].name = "Bad Name".into();
        assert_eq!(rec2.sign(&key), Err(RecordError::InvalidField("service name")));
        // IPv6 scope ids are host-local: never in a record.
        let (key, mut rec3) = sample(1);
        rec3.quic_addrs = vec!["[fe80::1%2]:4433".parse().unwrap()];
        assert_eq!(rec3.sign(&key), Err(RecordError::InvalidField("quic_addr")));
    }
}
