use super::*;
use crate::session::{
    initiate_ik, initiate_xx, respond, HandshakeConfig, HandshakeError, ResponderStep, HANDSHAKE_HEADER_LEN,
};
use crate::testing::{self, handshake_pair};

fn read_all(r: &mut StreamReader, mut input: &[u8]) -> Result<Vec<StreamEvent>, SessionError> {
    let mut out = Vec::new();
    loop {
        match r.poll(&mut input)? {
            Some(ev) => out.push(ev),
            None if input.is_empty() => return Ok(out),
            None => {}
        }
    }
}

#[test]
fn ik_and_xx_agree_on_keys_and_identities() {
    for ik in [true, false] {
        let (mut u, mut b) = handshake_pair(ik, 100);
        assert_eq!(u.session.handshake_hash(), b.session.handshake_hash());
        assert_eq!(u.peer.agent_id, testing::identity("brand").agent_id());
        assert_eq!(b.peer.agent_id, testing::identity("user").agent_id());
        let (mut uw, mut ur) = u.session.open_stream(0, 100).unwrap();
        let (mut bw, mut br) = b.session.open_stream(0, 100).unwrap();
        let mut wire = Vec::new();
        uw.write_message(b"question", true, &mut wire).unwrap();
        assert_eq!(
            read_all(&mut br, &wire).unwrap(),
            vec![StreamEvent::Message(b"question".to_vec()), StreamEvent::End]
        );
        let mut back = Vec::new();
        bw.write_message(b"answer", false, &mut back).unwrap();
        bw.finish(&mut back).unwrap();
        assert_eq!(read_all(&mut ur, &back).unwrap(), vec![StreamEvent::Message(b"answer".to_vec()), StreamEvent::End]);
        assert!(ur.at_eof().is_ok());
    }
}

#[test]
fn sealed_len_is_exactly_what_write_message_appends() {
    let (mut u, _) = handshake_pair(true, 0);
    let (mut w, _) = u.session.open_stream(0, 0).unwrap();
    let max = SessionLimits::default().max_frame_payload;
    for len in [1, 2, 200, max - 1, max, max + 1, 3 * max, 3 * max + 7, 100_000] {
        let mut out = Vec::new();
        w.write_message(&vec![1u8; len], false, &mut out).unwrap();
        assert_eq!(out.len(), w.sealed_len(len), "message of {len} bytes");
    }
}

#[test]
fn a_message_split_anywhere_reads_the_same() {
    // The reader keeps a message's first frame as its buffer and decrypts
    // in place: arrival in any pieces must give the same events.
    let want = vec![StreamEvent::Message(b"first".to_vec()), StreamEvent::Message(vec![9u8; 40_000]), StreamEvent::End];
    for cut in (0..40_100).step_by(397).chain([1, 2, 10, 11, 12, 37, 38, 39]) {
        let (mut u, mut b) = handshake_pair(true, 0);
        let (mut w, _) = u.session.open_stream(0, 0).unwrap();
        let (_, mut r) = b.session.open_stream(0, 0).unwrap();
        let mut wire = Vec::new();
        w.write_message(b"first", false, &mut wire).unwrap();
        w.write_message(&[9u8; 40_000], true, &mut wire).unwrap();
        let cut = cut.min(wire.len());
        let mut got = read_all(&mut r, &wire[..cut]).unwrap();
        got.extend(read_all(&mut r, &wire[cut..]).unwrap());
        assert_eq!(got, want, "split at {cut}");
    }
}

#[test]
fn large_messages_span_frames_and_rekey_is_symmetric() {
    let (mut u, mut b) = handshake_pair(true, 0);
    let (mut w, _) = u.session.open_stream(0, 0).unwrap();
    let (_, mut r) = b.session.open_stream(0, 0).unwrap();
    let big = vec![7u8; 100_000];
    let mut wire = Vec::new();
    w.write_message(&big, false, &mut wire).unwrap();
    assert_eq!(read_all(&mut r, &wire).unwrap(), vec![StreamEvent::Message(big)]);

    // Across two key rotations, both directions stay in step.
    let (mut u, mut b) = handshake_pair(false, 0);
    let (mut w, _) = u.session.open_stream(4, 0).unwrap();
    let (_, mut r) = b.session.open_stream(4, 0).unwrap();
    let mut wire = Vec::new();
    for i in 0..(2 * REKEY_INTERVAL + 3) {
        wire.clear();
        w.write_message(&i.to_be_bytes(), false, &mut wire).unwrap();
        assert_eq!(read_all(&mut r, &wire).unwrap(), vec![StreamEvent::Message(i.to_be_bytes().to_vec())]);
    }
}

