//! Access control under every spelling of a path: requests written byte for byte on a raw TCP
//! socket (no client normalises them), generated from the route table so that a route added
//! later is covered without a test of its own.

use std::io::{Read, Write};
use std::net::TcpStream;

use leadrouter::security::Access;
use serde_json::Value;

use crate::common::Srv;

const ADMIN: &str = "admin-token-0123456789";
const KEY: &str = "api-key-0123456789abcdef";

/// One answer: status, error code and message (empty when the body is not an error).
#[derive(Debug)]
struct Answer {
    status: u16,
    code: String,
    message: String,
}

impl Answer {
    /// Answered before any handler ran: the path check, the access check, the router's 404 or
    /// the resource's 405.
    fn stopped_in_front(&self) -> bool {
        matches!(self.code.as_str(), "unauthorized" | "forbidden" | "invalid_path" | "method_not_allowed")
            || (self.code == "not_found" && self.message.starts_with("no route"))
    }
}

/// Sends `method path` exactly as written, on its own connection, from a blocking thread.
async fn raw(s: &Srv, method: &str, path: &str, token: Option<&str>) -> Answer {
    let addr = s.running().addr;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    let bytes = actix_rt::task::spawn_blocking(move || {
        let mut c = TcpStream::connect(addr).expect("connects");
        c.write_all(req.as_bytes()).expect("writes");
        let mut out = Vec::new();
        c.read_to_end(&mut out).expect("reads");
        out
    })
    .await
    .expect("thread");
    let text = String::from_utf8_lossy(&bytes);
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    Answer {
        status,
        code: v["error"]["code"].as_str().unwrap_or_default().to_string(),
        message: v["error"]["message"].as_str().unwrap_or_default().to_string(),
    }
}

fn enc(c: char, upper: bool) -> String {
    if upper {
        format!("%{:02X}", c as u32)
    } else {
        format!("%{:02x}", c as u32)
    }
}

/// Spellings of `path` that name the same route: the first letter of one segment escaped, every
/// character escaped with lower- and with upper-case hex digits.
fn same_route(path: &str) -> Vec<String> {
    let segs: Vec<&str> = path[1..].split('/').collect();
    let mut out = Vec::new();
    for i in 0..segs.len() {
        let mut s: Vec<String> = segs.iter().map(|x| x.to_string()).collect();
        let mut chars = segs[i].chars();
        let first = chars.next().expect("non-empty segment");
        s[i] = format!("{}{}", enc(first, false), chars.as_str());
        out.push(format!("/{}", s.join("/")));
    }
    for upper in [false, true] {
        out.push(segs.iter().map(|x| format!("/{}", x.chars().map(|c| enc(c, upper)).collect::<String>())).collect());
    }
    out
}

/// Spellings that are ambiguous or name no route: double slashes, `./` and `../` segments (also
/// escaped), a trailing slash, `;` parameters and escaped slashes, at every place.
fn other_spellings(path: &str) -> Vec<String> {
    let segs: Vec<&str> = path[1..].split('/').collect();
    let mut out = vec![format!("{path}/"), format!("/{}", segs.join("%2F")), format!("/{}", segs.join("%2f"))];
    for i in 0..=segs.len() {
        let (a, b) = (segs[..i].join("/"), segs[i..].join("/"));
        let pre = if a.is_empty() { String::new() } else { format!("/{a}") };
        let post = if b.is_empty() { String::new() } else { format!("/{b}") };
        for mid in ["/", "/.", "/%2e", "/x/..", "/x/%2E%2E"] {
            out.push(format!("{pre}{mid}{post}"));
        }
    }
    for i in 0..segs.len() {
        let mut s: Vec<String> = segs.iter().map(|x| x.to_string()).collect();
        s[i] = format!("{};v=1", s[i]);
        out.push(format!("/{}", s.join("/")));
    }
    out
}

#[actix_rt::test]
async fn no_spelling_of_a_protected_route_reaches_its_handler_without_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start_with(dir.path(), |c| {
        c.security.api_keys = vec![KEY.into()];
        c.security.admin_token = ADMIN.into();
    })
    .await;
    let routes = leadrouter::api::routes();
    let mut tried = 0;
    for r in routes.iter().filter(|r| r.access != Access::Open) {
        // Every `{param}` gets an id that exists nowhere: a handler reached answers its own 404 or
        // 4xx, which is told apart from the answers given in front of it.
        let path = r.path.split('/').map(|seg| if seg.starts_with('{') { "x1" } else { seg }).collect::<Vec<_>>().join("/");
        let method = r.method.as_str();
        let token = if r.access == Access::Admin { ADMIN } else { KEY };
        for p in same_route(&path) {
            let a = raw(&s, method, &p, None).await;
            assert!(matches!(a.status, 401 | 403) && a.stopped_in_front(), "{method} {p} without credentials: {a:?}");
            let a = raw(&s, method, &p, Some(token)).await;
            assert!(!a.stopped_in_front(), "{method} {p} with credentials should reach its handler: {a:?}");
            tried += 2;
        }
        for p in other_spellings(&path) {
            let a = raw(&s, method, &p, None).await;
            assert!(matches!(a.status, 400 | 401 | 403 | 404 | 405) && a.stopped_in_front(), "{method} {p} without credentials: {a:?}");
            tried += 1;
        }
        // The wrong credential class is refused too.
        let wrong = if r.access == Access::Admin { KEY } else { "not-a-key-0000000000" };
        let a = raw(&s, method, &same_route(&path)[0], Some(wrong)).await;
        assert_eq!((a.status, a.code.as_str()), (403, "forbidden"), "{method} {path} with a wrong credential");
    }
    assert!(tried > 500, "{tried} requests");
    s.stop().await;
}

