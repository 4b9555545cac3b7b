//! An in-process walk through one paid query: a brand publishes a signed
//! record, a user verifies it, both run a Noise IK handshake bound to a shared
//! channel binding, the user sends an encrypted request with a voucher, the
//! brand admits and persists the voucher before answering with a signed
//! receipt. Every step uses the real protocol code; only the network and the
//! chain are left out (they arrive with the agent runtime and the contract).

use std::time::{SystemTime, UNIX_EPOCH};

use agentwire_protocol::account::AccountId;
use agentwire_protocol::identity::{Keypair, LocalIdentity};
use agentwire_protocol::ledger::{ChannelRef, PayPolicy, PayeeLedger, PayerLedger};
use agentwire_protocol::payment::{sha256, Receipt, SignedReceipt};
use agentwire_protocol::record::{AgentRecord, Currency, Service, SignedRecord};
use agentwire_protocol::session::{
    initiate_ik, respond, HandshakeConfig, ResponderStep, SessionLimits, StreamEvent, StreamReader,
    HANDSHAKE_HEADER_LEN,
};
use agentwire_protocol::wire::{Message, Request, Response};
use rand_core::{OsRng, RngCore};
use serde_json::json;

use crate::steps::{raw, Steps};

type Error = Box<dyn std::error::Error>;

const YOCTO_PER_NEAR: u128 = 1_000_000_000_000_000_000_000_000;

/// An amount in NEAR with six decimals (truncated), for display.
pub(crate) fn near(yocto: u128) -> String {
    format!("{}.{:06} NEAR", yocto / YOCTO_PER_NEAR, (yocto % YOCTO_PER_NEAR) / 1_000_000_000_000_000_000)
}

fn read_one(reader: &mut StreamReader, mut wire: &[u8]) -> Result<Vec<u8>, Error> {
    loop {
        match reader.poll(&mut wire)? {
            Some(StreamEvent::Message(m)) => return Ok(m),
            Some(StreamEvent::End) => return Err("stream ended before a message".into()),
            None if wire.is_empty() => return Err("incomplete message".into()),
            None => {}
        }
    }
}

