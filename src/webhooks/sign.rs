//! Signing secrets and signatures in the Standard Webhooks convention, and where a webhook may be
//! sent.
//!
//! A secret is `whsec_` followed by the base64 of 24 to 64 random bytes. Every attempt carries
//! `webhook-id`, `webhook-timestamp` (Unix seconds) and
//! `webhook-signature: v1,<base64 of HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`, where the key
//! is the secret's decoded bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};

const PREFIX: &str = "whsec_";

/// Longest webhook URL accepted.
pub const MAX_URL_LEN: usize = 2048;

fn invalid(field: &str, reason: impl Into<String>) -> Error {
    Error::Invalid { field: field.into(), reason: reason.into() }
}

/// A new secret: 32 bytes from the operating system's random source.
pub fn new_secret() -> Result<String> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| Error::Io(std::io::Error::other(format!("random source: {e}"))))?;
    Ok(format!("{PREFIX}{}", STANDARD.encode(key)))
}

/// The key bytes of a secret; `field` names it in the error.
pub fn key_of(field: &str, secret: &str) -> Result<Vec<u8>> {
    let b64 = secret.strip_prefix(PREFIX).ok_or_else(|| invalid(field, "must start with whsec_ (leave it out to have one generated)"))?;
    let key = STANDARD.decode(b64).map_err(|_| invalid(field, "after whsec_ must come standard base64"))?;
    if !(24..=64).contains(&key.len()) {
        return Err(invalid(field, format!("must hold 24 to 64 bytes, not {}", key.len())));
    }
    Ok(key)
}

/// The `webhook-signature` header's value for one attempt.
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// A target URL checked: `http` or `https` (the latter in a build with `--features tls`), with a
/// host, no credentials and no fragment. Private, loopback and link-local addresses are refused
/// unless `allow_private`; a host name is resolved here and again before every attempt.
pub fn check_url(field: &str, raw: &str, allow_private: bool) -> Result<url::Url> {
    if raw.len() > MAX_URL_LEN {
        return Err(invalid(field, format!("must be at most {MAX_URL_LEN} characters")));
    }
    let url = url::Url::parse(raw).map_err(|e| invalid(field, format!("not a URL: {e}")))?;
    match url.scheme() {
        "http" => {}
        "https" if cfg!(feature = "tls") => {}
        "https" => return Err(invalid(field, "an https:// target needs a build with `--features tls`")),
        other => return Err(invalid(field, format!("scheme {other} is not http or https"))),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(field, "must not carry credentials; verify the signature instead"));
    }
    if url.fragment().is_some() {
        return Err(invalid(field, "must not have a fragment"));
    }
    if url.host().is_none() {
        return Err(invalid(field, "must name a host"));
    }
    if !allow_private {
        if let Some(ip) = private_address(&url) {
            return Err(invalid(
                field,
                format!("{ip} is a private, loopback or link-local address (set webhooks.allow_private_targets to allow it)"),
            ));
        }
    }
    Ok(url)
}

/// The first private, loopback or otherwise non-public address the URL's host is or resolves
/// to. A name that does not resolve has none (delivery will fail and retry).
pub fn private_address(url: &url::Url) -> Option<IpAddr> {
    let addrs: Vec<IpAddr> = match url.host()? {
        url::Host::Ipv4(ip) => vec![IpAddr::V4(ip)],
        url::Host::Ipv6(ip) => vec![IpAddr::V6(ip)],
        url::Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost" || name.ends_with(".localhost") {
                return Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
            }
            let port = url.port_or_known_default().unwrap_or(80);
            (name.as_str(), port).to_socket_addrs().map(|a| a.map(|s| s.ip()).collect()).unwrap_or_default()
        }
    };
    addrs.into_iter().find(|ip| !is_public(*ip))
}

/// False for loopback, private, link-local, shared (CGNAT), unspecified, broadcast, multicast,
/// documentation, benchmarking and reserved addresses, and for IPv6 unique-local ones.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (18..20).contains(&b))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || first == 0x2001 && ip.segments()[1] == 0x0db8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published test vector of the Standard Webhooks and Svix reference libraries (their
    /// `sign` tests): a receiver's stock library verifies what this signs.
    #[test]
    fn signs_as_the_standard_webhooks_reference_does() {
        let key = key_of("secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, r#"{"test": 2432232314}"#);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_are_generated_and_checked() {
        let s = new_secret().unwrap();
        assert_eq!(key_of("secret", &s).unwrap().len(), 32);
        assert_ne!(s, new_secret().unwrap());
        assert!(key_of("secret", "abc").is_err());
        assert!(key_of("secret", "whsec_!!").is_err());
        assert!(key_of("secret", "whsec_c2hvcnQ=").is_err());
    }

    #[test]
    fn urls_are_checked_and_private_targets_refused_unless_allowed() {
        let field = |r: Result<url::Url>| match r {
            Err(Error::Invalid { field, reason }) => format!("{field}: {reason}"),
            other => panic!("{other:?}"),
        };
        for bad in ["ftp://example.com/x", "not a url", "http://user:pw@example.com/", "http://example.com/#frag"] {
            assert!(field(check_url("url", bad, true)).starts_with("url: "), "{bad}");
        }
        for private in [
            "http://127.0.0.1:9/x",
            "http://localhost/x",
            "http://10.1.2.3/",
            "http://192.168.0.1/",
            "http://169.254.169.254/latest",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
        ] {
            assert!(field(check_url("url", private, false)).contains("allow_private_targets"), "{private}");
            assert!(check_url("url", private, true).is_ok(), "{private}");
        }
        assert!(check_url("url", "http://93.184.215.14/hook", false).is_ok());
        assert!(is_public("8.8.8.8".parse().unwrap()) && !is_public("172.16.5.4".parse().unwrap()));
    }
}