#[test]
fn no_plaintext_on_the_wire() {
    let (mut u, _) = handshake_pair(true, 0);
    let (mut w, _) = u.session.open_stream(0, 0).unwrap();
    let mut wire = Vec::new();
    w.write_message(b"very secret question", false, &mut wire).unwrap();
    assert!(!wire.windows(6).any(|s| s == b"secret"));
}

#[test]
fn replayed_reordered_cross_stream_and_tampered_frames_are_refused() {
    let (mut u, mut b) = handshake_pair(true, 0);
    let (mut w0, _) = u.session.open_stream(0, 0).unwrap();
    let (mut w4, _) = u.session.open_stream(4, 0).unwrap();
    let mut f = Vec::new();
    for m in [b"a", b"b", b"c"] {
        let mut one = Vec::new();
        w0.write_message(m, false, &mut one).unwrap();
        f.push(one);
    }
    let mut other = Vec::new();
    w4.write_message(b"z", false, &mut other).unwrap();

    let (_, mut r) = b.session.open_stream(0, 0).unwrap();
    read_all(&mut r, &f[0]).unwrap();
    assert_eq!(read_all(&mut r, &f[0]), Err(SessionError::Replayed { expected: 1, got: 0 }));

    let (mut b2u, mut b2) = handshake_pair(true, 0);
    let (mut w0, _) = b2u.session.open_stream(0, 0).unwrap();
    let mut frames = Vec::new();
    for m in [b"a", b"b"] {
        let mut one = Vec::new();
        w0.write_message(m, false, &mut one).unwrap();
        frames.push(one);
    }
    let (_, mut r) = b2.session.open_stream(0, 0).unwrap();
    assert_eq!(read_all(&mut r, &frames[1]), Err(SessionError::OutOfOrder { expected: 0, got: 1 }));
    assert_eq!(read_all(&mut r, &frames[0]), Err(SessionError::Poisoned));

    let (_, mut r) = b.session.open_stream(8, 0).unwrap();
    assert_eq!(read_all(&mut r, &other), Err(SessionError::WrongStream { expected: 8, got: 4 }));

    // Rewriting the cleartext stream id does not help: the header is authenticated.
    let mut forged = other.clone();
    forged[2..6].copy_from_slice(&12u32.to_be_bytes());
    let (_, mut r) = b.session.open_stream(12, 0).unwrap();
    assert_eq!(read_all(&mut r, &forged), Err(SessionError::Decrypt));

    let (mut u3, mut b3) = handshake_pair(true, 0);
    let (mut w, _) = u3.session.open_stream(0, 0).unwrap();
    let (_, mut r) = b3.session.open_stream(0, 0).unwrap();
    let mut one = Vec::new();
    w.write_message(b"x", false, &mut one).unwrap();
    one[12] ^= 1;
    assert_eq!(read_all(&mut r, &one), Err(SessionError::Decrypt));
}

#[test]
fn stream_limits_are_enforced() {
    let (mut u, _) = handshake_pair(true, 0);
    assert!(u.session.open_stream(0, 0).is_ok());
    assert!(matches!(u.session.open_stream(0, 0), Err(SessionError::StreamReused(0))));
    assert!(u.session.open_stream(8, 0).is_ok());
    assert!(u.session.open_stream(4, 0).is_ok(), "out-of-order open within the window");
    assert!(matches!(u.session.open_stream(4, 0), Err(SessionError::StreamReused(4))));
    assert!(matches!(u.session.open_stream(1 << 32, 0), Err(SessionError::StreamIdTooLarge(_))));
    assert!(u.session.open_stream(4 * 5000, 0).is_ok());
    assert!(matches!(u.session.open_stream(12, 0), Err(SessionError::StreamReused(12))), "too old");
    assert!(matches!(u.session.open_stream(4 * 6000, 3600), Err(SessionError::SessionExpired)));
    assert_eq!(u.session.headroom(3000), (600, (1 << 20) - 4));
    assert_eq!(u.session.headroom(4000).0, 0, "past its age");
    u.session.limits.max_streams = u.session.opened;
    assert_eq!(u.session.headroom(0), (3600, 0));
    assert!(matches!(u.session.open_stream(4 * 7000, 0), Err(SessionError::TooManyStreams)));
    assert_eq!(SessionError::TooManyStreams.code(), crate::wire::ErrorCode::TooManyStreams);
}