/// Runs the walk-through and prints each step (as JSON lines under `--json`).
pub fn run(json: bool) -> Result<(), Error> {
    let out = Steps::new(json);
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let mut rng = OsRng;
    let brand = LocalIdentity::generate(&mut rng);
    let user = LocalIdentity::generate(&mut rng);
    let payer_key = Keypair::generate(&mut rng);
    let contract = AccountId::new("channels.agentwire.local")?;
    let price = YOCTO_PER_NEAR / 100;

    out.say(
        "identities",
        format!("1. Identities\n   brand agent  {}\n   user agent   {}", brand.agent_id(), user.agent_id()),
        json!({"brand": brand.agent_id().to_string(), "user": user.agent_id().to_string()}),
    );

    let record = AgentRecord {
        identity: brand.identity.public(),
        near_account: AccountId::new("brand.near")?,
        noise_static: brand.noise.public(),
        quic_addrs: vec!["127.0.0.1:4433".parse()?],
        p2p_addrs: vec!["/ip4/127.0.0.1/udp/4001/quic-v1".into()],
        services: vec![Service::per_query("chat", "Ask the brand", price, Currency::Near)],
        channel_contract: contract.clone(),
        min_deposit: YOCTO_PER_NEAR,
        seq: 1,
        expires_at: now + 3600,
    }
    .sign(&brand.identity)?;
    let published = record.encoded().to_vec();
    let found = SignedRecord::decode(&published)?;
    found.check_fresh(now)?;
    let service = found.record().service("chat").ok_or("record has no chat service")?;
    out.say(
        "record",
        format!("2. Record: {} bytes, signature verified; `chat` costs {}", published.len(), near(service.price)),
        json!({"bytes": published.len(), "record": hex::encode(&published), "verified": true,
               "service": "chat", "price": raw(service.price)}),
    );

    let mut binding = [0u8; 32];
    rng.fill_bytes(&mut binding);
    let caps = vec!["pay/1".to_string()];
    let limits = SessionLimits::default();
    let ucfg = HandshakeConfig { local: &user, capabilities: &caps, channel_binding: &binding, limits };
    let bcfg = HandshakeConfig { local: &brand, capabilities: &caps, channel_binding: &binding, limits };
    let (init, m1) = initiate_ik(&ucfg, &found.record().noise_static, found.record().identity, &mut rng)?;
    let ResponderStep::Done { established: mut at_brand, reply } =
        respond(&bcfg, &m1[HANDSHAKE_HEADER_LEN..], now, &mut rng)?
    else {
        return Err("IK handshake did not complete in one round trip".into());
    };
    let mut at_user = init.read_response(&reply[HANDSHAKE_HEADER_LEN..], now)?;
    out.say(
        "handshake",
        format!(
            "3. Noise IK handshake: {} + {} bytes; brand sees {}, user reached {}",
            m1.len(),
            reply.len(),
            at_brand.peer.agent_id,
            at_user.peer.agent_id
        ),
        json!({"pattern": "IK", "initiator_bytes": m1.len(), "responder_bytes": reply.len(),
               "brand_sees": at_brand.peer.agent_id.to_string(), "user_reached": at_user.peer.agent_id.to_string()}),
    );

    let chan = ChannelRef { contract: contract.clone(), channel_id: 1, epoch: 1 };
    let deposit = YOCTO_PER_NEAR;
    let mut payer = PayerLedger::new(chan.clone(), deposit);
    let mut payee = PayeeLedger::new(chan.clone(), payer_key.public(), deposit);
    out.say(
        "channel",
        format!("4. Channel {} on {}: deposit {}", chan.channel_id, chan.contract, near(deposit)),
        json!({"channel_id": chan.channel_id, "contract": chan.contract.as_str(), "deposit": raw(deposit)}),
    );

    for (i, question) in ["What do you sell?", "Do you ship to Lisbon?"].iter().enumerate() {
        let stream_id = (i as u64) * 4;
        let (mut uw, mut ur) = at_user.session.open_stream(stream_id, now)?;
        let (mut bw, mut br) = at_brand.session.open_stream(stream_id, now)?;
        let payment = payer.pay(&payer_key, service.price, PayPolicy::default())?;
        let voucher = payment.voucher.clone();
        let request = Message::Request(Request {
            id: i as u64 + 1,
            service: "chat".into(),
            body: question.as_bytes().to_vec(),
            payment: Some(voucher),
        });
        let request_bytes = request.encode();
        let mut wire = Vec::new();
        uw.write_message(&request_bytes, true, &mut wire)?;

        let received = read_one(&mut br, &wire)?;
        let Message::Request(req) = Message::decode(&received)? else { return Err("expected a request".into()) };
        let voucher = req.payment.as_ref().ok_or("unpaid request")?;
        let admission = payee.admit(voucher, service.price)?;
        if let Some(snapshot) = payee.snapshot() {
            // The runtime fsyncs here; the walk-through keeps it in memory.
            payee.mark_durable(&snapshot);
        }
        if !payee.can_serve(&admission) {
            return Err("voucher not durable".into());
        }
        let required = admission.required;
        // Answered in full: charged the price admitted.
        let _ = payee.settle(admission, service.price);
        let answer = format!("Answer to {:?}", String::from_utf8_lossy(&req.body));
        let receipt = SignedReceipt::sign(
            Receipt {
                contract: chan.contract.clone(),
                channel_id: chan.channel_id,
                epoch: chan.epoch,
                request_hash: sha256(&received),
                response_hash: sha256(answer.as_bytes()),
                cumulative: required,
            },
            &brand.identity,
        );
        let response = Message::Response(Response { id: req.id, body: answer.into_bytes(), receipt: Some(receipt) });
        let mut back = Vec::new();
        bw.write_message(&response.encode(), true, &mut back)?;

        let Message::Response(resp) = Message::decode(&read_one(&mut ur, &back)?)? else {
            return Err("expected a response".into());
        };
        let receipt = resp.receipt.ok_or("missing receipt")?;
        receipt.verify(&at_user.peer.identity)?;
        if receipt.receipt.request_hash != sha256(&request_bytes) || receipt.receipt.response_hash != sha256(&resp.body)
        {
            return Err("receipt does not match the exchange".into());
        }
        payer.answered(&payment, Some(receipt.receipt.cumulative));
        let answer = String::from_utf8_lossy(&resp.body);
        out.say(
            "query",
            format!(
                "5.{} Query {:?} -> {:?}\n     {} ciphertext bytes out, {} back; paid total {}, receipt verified",
                i + 1,
                question,
                answer,
                wire.len(),
                back.len(),
                near(receipt.receipt.cumulative)
            ),
            json!({"query": question, "answer": answer, "ciphertext_out": wire.len(), "ciphertext_back": back.len(),
                   "cumulative": raw(receipt.receipt.cumulative), "receipt_verified": true}),
        );
    }
    out.say(
        "claimable",
        format!(
            "6. Brand can claim {} of {}; user has {} left",
            near(payee.unclaimed()),
            near(deposit),
            near(payer.spendable())
        ),
        json!({"claimable": raw(payee.unclaimed()), "deposit": raw(deposit), "spendable": raw(payer.spendable())}),
    );
    Ok(())
}