#[actix_rt::test]
async fn the_reported_bypasses_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start_with(dir.path(), |c| {
        c.security.api_keys = vec![KEY.into()];
        c.security.admin_token = ADMIN.into();
    })
    .await;
    let rows = [
        ("GET", "/admin/actors", 401),
        ("GET", "/%61dmin/actors", 401),
        ("POST", "/%61dmin/snapshot", 401),
        ("GET", "/api/brokers", 401),
        ("GET", "/%61pi/brokers", 401),
        ("GET", "/ap%69/brokers", 401),
        ("POST", "/%61pi/routing/decide", 401),
        ("GET", "/%77s/capacity", 401),
        ("GET", "/api/../admin/actors", 400),
        ("GET", "//admin/actors", 400),
    ];
    for (method, path, want) in rows {
        let a = raw(&s, method, path, None).await;
        assert_eq!(a.status, want, "{method} {path}: {a:?}");
    }
    // With the right credential the decoded spelling is the same route.
    let a = raw(&s, "GET", "/%61dmin/actors", Some(ADMIN)).await;
    assert_eq!(a.status, 200, "{a:?}");
    let a = raw(&s, "GET", "/%61pi/brokers", Some(KEY)).await;
    assert_eq!(a.status, 200, "{a:?}");
    // Nothing was decided or snapshotted by the refused requests.
    assert!(crate::common::journal(dir.path()).is_empty());
    s.stop().await;
}

#[actix_rt::test]
async fn load_shedding_applies_to_every_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start_with(dir.path(), |c| c.security.max_in_flight = 0).await;
    for p in ["/api/brokers", "/%61pi/brokers", "/api/%62rokers"] {
        let a = raw(&s, "GET", p, None).await;
        assert_eq!((a.status, a.code.as_str()), (503, "overloaded"), "{p}");
    }
    assert_eq!(raw(&s, "GET", "/healthz", None).await.status, 200);
    s.stop().await;
}

/// A browser cannot set headers on a websocket: the feed also takes the key as the subprotocol
/// `leadrouter.key.<hex>` offered beside `leadrouter`, which the server then chooses. Only the
/// feed does; the API does not read that header.
#[actix_rt::test]
async fn the_feed_takes_a_key_offered_as_a_websocket_subprotocol() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start_with(dir.path(), |c| c.security.api_keys = vec![KEY.into()]).await;
    let hex = |k: &str| k.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    let url = format!("{}/ws/capacity", s.base);
    let (resp, _ws) = s
        .client
        .ws(&url)
        .protocols(["leadrouter", &format!("leadrouter.key.{}", hex(KEY))])
        .connect()
        .await
        .expect("the right key offered as a subprotocol connects");
    assert_eq!(resp.headers().get("sec-websocket-protocol").unwrap(), "leadrouter");
    for (offered, status) in [(format!("leadrouter.key.{}", hex("not-a-key-0000000000")), 403), ("leadrouter.key.zz".to_string(), 401)] {
        match s.client.ws(&url).protocols(["leadrouter", &offered]).connect().await {
            Err(awc::error::WsClientError::InvalidResponseStatus(st)) => assert_eq!(st.as_u16(), status, "{offered}"),
            other => panic!("{offered}: {:?}", other.map(|(r, _)| r.status())),
        }
    }
    let a = raw(&s, "GET", "/api/operations", None).await;
    assert_eq!(a.status, 401, "{a:?}");
    let mut req = s
        .client
        .get(format!("{}/api/operations", s.base))
        .insert_header(("sec-websocket-protocol", format!("leadrouter.key.{}", hex(KEY))));
    req = req.insert_header(("x-request-id", "subprotocol-on-api"));
    assert_eq!(req.send().await.unwrap().status().as_u16(), 401, "the API ignores a subprotocol key");
    s.stop().await;
}

/// Every path answers a method it does not take with 405 and an `Allow` header naming exactly
/// the methods the route table gives it.
#[actix_rt::test]
async fn other_methods_get_405_with_allow() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start(dir.path()).await;
    let routes = leadrouter::api::routes();
    let paths: std::collections::BTreeSet<&str> = routes.iter().map(|r| r.path).collect();
    for path in paths {
        let mut declared: Vec<&str> = routes.iter().filter(|r| r.path == path).map(|r| r.method.as_str()).collect();
        let other = ["PUT", "DELETE", "PATCH", "POST", "GET"].into_iter().find(|m| !declared.contains(m)).unwrap();
        let concrete = path.split('/').map(|seg| if seg.starts_with('{') { "x1" } else { seg }).collect::<Vec<_>>().join("/");
        let method = awc::http::Method::from_bytes(other.as_bytes()).unwrap();
        let resp = s.client.request(method, format!("{}{concrete}", s.base)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 405, "{other} {concrete}");
        let mut allow: Vec<&str> = resp.headers().get("allow").unwrap().to_str().unwrap().split(", ").collect();
        allow.sort_unstable();
        declared.sort_unstable();
        assert_eq!(allow, declared, "{other} {concrete}");
    }
    s.stop().await;
}
