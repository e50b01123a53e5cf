//! The security review's checks through the public surface: per-key rate limits with 429 and
//! `Retry-After`, the capacity feed's origin check and frame limit, and no secret in the logs of
//! a run that uses every kind of secret.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;

use crate::common::*;

const KEY_A: &str = "rate-key-a-0123456789";
const KEY_B: &str = "rate-key-b-0123456789";

async fn get_with(
    s: &Srv,
    key: &str,
    path: &str,
) -> awc::ClientResponse<impl futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>>> {
    s.client.get(format!("{}{path}", s.base)).insert_header(("x-api-key", key)).send().await.unwrap()
}

#[actix_rt::test]
async fn each_key_has_its_own_rate_limit_with_429_and_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start_with(dir.path(), |c| {
        c.security.api_keys = vec![KEY_A.into(), KEY_B.into()];
        c.security.rate_limit_per_second = 2.0;
        c.security.rate_limit_burst = 3.0;
    })
    .await;
    for i in 0..3 {
        assert_eq!(get_with(&s, KEY_A, "/api/brokers").await.status().as_u16(), 200, "request {i} within the burst");
    }
    let mut refused = get_with(&s, KEY_A, "/api/brokers").await;
    assert_eq!(refused.status().as_u16(), 429);
    assert_eq!(refused.headers().get("retry-after").unwrap(), "1");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    // Another key has its own bucket; open routes are not limited.
    assert_eq!(get_with(&s, KEY_B, "/api/brokers").await.status().as_u16(), 200);
    assert_eq!(s.get("/healthz").await.0, 200);
    // Two tokens a second: after 600 ms one more request goes through.
    actix_rt::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(get_with(&s, KEY_A, "/api/brokers").await.status().as_u16(), 200);
    s.stop().await;
}

#[actix_rt::test]
async fn the_feed_refuses_foreign_origins_and_large_frames() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start_with(dir.path(), |c| c.security.cors_origins = vec!["https://ops.example.com".into()]).await;
    let url = format!("{}/ws/capacity", s.base);
    match s.client.ws(&url).origin("https://evil.example").connect().await {
        Err(awc::error::WsClientError::InvalidResponseStatus(st)) => assert_eq!(st.as_u16(), 403),
        other => panic!("a foreign origin connected: {:?}", other.map(|(r, _)| r.status())),
    }
    for origin in [s.base.clone(), "https://ops.example.com".to_string()] {
        let r = s.client.ws(&url).origin(origin.as_str()).connect().await;
        assert!(r.is_ok(), "{origin}: {:?}", r.err());
    }
    // No Origin (not a browser): allowed. A frame over 4 KiB ends the connection.
    let (_, mut ws) = s.client.ws(&url).max_frame_size(1 << 20).connect().await.unwrap();
    let first = ws.next().await.unwrap().unwrap();
    assert!(matches!(first, awc::ws::Frame::Text(_)), "the snapshot comes first: {first:?}");
    ws.send(awc::ws::Message::Text("x".repeat(10_000).into())).await.unwrap();
    let ended = actix_rt::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(awc::ws::Frame::Close(_))) => return true,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert_eq!(ended, Ok(true), "the connection ends after an oversized frame");
    s.stop().await;
}

#[actix_rt::test]
async fn no_secret_reaches_the_logs() {
    const KEY: &str = "log-check-api-key-5f3a9c1e";
    const ADMIN: &str = "log-check-admin-token-77d2b0";
    const HOOK: &str = "whsec_c2VjcmV0LXRoYXQtbXVzdC1uZXZlci1iZS1sb2dnZWQ=";
    const OPENAI: &str = "sk-log-check-openai-key-9a8b7c";
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let keys = format!("[\"{KEY}\"]");
    let env = [
        ("LEADROUTER__SECURITY__API_KEYS", keys.as_str()),
        ("LEADROUTER__SECURITY__ADMIN_TOKEN", ADMIN),
        ("LEADROUTER__OPENAI__API_KEY", OPENAI),
        ("LEADROUTER__LOG__LEVEL", "debug"),
        ("LEADROUTER__WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true"),
        ("LEADROUTER__WEBHOOKS__RETRY_BASE_MS", "10"),
        ("LEADROUTER__WEBHOOKS__MAX_ATTEMPTS", "2"),
    ];
    let (mut child, base) = spawn_binary_logging_to(&dir.path().join("data"), &env, log);
    let c = client();
    let call = |method: &'static str, path: String, key: Option<&'static str>, body: Option<String>| {
        let c = c.clone();
        let base = base.clone();
        async move {
            let mut req = c.request(awc::http::Method::from_bytes(method.as_bytes()).unwrap(), format!("{base}{path}"));
            if let Some(k) = key {
                req = req.insert_header(("authorization", format!("Bearer {k}")));
            }
            let resp = match body {
                Some(b) => req.insert_header(("content-type", "application/json")).send_body(b).await,
                None => req.send().await,
            };
            resp.unwrap().status().as_u16()
        }
    };
    // Right and wrong keys and tokens, a webhook with its secret that fails against a closed
    // port (its errors are logged), a decision, and the feed with the key as a subprotocol.
    assert_eq!(call("GET", "/api/brokers".into(), Some(KEY), None).await, 200);
    assert_eq!(call("GET", "/api/brokers".into(), Some("wrong-key-but-long-enough"), None).await, 403);
    assert_eq!(call("GET", "/admin/actors".into(), Some(ADMIN), None).await, 200);
    assert_eq!(call("GET", "/admin/actors".into(), Some(KEY), None).await, 403);
    let hook = json!({"url": "http://127.0.0.1:9/hook", "events": ["broker.updated"], "secret": HOOK}).to_string();
    assert_eq!(call("POST", "/api/webhooks".into(), Some(KEY), Some(hook)).await, 201);
    assert_eq!(call("POST", "/api/brokers".into(), Some(KEY), Some(broker("lg-1", "CA", &["AUTO"], 3, 5, 50).to_string())).await, 201);
    assert_eq!(call("POST", "/api/routing/decide".into(), Some(KEY), Some(lead("lg-l", "CA", &["AUTO"]).to_string())).await, 200);
    let hex: String = KEY.bytes().map(|b| format!("{b:02x}")).collect();
    let (_, mut ws) =
        c.ws(format!("{base}/ws/capacity")).protocols(["leadrouter", &format!("leadrouter.key.{hex}")]).connect().await.unwrap();
    let _ = ws.next().await;
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let logged = std::fs::read_to_string(&log_path).unwrap();
    assert!(logged.lines().count() > 10, "the run logged: {logged}");
    assert!(logged.contains("webhooks: dead letter"), "the webhook failures were logged");
    for secret in [KEY, ADMIN, HOOK, OPENAI, &hex, &HOOK["whsec_".len()..]] {
        assert!(!logged.contains(secret), "{secret} is in the log");
    }
}
