use super::*;
use crate::testing::sample_messages;

#[test]
fn every_kind_roundtrips_canonically() {
    for (name, m) in sample_messages() {
        let bytes = m.encode();
        let back = Message::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(back, m, "{name}");
        assert_eq!(back.encode(), bytes, "{name}");
    }
}

#[test]
fn every_truncation_is_an_error() {
    for (name, m) in sample_messages() {
        let bytes = m.encode();
        for cut in 0..bytes.len() {
            assert!(Message::decode(&bytes[..cut]).is_err(), "{name} cut at {cut}");
        }
    }
}

#[test]
fn version_kind_and_shape_errors() {
    let mut w = Writer::new();
    w.array(3).u64(2).u64(1).u64(0);
    assert_eq!(Message::decode(&w.finish()), Err(WireError::UnsupportedVersion(2)));
    let mut w = Writer::new();
    w.array(2).u64(1).u64(99);
    assert_eq!(Message::decode(&w.finish()), Err(WireError::UnknownKind(99)));
    let mut w = Writer::new();
    w.array(3).u64(1).u64(1).u64(0);
    assert_eq!(Message::decode(&w.finish()), Err(WireError::Cbor(CborError::Malformed("message field count"))));
    let mut deep = vec![0x82, 0x01];
    deep.extend(std::iter::repeat_n(0x81, 50));
    deep.push(0);
    assert_eq!(Message::decode(&deep), Err(WireError::Cbor(CborError::TooDeep)));
    assert_eq!(Message::decode(&vec![0u8; MAX_MESSAGE_BYTES + 1]), Err(WireError::TooLarge));
    assert_eq!(WireError::TooLarge.code(), ErrorCode::TooLarge);
}

#[test]
fn invalid_field_values() {
    let mut w = Writer::new();
    // A Request decodes whatever name it asks for (the responder answers an
    // unknown one with code 3 on its stream); a OneWay's topic must be valid.
    w.array(6).u64(1).u64(1).u64(1).text("Bad Service").bytes(b"").null();
    let Ok(Message::Request(r)) = Message::decode(&w.finish()) else { panic!("an invalid name still decodes") };
    assert_eq!(r.service, "Bad Service");
    let mut w = Writer::new();
    w.array(6).u64(1).u64(1).u64(1).text(&"x".repeat(MAX_REQUESTED_SERVICE + 1)).bytes(b"").null();
    assert!(matches!(Message::decode(&w.finish()), Err(WireError::Cbor(CborError::TooLong(_)))));
    let mut w = Writer::new();
    w.array(4).u64(1).u64(5).text("Bad Topic").bytes(b"");
    assert_eq!(Message::decode(&w.finish()), Err(WireError::Cbor(CborError::InvalidValue("topic"))));
    let mut w = Writer::new();
    w.array(5).u64(1).u64(6).null().u64(70_000).text("x");
    assert_eq!(Message::decode(&w.finish()), Err(WireError::Cbor(CborError::InvalidValue("code"))));
    let mut w = Writer::new();
    w.array(7).u64(1).u64(10).text("c.near").u64(1).u64(1).u64(9).amount(0);
    assert_eq!(Message::decode(&w.finish()), Err(WireError::Cbor(CborError::InvalidValue("event"))));
}

#[test]
fn long_error_text_is_truncated_on_a_char_boundary() {
    let m = Message::Error(ErrorMessage { id: None, code: ErrorCode::Internal, message: "é".repeat(200) });
    let Message::Error(back) = Message::decode(&m.encode()).unwrap() else { panic!() };
    assert!(back.message.len() <= MAX_ERROR_TEXT);
}
