//! The record protocol (spec §7.4): a provider is asked for its own record
//! with one request, instead of a walk to the peers that hold copies.
//!
//! A lookup's second step used to be one Kademlia walk per candidate (up to
//! 32 for a service), each dialling a dozen peers; on a busy DHT those walks
//! were most of its work. The agent a provider entry names is the freshest
//! source of its record, and the provider walk has just told us where it
//! listens. What it answers is checked like any record from the DHT (the
//! key names the agent we asked); a peer that does not speak the protocol,
//! does not answer in time, or answers nothing valid leaves the lookup to
//! walk for the record as before.

use std::io;

use agentwire_protocol::dht::record_key;
use agentwire_protocol::identity::AgentId;
use agentwire_protocol::record::{SignedRecord, MAX_RECORD_BYTES};
use async_trait::async_trait;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::kad::Record;
use libp2p::request_response::{self, OutboundFailure, OutboundRequestId};
use libp2p::{Multiaddr, StreamProtocol};
use tokio::sync::oneshot;

use super::node::Node;
use super::store::check;
use crate::quic::now_secs;

/// The record protocol's name.
pub const RECORD_PROTOCOL: &str = "/agentwire/record/1.0.0";

/// Record requests one connection serves at once (libp2p's default is 100;
/// a request costs its answer's copy, at most 2048 bytes).
const MAX_CONCURRENT_REQUESTS: usize = 16;

/// Why a provider's own answer was not used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NoDirectAnswer {
    #[error("the peer has no record to give")]
    Empty,
    #[error("its answer is not a valid record of that agent: {0}")]
    Invalid(String),
    #[error("the request failed: {0}")]
    Failed(String),
}

/// The answer to a record request: the asker learns it, or why not.
pub(crate) type DirectReply = oneshot::Sender<Result<SignedRecord, NoDirectAnswer>>;

/// The wire form: an empty request; the answer is the encoded signed
/// record (§6.7), at most 2048 bytes, or nothing, then the stream's end.
#[derive(Clone, Default)]
pub(crate) struct RecordCodec;

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

#[async_trait]
impl request_response::Codec for RecordCodec {
    type Protocol = StreamProtocol;
    type Request = ();
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<()>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut byte = [0u8; 1];
        match io.read(&mut byte).await? {
            0 => Ok(()),
            _ => Err(invalid("a record request carries no bytes")),
        }
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut answer = Vec::new();
        io.take(MAX_RECORD_BYTES as u64 + 1).read_to_end(&mut answer).await?;
        if answer.len() > MAX_RECORD_BYTES {
            return Err(invalid("a record answer over 2048 bytes"));
        }
        Ok(answer)
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, _: &mut T, (): ()) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        Ok(())
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, answer: Vec<u8>) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&answer).await
    }
}

/// The behaviour every node runs: it answers with its own record and asks
/// providers for theirs; `timeout` bounds a request once its stream is open
/// (the dial has its own bound).
pub(crate) fn behaviour(timeout: std::time::Duration) -> request_response::Behaviour<RecordCodec> {
    let config = request_response::Config::default()
        .with_request_timeout(timeout)
        .with_max_concurrent_streams(MAX_CONCURRENT_REQUESTS);
    request_response::Behaviour::new(
        [(StreamProtocol::new(RECORD_PROTOCOL), request_response::ProtocolSupport::Full)],
        config,
    )
}

/// The answer to a record request, checked as a record stored under
/// `agent`'s key: valid, current, and signed by that agent.
pub(crate) fn checked(agent: &AgentId, answer: Vec<u8>) -> Result<SignedRecord, NoDirectAnswer> {
    if answer.is_empty() {
        return Err(NoDirectAnswer::Empty);
    }
    let record = Record::new(record_key(agent), answer);
    check(&record, None, now_secs()).map_err(|why| NoDirectAnswer::Invalid(why.to_string()))
}

impl Node {
    /// Asks `agent` (at `addrs`, or where the swarm knows it) for its record.
    pub(crate) fn ask_directly(&mut self, agent: AgentId, addrs: Vec<Multiaddr>, reply: DirectReply) {
        let Ok(peer) = libp2p::PeerId::from_bytes(agent.as_bytes()) else {
            let _ = reply.send(Err(NoDirectAnswer::Failed("the agent id is not a peer id".into())));
            return;
        };
        let id = self.swarm.behaviour_mut().record.send_request_with_addresses(&peer, (), addrs);
        self.direct.insert(id, (agent, reply));
    }

