//! One canonical spelling of every request path, decided before routing and before any check.
//!
//! Percent-escapes of unreserved characters (`A–Z a–z 0–9 - . _ ~`, RFC 3986 §2.3) are decoded,
//! so `/%61pi/brokers` is `/api/brokers`; other escapes are kept with upper-case hex digits. A
//! path that could mean two things to two readers is refused instead: an empty segment (`//`),
//! a dot segment (`.` or `..`, spelled or escaped), an escaped slash or backslash, a raw
//! backslash, an escaped control character or a malformed escape. A trailing slash is kept
//! (no route has one, so it answers 404), and so is `;` (a plain character in a segment).
//!
//! The router matches the canonical path and every check is attached to the route it matched
//! (see [`crate::security`]), so no spelling reaches a handler without its route's check.

/// Why a path was refused (the message of a 400).
pub type Refusal = String;

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// One segment in canonical spelling, appended to `out`.
fn segment(raw: &str, out: &mut String) -> Result<(), Refusal> {
    let start = out.len();
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let v = match (bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
                    (Some(h), Some(l)) => h * 16 + l,
                    _ => return Err(format!("malformed percent-escape in path segment {raw:?}")),
                };
                match v {
                    b'/' | b'\\' => return Err(format!("escaped slash or backslash in path segment {raw:?}")),
                    0..=0x1f | 0x7f => return Err(format!("escaped control character in path segment {raw:?}")),
                    v if unreserved(v) => out.push(char::from(v)),
                    v => {
                        out.push('%');
                        out.push_str(&format!("{v:02X}"));
                    }
                }
                i += 3;
            }
            b'\\' => return Err(format!("backslash in path segment {raw:?}")),
            b => {
                out.push(char::from(b));
                i += 1;
            }
        }
    }
    if matches!(&out[start..], "." | "..") {
        return Err("dot segments (\".\" and \"..\") are not allowed in paths".into());
    }
    Ok(())
}

/// The canonical spelling of `raw`, or `None` when `raw` already is canonical.
pub fn normalize(raw: &str) -> Result<Option<String>, Refusal> {
    let Some(rest) = raw.strip_prefix('/') else {
        return Err(format!("the path must start with \"/\": {raw:?}"));
    };
    if !raw.is_ascii() {
        return Err("the path must be ASCII; escape other characters".into());
    }
    let mut out = String::with_capacity(raw.len());
    let segments: Vec<&str> = rest.split('/').collect();
    let last = segments.len() - 1;
    for (i, seg) in segments.into_iter().enumerate() {
        out.push('/');
        if seg.is_empty() {
            if i == last {
                continue;
            }
            return Err("empty path segment (\"//\")".into());
        }
        segment(seg, &mut out)?;
    }
    Ok((out != raw).then_some(out))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::normalize;

    #[test]
    fn canonical_paths_stay_as_they_are() {
        for p in ["/", "/api/brokers", "/api/brokers/", "/api/leads/a%20b/events", "/api/brokers/x;y=1", "/api/leads/%C3%A9"] {
            assert_eq!(normalize(p), Ok(None), "{p}");
        }
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_others_upper_cased() {
        assert_eq!(normalize("/%61pi/brokers").unwrap().as_deref(), Some("/api/brokers"));
        assert_eq!(normalize("/ap%69/%62rokers").unwrap().as_deref(), Some("/api/brokers"));
        assert_eq!(normalize("/%41%2d%2E%5f%7E").unwrap().as_deref(), Some("/A-._~"));
        assert_eq!(normalize("/api/leads/a%2bb%c3%a9").unwrap().as_deref(), Some("/api/leads/a%2Bb%C3%A9"));
    }

    #[test]
    fn ambiguous_spellings_are_refused() {
        for p in [
            "api/brokers",
            "//api/brokers",
            "/api//brokers",
            "/api/./brokers",
            "/api/../admin/actors",
            "/api/%2e%2E/admin",
            "/api/%2E/brokers",
            "/api%2Fbrokers",
            "/api%2fbrokers",
            "/api%5Cbrokers",
            "/api\\brokers",
            "/api/brokers/%00",
            "/api/brokers/%7f",
            "/api/brokers/%zz",
            "/api/brokers/%4",
            "/api/%",
        ] {
            assert!(normalize(p).is_err(), "{p} should be refused");
        }
    }

    proptest! {
        /// Whatever is accepted is canonical: normalising it again changes nothing, and it has no
        /// empty or dot segment and no escape of an unreserved character.
        #[test]
        fn accepted_paths_are_canonical(raw in "(/([a-z.;]|%[0-9a-fA-F]{2}){0,4}){1,5}/?") {
            if let Ok(n) = normalize(&raw) {
                let canon = n.unwrap_or_else(|| raw.clone());
                prop_assert_eq!(normalize(&canon), Ok(None));
                let segs: Vec<&str> = canon[1..].split('/').collect();
                for (i, s) in segs.iter().enumerate() {
                    prop_assert!(!s.is_empty() || i == segs.len() - 1, "{}", canon);
                    prop_assert!(*s != "." && *s != "..", "{}", canon);
                }
                let b = canon.as_bytes();
                for i in 0..b.len() {
                    if b[i] == b'%' {
                        let v = u8::from_str_radix(&canon[i + 1..i + 3], 16).unwrap();
                        prop_assert!(!(v.is_ascii_alphanumeric() || b"-._~".contains(&v)), "{}", canon);
                    }
                }
            }
        }
    }
}
