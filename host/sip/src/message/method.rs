//! SIP request methods.

use std::fmt;

/// A SIP request method (RFC 3261 7.1 and the extensions a B2BUA meets).
///
/// Our own enum rather than `rsipstack::sip::Method` because rsip's has no variant for an unknown
/// method, and a gateway must still parse such a request to answer it with 501 (RFC 3261 8.2.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// ACK (RFC 3261).
    Ack,
    /// BYE (RFC 3261).
    Bye,
    /// CANCEL (RFC 3261).
    Cancel,
    /// INFO (RFC 6086).
    Info,
    /// INVITE (RFC 3261).
    Invite,
    /// MESSAGE (RFC 3428).
    Message,
    /// NOTIFY (RFC 6665).
    Notify,
    /// OPTIONS (RFC 3261).
    Options,
    /// PRACK (RFC 3262).
    Prack,
    /// PUBLISH (RFC 3903).
    Publish,
    /// REFER (RFC 3515).
    Refer,
    /// REGISTER (RFC 3261).
    Register,
    /// SUBSCRIBE (RFC 6665).
    Subscribe,
    /// UPDATE (RFC 3311).
    Update,
    /// Any other token; methods are case-sensitive (RFC 3261 7.1), so this keeps the exact spelling.
    Other(Box<str>),
}

impl Method {
    /// Parses a method token. Returns `None` if `token` is empty or holds a non-token character.
    pub fn from_token(token: &[u8]) -> Option<Method> {
        if token.is_empty() || !token.iter().all(|&b| is_token_char(b)) {
            return None;
        }
        Some(match token {
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"INFO" => Method::Info,
            b"INVITE" => Method::Invite,
            b"MESSAGE" => Method::Message,
            b"NOTIFY" => Method::Notify,
            b"OPTIONS" => Method::Options,
            b"PRACK" => Method::Prack,
            b"PUBLISH" => Method::Publish,
            b"REFER" => Method::Refer,
            b"REGISTER" => Method::Register,
            b"SUBSCRIBE" => Method::Subscribe,
            b"UPDATE" => Method::Update,
            // All token chars are ASCII, so this conversion cannot fail.
            other => Method::Other(String::from_utf8_lossy(other).into()),
        })
    }

    /// The method as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Info => "INFO",
            Method::Invite => "INVITE",
            Method::Message => "MESSAGE",
            Method::Notify => "NOTIFY",
            Method::Options => "OPTIONS",
            Method::Prack => "PRACK",
            Method::Publish => "PUBLISH",
            Method::Refer => "REFER",
            Method::Register => "REGISTER",
            Method::Subscribe => "SUBSCRIBE",
            Method::Update => "UPDATE",
            Method::Other(s) => s,
        }
    }

    /// The rsip equivalent, if rsip knows this method.
    pub fn to_rsip(&self) -> Option<rsipstack::sip::Method> {
        use rsipstack::sip::Method as R;
        Some(match self {
            Method::Ack => R::Ack,
            Method::Bye => R::Bye,
            Method::Cancel => R::Cancel,
            Method::Info => R::Info,
            Method::Invite => R::Invite,
            Method::Message => R::Message,
            Method::Notify => R::Notify,
            Method::Options => R::Options,
            Method::Prack => R::PRack,
            Method::Publish => R::Publish,
            Method::Refer => R::Refer,
            Method::Register => R::Register,
            Method::Subscribe => R::Subscribe,
            Method::Update => R::Update,
            Method::Other(_) => return None,
        })
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RFC 3261 25.1 `token` characters.
#[inline]
pub(crate) fn is_token_char(b: u8) -> bool {
    TOKEN[b as usize]
}

/// [`is_token_char`] as a table: every header name of every message goes through it.
static TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        b += 1;
    }
    t
};