    /// A record-protocol event: a peer asks for our record, or a peer we
    /// asked answered or failed.
    pub(crate) fn direct_event(&mut self, event: request_response::Event<(), Vec<u8>>) {
        match event {
            request_response::Event::Message { message, .. } => match message {
                request_response::Message::Request { channel, .. } => {
                    let now = now_secs();
                    let answer = self
                        .published
                        .as_ref()
                        .filter(|r| r.check_fresh(now).is_ok())
                        .map(|r| r.encoded().to_vec())
                        .unwrap_or_default();
                    let _ = self.swarm.behaviour_mut().record.send_response(channel, answer);
                }
                request_response::Message::Response { request_id, response } => {
                    if let Some((agent, reply)) = self.direct.remove(&request_id) {
                        let _ = reply.send(checked(&agent, response));
                    }
                }
            },
            request_response::Event::OutboundFailure { request_id, error, .. } => self.direct_failed(request_id, error),
            request_response::Event::InboundFailure { .. } | request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn direct_failed(&mut self, id: OutboundRequestId, error: OutboundFailure) {
        if let Some((_, reply)) = self.direct.remove(&id) {
            let _ = reply.send(Err(NoDirectAnswer::Failed(error.to_string())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentwire_protocol::account::AccountId;
    use agentwire_protocol::identity::LocalIdentity;
    use agentwire_protocol::record::{AgentRecord, Currency, Service};
    use futures::executor::block_on;
    use request_response::Codec;

    fn record(id: &LocalIdentity) -> SignedRecord {
        AgentRecord {
            identity: id.identity.public(),
            near_account: AccountId::new("direct.near").unwrap(),
            noise_static: id.noise.public(),
            quic_addrs: vec!["127.0.0.1:9".parse().unwrap()],
            p2p_addrs: vec![],
            services: vec![Service::per_query("chat", "", 0, Currency::Near)],
            channel_contract: AccountId::new("channels.devnet").unwrap(),
            min_deposit: 0,
            seq: 1,
            expires_at: now_secs() + 600,
        }
        .sign(&id.identity)
        .unwrap()
    }

    #[test]
    fn only_the_asked_agents_valid_record_is_taken() {
        let (a, b) = (LocalIdentity::generate(&mut rand_core::OsRng), LocalIdentity::generate(&mut rand_core::OsRng));
        let ra = record(&a);
        assert_eq!(checked(&a.agent_id(), ra.encoded().to_vec()).unwrap().encoded(), ra.encoded());
        assert!(matches!(checked(&a.agent_id(), Vec::new()), Err(NoDirectAnswer::Empty)));
        // Another agent's valid record is not an answer for `a`.
        assert!(matches!(checked(&a.agent_id(), record(&b).encoded().to_vec()), Err(NoDirectAnswer::Invalid(_))));
        let mut forged = ra.encoded().to_vec();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert!(matches!(checked(&a.agent_id(), forged), Err(NoDirectAnswer::Invalid(_))));
        assert!(matches!(checked(&a.agent_id(), vec![0xff; 40]), Err(NoDirectAnswer::Invalid(_))));
    }

    #[test]
    fn answers_are_bounded_and_requests_are_empty() {
        let protocol = StreamProtocol::new(RECORD_PROTOCOL);
        let read =
            |bytes: Vec<u8>| block_on(RecordCodec.read_response(&protocol, &mut futures::io::Cursor::new(bytes)));
        assert_eq!(read(vec![7; MAX_RECORD_BYTES]).unwrap().len(), MAX_RECORD_BYTES);
        assert!(read(vec![7; MAX_RECORD_BYTES + 1]).is_err(), "an answer over 2048 bytes is refused");
        assert!(read(vec![]).unwrap().is_empty());
        let request =
            |bytes: Vec<u8>| block_on(RecordCodec.read_request(&protocol, &mut futures::io::Cursor::new(bytes)));
        assert!(request(vec![]).is_ok());
        assert!(request(vec![0]).is_err(), "a request with bytes in it is refused");
    }
}