#[test]
fn oversized_truncated_and_reserved_flag_frames() {
    let (mut u, mut b) = handshake_pair(true, 0);
    let limits = SessionLimits { max_message_bytes: 10, ..SessionLimits::default() };
    b.session.limits = limits;
    let (mut w, _) = u.session.open_stream(0, 0).unwrap();
    let (_, mut r) = b.session.open_stream(0, 0).unwrap();
    let mut wire = Vec::new();
    w.write_message(&[1u8; 11], false, &mut wire).unwrap();
    assert_eq!(read_all(&mut r, &wire), Err(SessionError::MessageTooLarge));

    let (mut w, _) = u.session.open_stream(4, 0).unwrap();
    let (_, mut r) = b.session.open_stream(4, 0).unwrap();
    let mut wire = Vec::new();
    w.sealer_mut().seal(Flags::NONE, b"part", &mut wire).unwrap();
    w.sealer_mut().seal(Flags::END_STREAM, b"", &mut wire).unwrap();
    assert_eq!(read_all(&mut r, &wire), Err(SessionError::Truncated));

    let (mut w, _) = u.session.open_stream(8, 0).unwrap();
    let (_, r) = b.session.open_stream(8, 0).unwrap();
    let mut wire = Vec::new();
    w.write_message(b"m", false, &mut wire).unwrap();
    assert_eq!(r.at_eof(), Err(SessionError::Truncated));

    let (mut w, _) = u.session.open_stream(12, 0).unwrap();
    let (_, mut r) = b.session.open_stream(12, 0).unwrap();
    let mut wire = Vec::new();
    w.sealer_mut().seal(Flags(0x80), b"m", &mut wire).unwrap();
    assert_eq!(read_all(&mut r, &wire), Err(SessionError::ReservedFlags(0x80)));

    let (mut w, _) = u.session.open_stream(16, 0).unwrap();
    let (_, mut r) = b.session.open_stream(16, 0).unwrap();
    let mut wire = Vec::new();
    w.sealer_mut().seal(Flags::NONE, b"", &mut wire).unwrap();
    assert_eq!(read_all(&mut r, &wire), Err(SessionError::EmptyFrame));

    let mut s = FrameSplitter::stream(MAX_CIPHERTEXT);
    assert!(matches!(s.next_frame(&mut &[0u8, 3, 0, 0][..]), Err(FrameError::TooShort { .. })));
}

fn cfg<'a>(id: &'a crate::identity::LocalIdentity, binding: &'a [u8; 32], caps: &'a [String]) -> HandshakeConfig<'a> {
    HandshakeConfig { local: id, capabilities: caps, channel_binding: binding, limits: SessionLimits::default() }
}

