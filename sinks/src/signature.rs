//! Webhook signatures: `x-wa-hub-signature` = hex(HMAC-SHA256(secret, raw body)), as wa-hub's
//! sender computes it (Node `crypto.createHmac('sha256', WEBHOOK_SECRET).update(body)`).
//! The webhook receiver verifies it; the forward sink signs what it re-sends the same way, so a
//! receiver checks it exactly as it would wa-hub's.
//!
//! Verification runs on the raw request bytes, never on re-serialized JSON, and compares in
//! constant time (`hmac`'s `verify_slice`).

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Header carrying the signature. Public interface (wa-hub's name): changes only with a note
/// in the README.
pub const SIGNATURE_HEADER: &str = "x-wa-hub-signature";

/// Result of checking one request's signature header(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureCheck {
    /// The header is present once and matches.
    Valid,
    /// No header at all.
    Absent,
    /// Present but wrong: empty, not 64 hex characters, not ASCII, repeated, or a mismatch.
    Invalid,
}

impl SignatureCheck {
    /// `signature` label value for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureCheck::Valid => "valid",
            SignatureCheck::Absent => "absent",
            SignatureCheck::Invalid => "invalid",
        }
    }
}

/// Checks the values of every `x-wa-hub-signature` header of a request against `body`.
///
/// Hex is accepted in either case. Anything but exactly one well-formed, matching value is
/// [`SignatureCheck::Invalid`] (or [`SignatureCheck::Absent`] when there is none); this never
/// panics, whatever bytes the header holds.
pub fn verify<'a>(
    secret: &[u8],
    header_values: impl IntoIterator<Item = &'a [u8]>,
    body: &[u8],
) -> SignatureCheck {
    match HmacSha256::new_from_slice(secret) {
        Ok(mac) => check_with(mac, header_values, &[body]),
        Err(_) => SignatureCheck::Invalid,
    }
}

fn check_with<'a>(
    mut mac: HmacSha256,
    header_values: impl IntoIterator<Item = &'a [u8]>,
    parts: &[&[u8]],
) -> SignatureCheck {
    let mut values = header_values.into_iter();
    let Some(value) = values.next() else {
        return SignatureCheck::Absent;
    };
    if values.next().is_some() {
        return SignatureCheck::Invalid;
    }
    let mut digest = [0u8; 32];
    if value.len() != 64 || hex::decode_to_slice(value, &mut digest).is_err() {
        return SignatureCheck::Invalid;
    }
    for part in parts {
        mac.update(part);
    }
    match mac.verify_slice(&digest) {
        Ok(()) => SignatureCheck::Valid,
        Err(_) => SignatureCheck::Invalid,
    }
}

/// A verifier holding the keyed HMAC state, so each check hashes only the body (the key's
/// inner and outer pads are computed once, at start-up).
#[derive(Clone)]
pub struct Verifier {
    keyed: HmacSha256,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier(********)")
    }
}

impl Verifier {
    /// A verifier for `secret`.
    pub fn new(secret: &[u8]) -> Self {
        Self {
            keyed: HmacSha256::new_from_slice(secret).expect("HMAC takes any key length"),
        }
    }

    /// Same rules as [`verify`].
    pub fn verify<'a>(
        &self,
        header_values: impl IntoIterator<Item = &'a [u8]>,
        body: &[u8],
    ) -> SignatureCheck {
        check_with(self.keyed.clone(), header_values, &[body])
    }

    /// [`Verifier::verify`] of a message whose signed bytes are `parts` one after the other
    /// (hashed in place, never joined into one buffer).
    pub fn verify_parts<'a>(
        &self,
        header_values: impl IntoIterator<Item = &'a [u8]>,
        parts: &[&[u8]],
    ) -> SignatureCheck {
        check_with(self.keyed.clone(), header_values, parts)
    }

    /// Lower-case hex HMAC-SHA256 of `parts` one after the other, with this verifier's key:
    /// what [`Verifier::verify_parts`] accepts.
    pub fn sign_parts(&self, parts: &[&[u8]]) -> String {
        let mut mac = self.keyed.clone();
        for part in parts {
            mac.update(part);
        }
        hex::encode(mac.finalize().into_bytes())
    }
}

/// Lower-case hex HMAC-SHA256 of `body`: what a sender puts in `x-wa-hub-signature`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"wa-hub-fixture-secret";
    const BODY: &[u8] = br#"{"event":"ready","instanceId":"x","data":{}}"#;

    fn check(values: &[&[u8]]) -> SignatureCheck {
        verify(SECRET, values.iter().copied(), BODY)
    }

    #[test]
    fn parts_sign_and_verify_as_the_bytes_joined() {
        let v = Verifier::new(SECRET);
        let (head, tail) = BODY.split_at(7);
        let digest = v.sign_parts(&[head, tail]);
        assert_eq!(digest, sign(SECRET, BODY));
        let ok = v.verify_parts([digest.as_bytes()], &[head, tail]);
        assert_eq!(ok, SignatureCheck::Valid);
        let other = v.verify_parts([digest.as_bytes()], &[tail, head]);
        assert_eq!(other, SignatureCheck::Invalid);
    }

    #[test]
    fn correct_digest_is_valid_in_either_case() {
        let good = sign(SECRET, BODY);
        assert_eq!(check(&[good.as_bytes()]), SignatureCheck::Valid);
        assert_eq!(
            check(&[good.to_uppercase().as_bytes()]),
            SignatureCheck::Valid
        );
    }

    #[test]
    fn every_malformed_header_is_invalid_not_a_panic() {
        let good = sign(SECRET, BODY);
        let mut ff = good.clone().into_bytes();
        ff[10] = 0xFF;
        let sixty_five = format!("{good}0");
        let non_hex = format!("{}zz", &good[..62]);
        for bad in [
            &b""[..],
            b"0123456789",
            sixty_five.as_bytes(),
            non_hex.as_bytes(),
            &ff,
        ] {
            assert_eq!(check(&[bad]), SignatureCheck::Invalid, "{bad:?}");
        }
    }

    #[test]
    fn header_twice_is_invalid_even_when_both_match() {
        let good = sign(SECRET, BODY);
        assert_eq!(
            check(&[good.as_bytes(), good.as_bytes()]),
            SignatureCheck::Invalid
        );
    }

    #[test]
    fn keyed_verifier_agrees_with_verify() {
        let v = Verifier::new(SECRET);
        let good = sign(SECRET, BODY);
        assert_eq!(v.verify([good.as_bytes()], BODY), SignatureCheck::Valid);
        assert_eq!(v.verify([&b"00"[..]], BODY), SignatureCheck::Invalid);
        assert_eq!(v.verify(std::iter::empty(), BODY), SignatureCheck::Absent);
        assert_eq!(format!("{v:?}"), "Verifier(********)");
    }

    #[test]
    fn missing_header_is_absent_and_other_body_is_invalid() {
        assert_eq!(check(&[]), SignatureCheck::Absent);
        let other = sign(SECRET, b"{}");
        assert_eq!(check(&[other.as_bytes()]), SignatureCheck::Invalid);
    }
}
