//! The OpenAPI document and the /docs page: every registered route is documented (and nothing
//! else is), every `$ref` resolves, and real responses from the running server fit the schemas
//! the document gives for them.

use serde_json::{json, Value};

use crate::common::{broker, lead, Srv};

/// Follows `$ref`s into `components.schemas`.
fn resolve<'a>(doc: &'a Value, s: &'a Value) -> &'a Value {
    match s.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap();
            let target = &doc["components"]["schemas"][name];
            assert!(!target.is_null(), "dangling $ref {r}");
            resolve(doc, target)
        }
        None => s,
    }
}

fn type_fits(t: &str, v: &Value) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "string" => v.is_string(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => false,
    }
}

/// Checks `v` against schema `s`: types, enums, required fields, and that an object has no
/// field its schema does not name. Returns the first mismatch with its JSON path.
fn check(doc: &Value, s: &Value, v: &Value, at: &str) -> Result<(), String> {
    let s = resolve(doc, s);
    if let Some(all) = s.get("allOf").and_then(Value::as_array) {
        // Merge the parts' properties so "no unknown field" sees all of them.
        let mut props = serde_json::Map::new();
        let mut required = Vec::new();
        for part in all {
            let part = resolve(doc, part);
            if let Some(p) = part.get("properties").and_then(Value::as_object) {
                props.extend(p.clone());
            }
            required.extend(part.get("required").and_then(Value::as_array).cloned().unwrap_or_default());
        }
        return check(doc, &json!({"type": "object", "properties": props, "required": required}), v, at);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = s.get(key).and_then(Value::as_array) {
            let errors: Vec<String> = options.iter().filter_map(|o| check(doc, o, v, at).err()).collect();
            return if errors.len() < options.len() { Ok(()) } else { Err(format!("{at}: fits no {key} option: {errors:?}")) };
        }
    }
    if let Some(t) = s.get("type") {
        let types: Vec<&str> = match t {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !types.iter().any(|t| type_fits(t, v)) {
            return Err(format!("{at}: {v} is not {types:?}"));
        }
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        if !v.is_null() && !e.contains(v) {
            return Err(format!("{at}: {v} is not one of {e:?}"));
        }
    }
    if let (Some(obj), Some(props)) = (v.as_object(), s.get("properties").and_then(Value::as_object)) {
        for r in s.get("required").and_then(Value::as_array).into_iter().flatten() {
            let r = r.as_str().unwrap();
            if !obj.contains_key(r) {
                return Err(format!("{at}: required field {r} missing"));
            }
        }
        for (k, fv) in obj {
            match props.get(k) {
                Some(ps) => check(doc, ps, fv, &format!("{at}.{k}"))?,
                None => return Err(format!("{at}: field {k} is not in the schema")),
            }
        }
    } else if let (Some(obj), Some(extra)) = (v.as_object(), s.get("additionalProperties").filter(|a| a.is_object())) {
        for (k, fv) in obj {
            check(doc, extra, fv, &format!("{at}.{k}"))?;
        }
    }
    if let (Some(items), Some(arr)) = (s.get("items"), v.as_array()) {
        for (i, iv) in arr.iter().enumerate() {
            check(doc, items, iv, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// Checks a live response against the document's schema for that operation and status.
fn fits(doc: &Value, method: &str, path: &str, status: u16, body: &Value) {
    let op = &doc["paths"][path][method];
    assert!(!op.is_null(), "{method} {path} is not documented");
    let resp = &op["responses"][status.to_string()];
    assert!(!resp.is_null(), "{method} {path} does not document status {status}");
    let schema = &resp["content"]["application/json"]["schema"];
    assert!(!schema.is_null(), "{method} {path} {status} has no JSON schema");
    if let Err(e) = check(doc, schema, body, "$") {
        panic!("{method} {path} {status}: {e}\nbody: {body}");
    }
}

fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                out.push(r);
            }
            m.values().for_each(|x| refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[actix_rt::test]
async fn every_route_is_documented_and_real_responses_fit_the_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start(dir.path()).await;
    let (st, doc) = s.get("/api-docs/openapi.json").await;
    assert_eq!(st, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);

    // Both directions: every registered route is in the document, every documented one is real.
    let routes = leadrouter::api::routes();
    for r in &routes {
        let m = r.method.as_str().to_lowercase();
        assert!(!doc["paths"][r.path][&m].is_null(), "{} {} is registered but not documented", r.method, r.path);
        // The document names the credentials the route's access class checks.
        let schemes: Vec<&str> = doc["paths"][r.path][&m]["security"]
            .as_array()
            .map(|a| a.iter().flat_map(|o| o.as_object().unwrap().keys().map(String::as_str)).collect())
            .unwrap_or_default();
        let want: &[&str] = match r.access {
            leadrouter::security::Access::Open => &[],
            leadrouter::security::Access::Api | leadrouter::security::Access::Feed => &["api_key", "bearer"],
            leadrouter::security::Access::Admin => &["admin_token"],
        };
        assert_eq!(schemes, want, "{} {}: documented credentials", r.method, r.path);
    }
    let mut documented = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented += 1;
            assert!(
                routes.iter().any(|r| r.path == path && r.method.as_str().eq_ignore_ascii_case(method)),
                "{method} {path} is documented but not registered"
            );
        }
    }
    assert_eq!(documented, routes.len());
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 50, "the document references its schemas ({} refs)", all.len());
    for r in all {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("unexpected ref {r}"));
        assert!(doc["components"]["schemas"].get(name).is_some(), "dangling $ref {r}");
    }

    // Real answers, each checked against the schema the document gives for it.
    s.add_broker(&broker("b1", "TX", &["AUTO"], 4, 5, 10)).await;
    let (st, v) = s.post("/api/routing/decide", &lead("d1", "TX", &["AUTO"])).await;
    fits(&doc, "post", "/api/routing/decide", st, &v);
    // The checker does reject what the schema does not allow.
    let schema = &doc["paths"]["/api/routing/decide"]["post"]["responses"]["200"]["content"]["application/json"]["schema"];
    let mut extra = v.clone();
    extra["surprise"] = json!(1);
    assert!(check(&doc, schema, &extra, "$").is_err());
    let mut wrong = v.clone();
    wrong["score"] = json!("high");
    assert!(check(&doc, schema, &wrong, "$").is_err());
    let mut bad_enum = v.clone();
    bad_enum["strategy"] = json!("telepathy");
    assert!(check(&doc, schema, &bad_enum, "$").is_err());
    let (st, v) = s.post("/api/routing/decide", &lead("q1", "VT", &["AUTO"])).await;
    assert_eq!(st, 202);
    fits(&doc, "post", "/api/routing/decide", st, &v);
    let (st, v) = s.post("/api/routing/decide", &json!({"leadId": "bad", "leadData": {"state": "TX"}})).await;
    assert_eq!(st, 422);
    fits(&doc, "post", "/api/routing/decide", st, &v);
    let (st, v) = s.post("/api/routing/predict", &lead("p1", "TX", &["AUTO"])).await;
    fits(&doc, "post", "/api/routing/predict", st, &v);
    let batch = json!({"leads": [lead("b-1", "TX", &["AUTO"]), {"leadId": "b-2"}]});
    let (st, v) = s.post("/api/routing/batch", &batch).await;
    fits(&doc, "post", "/api/routing/batch", st, &v);
    let (st, v) = s.event("d1", "accepted").await;
    fits(&doc, "post", "/api/leads/{lead_id}/events", st, &v);
    let (st, v) = s.event("d1", "accepted").await;
    assert_eq!(st, 409);
    fits(&doc, "post", "/api/leads/{lead_id}/events", st, &v);
    // Reads: (URL, documented path template, expected status).
    let reads = [
        ("/api/leads/d1", "/api/leads/{lead_id}", 200),
        ("/api/leads/nobody", "/api/leads/{lead_id}", 404),
        ("/api/brokers", "/api/brokers", 200),
        ("/api/brokers/b1", "/api/brokers/{id}", 200),
        ("/api/brokers/b1/performance", "/api/brokers/{id}/performance", 200),
        ("/api/brokers/leaderboard?minLeads=0", "/api/brokers/leaderboard", 200),
        ("/api/models/status", "/api/models/status", 200),
        ("/healthz", "/healthz", 200),
        ("/readyz", "/readyz", 200),
    ];
    for (url, template, status) in reads {
        let (st, v) = s.get(url).await;
        assert_eq!(st, status, "{url}: {v}");
        fits(&doc, "get", template, st, &v);
    }
    s.stop().await;
}

#[actix_rt::test]
async fn the_docs_page_is_self_contained() {
    let dir = tempfile::tempdir().unwrap();
    let s = Srv::start(dir.path()).await;
    let mut resp = s.client.get(format!("{}/docs", s.base)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let ct = resp.headers().get("content-type").unwrap().to_str().unwrap().to_string();
    assert!(ct.starts_with("text/html"), "{ct}");
    let html = String::from_utf8(resp.body().await.unwrap().to_vec()).unwrap();
    assert!(html.contains("fetch(\"/api-docs/openapi.json\")"), "the page renders the served document");
    // Nothing is loaded from elsewhere: no external script, style, font or image.
    for needle in ["src=\"http", "href=\"http", "@import", "url(http"] {
        assert!(!html.contains(needle), "the page refers outside: {needle}");
    }
    s.stop().await;
}