#[test]
fn handshake_with_wrong_static_key_or_binding_fails() {
    let user = testing::identity("user");
    let brand = testing::identity("brand");
    let impostor = testing::identity("impostor");
    let caps: Vec<String> = vec![];
    let b1 = [1u8; 32];
    let b2 = [2u8; 32];
    // IK to a responder whose static key is not the one in the record.
    let (_, m1) =
        initiate_ik(&cfg(&user, &b1, &caps), &brand.noise.public(), brand.identity.public(), &mut testing::rng("a"))
            .unwrap();
    assert!(matches!(
        respond(&cfg(&impostor, &b1, &caps), &m1[2..], 0, &mut testing::rng("b")),
        Err(HandshakeError::Noise)
    ));
    // Different channel bindings (a relayed or man-in-the-middle QUIC connection).
    assert!(matches!(
        respond(&cfg(&brand, &b2, &caps), &m1[2..], 0, &mut testing::rng("b")),
        Err(HandshakeError::Noise)
    ));
    // XX pinned to the brand, answered by an impostor with a valid identity proof of its own.
    let (init, m1) =
        initiate_xx(&cfg(&user, &b1, &caps), Some(brand.identity.public()), &mut testing::rng("a")).unwrap();
    let ResponderStep::AwaitFinal { reply, .. } =
        respond(&cfg(&impostor, &b1, &caps), &m1[2..], 0, &mut testing::rng("b")).unwrap()
    else {
        panic!("XX must await the final message")
    };
    assert!(matches!(
        init.read_response(&reply[HANDSHAKE_HEADER_LEN..], 0),
        Err(HandshakeError::UnexpectedPeer { .. })
    ));
}

#[test]
fn handshake_refuses_weak_ephemerals_unknown_patterns_and_payload_in_xx1() {
    let brand = testing::identity("brand");
    let caps: Vec<String> = vec![];
    let b = [1u8; 32];
    let mut msg = vec![1u8];
    msg.extend_from_slice(&[0u8; 96]);
    assert!(matches!(
        respond(&cfg(&brand, &b, &caps), &msg, 0, &mut testing::rng("b")),
        Err(HandshakeError::BadKey(_))
    ));
    assert!(matches!(
        respond(&cfg(&brand, &b, &caps), &[9, 1, 2], 0, &mut testing::rng("b")),
        Err(HandshakeError::UnknownPattern(9))
    ));
    assert!(matches!(respond(&cfg(&brand, &b, &caps), &[], 0, &mut testing::rng("b")), Err(HandshakeError::BadLength)));
    let mut xx1 = vec![2u8];
    xx1.extend_from_slice(crate::identity::NoiseStaticKeypair::from_secret([3; 32]).public().as_bytes());
    xx1.extend_from_slice(b"smuggled");
    assert!(matches!(
        respond(&cfg(&brand, &b, &caps), &xx1, 0, &mut testing::rng("b")),
        Err(HandshakeError::UnexpectedPayload)
    ));
}

#[test]
fn payload_versions_and_capability_limits() {
    use crate::cbor::Writer;
    use crate::session::{HandshakePayload, PayloadError};
    let mut w = Writer::new();
    w.array(5).u64(2).bytes(&[0; 32]).bytes(&[0; 64]).array(0).u64(0);
    assert_eq!(HandshakePayload::decode(&w.finish()), Err(PayloadError::UnsupportedVersion(2)));
    let err = HandshakeError::Payload(PayloadError::UnsupportedVersion(2));
    assert_eq!(err.code(), crate::wire::ErrorCode::UnsupportedVersion);
    let user = testing::identity("user");
    let brand = testing::identity("brand");
    let too_many: Vec<String> = (0..17).map(|i| format!("c{i}")).collect();
    let b = [1u8; 32];
    assert!(matches!(
        initiate_ik(&cfg(&user, &b, &too_many), &brand.noise.public(), brand.identity.public(), &mut testing::rng("a")),
        Err(HandshakeError::InvalidCapabilities)
    ));
    let too_long = vec!["x".repeat(33)];
    assert!(matches!(
        initiate_xx(&cfg(&user, &b, &too_long), None, &mut testing::rng("a")),
        Err(HandshakeError::InvalidCapabilities)
    ));
}

#[test]
fn forged_identity_proof_is_refused() {
    // A user whose static-key signature is made by another identity.
    let mut user = testing::identity("user");
    user.static_signature = testing::identity("other").static_signature;
    let brand = testing::identity("brand");
    let caps: Vec<String> = vec![];
    let b = [1u8; 32];
    let (_, m1) =
        initiate_ik(&cfg(&user, &b, &caps), &brand.noise.public(), brand.identity.public(), &mut testing::rng("a"))
            .unwrap();
    assert!(matches!(
        respond(&cfg(&brand, &b, &caps), &m1[2..], 0, &mut testing::rng("b")),
        Err(HandshakeError::IdentityProof)
    ));
}
