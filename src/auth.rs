//! Client authentication: the optional `auth.client_tokens` every proxied and read route checks
//! (the webhook route has its own checks). Comparisons are constant-time.

use subtle::ConstantTimeEq;

use crate::config::Secret;

/// Whether a request presenting `authorization` (the raw header value, if any) or
/// `query_token` (an `access_token` query parameter, for `EventSource`, which cannot set
/// headers) may pass. Always true when no tokens are configured.
pub fn client_allowed(
    tokens: &[Secret],
    authorization: Option<&[u8]>,
    query_token: Option<&str>,
) -> bool {
    if tokens.is_empty() {
        return true;
    }
    let presented = authorization
        .and_then(bearer_token)
        .or(query_token.map(str::as_bytes));
    match presented {
        // Check every token so the time taken does not depend on which one matched.
        Some(p) => {
            tokens.iter().fold(0u8, |acc, t| {
                acc | t.expose().as_bytes().ct_eq(p).unwrap_u8()
            }) == 1
        }
        None => false,
    }
}

/// The token of an `Authorization: Bearer <token>` value (scheme matched case-insensitively).
pub fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    if scheme.eq_ignore_ascii_case(b"bearer ") {
        let token = rest.trim_ascii();
        (!token.is_empty()).then_some(token)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Vec<Secret> {
        vec![Secret::from("alpha"), Secret::from("beta")]
    }

    #[test]
    fn no_tokens_configured_lets_everyone_in() {
        assert!(client_allowed(&[], None, None));
    }

    #[test]
    fn bearer_header_in_any_case_is_accepted() {
        assert!(client_allowed(&tokens(), Some(b"Bearer beta"), None));
        assert!(client_allowed(&tokens(), Some(b"bearer alpha"), None));
    }

    #[test]
    fn wrong_missing_or_malformed_tokens_are_refused() {
        assert!(!client_allowed(&tokens(), None, None));
        assert!(!client_allowed(&tokens(), Some(b"Bearer gamma"), None));
        assert!(!client_allowed(&tokens(), Some(b"Basic alpha"), None));
        assert!(!client_allowed(&tokens(), Some(b"Bearer "), None));
        assert!(!client_allowed(&tokens(), Some(b"Bearer alph"), None));
        assert!(!client_allowed(&tokens(), Some(&[0xff, 0xfe]), None));
    }

    #[test]
    fn query_token_is_accepted_when_no_header() {
        assert!(client_allowed(&tokens(), None, Some("alpha")));
        assert!(!client_allowed(&tokens(), None, Some("x")));
    }
}
