//! Trace export (built with `--features otlp`): the real binary, pointed at a stand-in OTLP/HTTP
//! collector on loopback, exports the request spans it logs, and flushes them on SIGTERM.

use std::process::Command;
use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

type Received = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

async fn collect(req: HttpRequest, body: web::Bytes, got: web::Data<Received>) -> HttpResponse {
    let ct = req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    got.lock().unwrap().push((req.path().to_string(), ct, body.to_vec()));
    HttpResponse::Ok().content_type("application/x-protobuf").body(Vec::<u8>::new())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[actix_rt::test]
async fn request_spans_reach_the_otlp_collector() {
    let got: Received = Arc::default();
    let data = web::Data::new(got.clone());
    let collector = HttpServer::new(move || App::new().app_data(data.clone()).default_service(web::to(collect)))
        .workers(1)
        .bind(("127.0.0.1", 0))
        .unwrap();
    let addr = collector.addrs()[0];
    let server = collector.run();
    let handle = server.handle();
    actix_rt::spawn(server);

    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("http://{addr}");
    let (mut child, base) =
        crate::common::spawn_binary(dir.path(), &[("LEADROUTER__LOG__OTLP_ENDPOINT", endpoint.as_str()), ("LEADROUTER_LOG", "info")]);
    let resp = crate::common::client().get(format!("{base}/healthz")).insert_header(("X-Request-Id", "otlp-check-7")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let status = actix_rt::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "clean exit: {status}");

    let got = got.lock().unwrap().clone();
    handle.stop(true).await;
    let traces: Vec<_> = got.iter().filter(|(p, _, _)| p == "/v1/traces").collect();
    assert!(!traces.is_empty(), "spans were exported: {:?}", got.iter().map(|g| &g.0).collect::<Vec<_>>());
    assert!(traces.iter().all(|(_, ct, _)| ct == "application/x-protobuf"), "OTLP/HTTP protobuf");
    // The request span, with its request id attribute and the service name.
    let all: Vec<u8> = traces.iter().flat_map(|(_, _, b)| b.clone()).collect();
    assert!(contains(&all, b"request"), "the request span is there");
    assert!(contains(&all, b"otlp-check-7"), "with its request id");
    assert!(contains(&all, b"leadrouter"), "from service leadrouter");
}
