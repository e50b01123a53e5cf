//! What the derived OpenAPI document cannot say through `#[schema]` attributes, added to it so the
//! document is the exact contract the handlers enforce: a schema-valid request is accepted
//! unless a rule that spans fields (named in the field descriptions) refuses it, and a request
//! the schema refuses is refused by the server. Here: the id and state-code formats, the
//! tagged unions (exploration, lead events, embedding requests), rules over whole items
//! (unique lines, exploration only with scored strategies), the batch's configured size, the
//! 400 every operation can answer, and the credentials this server's configuration demands.
//! `schemathesis` checks both directions against a running server (`scripts/api-fuzz`).

use serde_json::{json, Map, Value};

use leadrouter_models::broker::DAYS;
use leadrouter_models::geo::US_STATES;
use leadrouter_models::Strategy;

/// The server settings the document depends on.
pub struct Settings {
    /// `security.api_keys` is set: `/api` and `/ws` need a key.
    pub api_keys: bool,
    /// `server.max_batch`.
    pub max_batch: usize,
}

/// An id: the rule of `leadrouter_models::lead::validate_id`.
fn id() -> Value {
    json!({"type": "string", "pattern": "^[A-Za-z0-9_.:-]+$", "minLength": 1, "maxLength": 128})
}

/// A pattern matching `word` in any letter case.
fn any_case(word: &str) -> String {
    word.chars()
        .map(|c| if c.is_ascii_alphabetic() { format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase()) } else { c.to_string() })
        .collect()
}

fn any_case_of(words: &[&str]) -> String {
    format!("^({})$", words.iter().map(|w| any_case(w)).collect::<Vec<_>>().join("|"))
}

fn exploration() -> Value {
    let band = json!({"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 10});
    let variant = |method: &str, extra: Value| {
        let mut props = json!({"method": {"type": "string", "enum": [method]}, "band": band, "epsilon": {"type": "null"}, "temperature": {"type": "null"}});
        let mut required = vec![json!("method")];
        if let Value::Object(extra) = extra {
            for (k, v) in extra {
                required.push(json!(k));
                props[&k] = v;
            }
        }
        json!({"type": "object", "additionalProperties": false, "required": required, "properties": props})
    };
    json!({
        "description": "How to explore: `epsilon` (a random broker from the band with probability `epsilon`, in (0, 1]), \
            `softmax` (`temperature` 0.001–100) or `thompson`; `band` (0, 10] limits the contenders to those within that \
            relative distance of the best score.",
        "oneOf": [
            variant("epsilon", json!({"epsilon": {"type": "number", "exclusiveMinimum": 0, "maximum": 1}})),
            variant("softmax", json!({"temperature": {"type": "number", "minimum": 0.001, "maximum": 100}})),
            variant("thompson", json!({})),
        ]
    })
}

fn lead_event() -> Value {
    let at = json!({"type": ["string", "null"], "format": "date-time", "description": "When; now when absent. Not more than a minute in the future."});
    json!({
        "description": "What happened to the lead. `value` (0 to 1,000,000,000) only with `converted`; it defaults to the lead's estimated value.",
        "oneOf": [
            {"type": "object", "required": ["type"], "properties": {
                "type": {"type": "string", "enum": ["accepted", "rejected", "contacted", "lost", "closed"]},
                "at": at, "value": {"type": "null"}}},
            {"type": "object", "required": ["type"], "properties": {
                "type": {"type": "string", "enum": ["converted"]},
                "at": at, "value": {"type": ["number", "null"], "minimum": 0, "maximum": 1_000_000_000}}},
        ]
    })
}

fn generate() -> Value {
    let only = |k: &str, v: Value| json!({"type": "object", "additionalProperties": false, "required": [k], "properties": {k: v}});
    json!({
        "description": "Exactly one of `texts`, `leadIds` or `brokers: \"all\"`.",
        "oneOf": [
            only("texts", json!({"type": "array", "minItems": 1, "maxItems": 256,
                "items": {"type": "string", "pattern": "\\S", "maxLength": 4000}})),
            only("leadIds", json!({"type": "array", "minItems": 1, "maxItems": 256, "items": id()})),
            only("brokers", json!({"type": "string", "enum": ["all"]})),
        ]
    })
}

/// Sets `doc[pointer] = value`; the pointer must exist.
fn set(doc: &mut Value, pointer: &str, value: Value) {
    match doc.pointer_mut(pointer) {
        Some(v) => *v = value,
        None => panic!("the OpenAPI document has no {pointer}"),
    }
}

/// Merges `fields` into the object at `pointer`.
fn merge(doc: &mut Value, pointer: &str, fields: Value) {
    let Some(Value::Object(o)) = doc.pointer_mut(pointer) else { panic!("the OpenAPI document has no object at {pointer}") };
    if let Value::Object(f) = fields {
        o.extend(f);
    }
}

const S: &str = "/components/schemas";

/// Makes `doc` (the derived document as JSON) the exact contract of a server with `settings`.
pub fn apply(doc: &mut Value, settings: &Settings) {
    let schemas = doc.pointer_mut(S).and_then(Value::as_object_mut).expect("components.schemas");
    schemas.insert("Id".into(), id());
    schemas.insert(
        "UsState".into(),
        json!({"type": "string", "enum": US_STATES.as_slice(), "description": "USPS state or territory code, upper case"}),
    );
    schemas.insert("Exploration".into(), exploration());
    schemas.insert("LeadEventRequest".into(), lead_event());
    schemas.insert("GenerateRequest".into(), generate());
    let state = json!({"$ref": "#/components/schemas/UsState"});
    set(doc, &format!("{S}/LeadData/properties/state"), state.clone());
    set(doc, &format!("{S}/License/properties/state"), state.clone());
    set(doc, &format!("{S}/GeographicLocation/properties/state"), json!({"oneOf": [state, {"type": "null"}]}));
    merge(doc, &format!("{S}/LeadData/properties/insuranceTypes"), json!({"uniqueItems": true}));
    set(doc, &format!("{S}/LeadData/properties/customerId"), json!({"oneOf": [{"$ref": "#/components/schemas/Id"}, {"type": "null"}]}));
    set(doc, &format!("{S}/Requirements/properties/specialFeatures/items"), json!({"type": "string", "maxLength": 200}));
    set(doc, &format!("{S}/DecideRequest/properties/excludeBrokers/items"), json!({"$ref": "#/components/schemas/Id"}));
    // Exploration applies only to the strategies that rank by score.
    let unscored: Vec<&str> = Strategy::ALL.iter().filter(|s| !s.ranks_by_score()).map(|s| s.name()).collect();
    merge(
        doc,
        &format!("{S}/DecideRequest"),
        json!({"not": {"required": ["strategy", "exploration"], "properties": {
            "strategy": {"enum": unscored},
            "exploration": {"type": "object"}}}}),
    );
    set(
        doc,
        &format!("{S}/Batch/properties/leads"),
        json!({"type": "array", "minItems": 1, "maxItems": settings.max_batch,
            "description": "Decide requests (see DecideRequest), each validated on its own: an invalid one fails alone, in its result.",
            "items": {}}),
    );
    set(
        doc,
        &format!("{S}/PredictRequest/allOf/1/properties/availableBrokers"),
        json!({"type": ["array", "null"], "minItems": 1, "maxItems": 1000, "items": {"$ref": "#/components/schemas/Id"}}),
    );
    let context = format!("{S}/PredictContext/properties");
    set(doc, &format!("{context}/timeOfDay"), json!({"type": ["string", "null"], "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"}));
    set(
        doc,
        &format!("{context}/dayOfWeek"),
        json!({"type": ["string", "null"], "pattern": any_case_of(&[
            "mon", "monday", "tue", "tuesday", "wed", "wednesday", "thu", "thursday", "fri", "friday", "sat", "saturday", "sun", "sunday"])}),
    );
    set(
        doc,
        &format!("{context}/season"),
        json!({"type": ["string", "null"], "pattern": any_case_of(&["winter", "spring", "summer", "autumn", "fall"])}),
    );
    let hhmm = "^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$";
    merge(
        doc,
        &format!("{S}/Schedule/properties/hours"),
        json!({"propertyNames": {"enum": DAYS.as_slice()},
            "additionalProperties": {"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "string", "pattern": hhmm}}}),
    );
    set(
        doc,
        &format!("{S}/SubscriptionRequest/properties/events/items"),
        json!({"type": "string", "enum": crate::webhooks::events::EVENT_TYPES.as_slice()}),
    );
    merge(doc, &format!("{S}/SubscriptionRequest/properties/secret"), json!({"pattern": "^whsec_[A-Za-z0-9+/]{32,86}={0,2}$"}));
    // Creating a subscription needs its target and events; a patch may leave them out.
    set(
        doc,
        "/paths/~1api~1webhooks/post/requestBody/content/application~1json/schema",
        json!({"allOf": [{"$ref": "#/components/schemas/SubscriptionRequest"}, {"required": ["url", "events"],
            "properties": {"url": {"type": "string"}, "events": {"type": "array"}}}]}),
    );
    for op in operations(doc) {
        path_ids(op);
        if !op.contains_key("requestBody") && !has_path_params(op) {
            continue;
        }
        let responses = op.entry("responses").or_insert_with(|| json!({})).as_object_mut().expect("responses");
        responses.entry("400").or_insert_with(|| {
            json!({"description": "A path that does not decode to text, or a body that is not JSON",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}})
        });
    }
    links(doc);
    nullable_formats(doc);
    for op in operations(doc) {
        if let Some(Value::Array(alternatives)) = op.get_mut("security") {
            if settings.api_keys {
                alternatives.retain(|a| a.as_object().is_none_or(|o| !o.is_empty()));
            }
        }
    }
}

fn operations(doc: &mut Value) -> impl Iterator<Item = &mut Map<String, Value>> {
    doc.get_mut("paths")
        .and_then(Value::as_object_mut)
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
        .filter_map(Value::as_object_mut)
}

fn has_path_params(op: &Map<String, Value>) -> bool {
    op.get("parameters").and_then(Value::as_array).is_some_and(|ps| ps.iter().any(|p| p["in"] == "path"))
}

/// Every path parameter is an id.
fn path_ids(op: &mut Map<String, Value>) {
    for p in op.get_mut("parameters").and_then(Value::as_array_mut).into_iter().flatten() {
        if p["in"] == "path" {
            p["schema"] = json!({"$ref": "#/components/schemas/Id"});
        }
    }
}

/// `{"type": ["string", "null"], "format": f}` as `oneOf` a formatted string or null: generators
/// apply a format only to a schema of one type.
fn nullable_formats(v: &mut Value) {
    match v {
        Value::Object(o) => {
            let nullable = o.get("type").and_then(Value::as_array).is_some_and(|t| t.len() == 2 && t.contains(&json!("null")));
            if nullable && o.contains_key("format") {
                let mut one = std::mem::take(o);
                let kind = one["type"].as_array().and_then(|t| t.iter().find(|t| *t != "null")).cloned().unwrap_or(Value::Null);
                one.insert("type".into(), kind);
                let description = one.remove("description");
                o.insert("oneOf".into(), json!([one, {"type": "null"}]));
                if let Some(d) = description {
                    o.insert("description".into(), d);
                }
            } else {
                o.values_mut().for_each(nullable_formats);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(nullable_formats),
        _ => {}
    }
}

/// OpenAPI links: which response value names the resource later operations act on (create a
/// broker, then read, patch, retire it; decide, then report the lead's events), for clients
/// and for stateful test generators.
fn links(doc: &mut Value) {
    let paths = |p: &str| p.replace('~', "~0").replace('/', "~1");
    let to = |path: &str, method: &str| format!("#/paths/{}/{method}", paths(path));
    // (creating path, method, status, response field naming the resource, resource path,
    // (method, link name) of the operations on it)
    type Row<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str, &'a [(&'a str, &'a str)]);
    let table: [Row; 6] = [
        (
            "/api/brokers",
            "post",
            "201",
            "id",
            "/api/brokers/{id}",
            &[("get", "GetBroker"), ("patch", "PatchBroker"), ("delete", "DeleteBroker")],
        ),
        ("/api/routing/decide", "post", "200", "leadId", "/api/leads/{lead_id}", &[("get", "GetLead")]),
        (
            "/api/experiments",
            "post",
            "201",
            "id",
            "/api/experiments/{id}",
            &[("get", "GetExperiment"), ("patch", "PatchExperiment"), ("delete", "DeleteExperiment")],
        ),
        (
            "/api/webhooks",
            "post",
            "201",
            "id",
            "/api/webhooks/{id}",
            &[("get", "GetWebhook"), ("patch", "PatchWebhook"), ("delete", "DeleteWebhook")],
        ),
        ("/api/models/train", "post", "202", "jobId", "/api/models/jobs/{id}", &[("get", "GetJob")]),
        ("/api/policies/evaluate", "post", "202", "id", "/api/policies/evaluations/{id}", &[("get", "GetEvaluation")]),
    ];
    for (from, method, status, field, target, ops) in table {
        let param = target.rsplit('{').next().and_then(|p| p.strip_suffix('}')).unwrap_or("id");
        let mut links = Map::new();
        for (m, name) in ops {
            links.insert((*name).into(), json!({"operationRef": to(target, m), "parameters": {param: format!("$response.body#/{field}")}}));
        }
        if from == "/api/routing/decide" {
            links.insert(
                "ReportEvent".into(),
                json!({"operationRef": to("/api/leads/{lead_id}/events", "post"), "parameters": {"lead_id": "$response.body#/leadId"}}),
            );
        }
        let pointer = format!("/paths/{}/{method}/responses/{status}", paths(from));
        merge(doc, &pointer, json!({"links": links}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(api_keys: bool) -> Value {
        serde_json::from_str(&crate::api::docs::document(&Settings { api_keys, max_batch: 7 })).unwrap()
    }

    fn all_objects<'a>(v: &'a Value, out: &mut Vec<&'a Map<String, Value>>) {
        match v {
            Value::Object(o) => {
                out.push(o);
                o.values().for_each(|v| all_objects(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| all_objects(v, out)),
            _ => {}
        }
    }

    #[test]
    fn the_document_is_made_exact() {
        let (open, secured) = (doc(false), doc(true));
        assert_eq!(open.pointer("/components/schemas/Batch/properties/leads/maxItems"), Some(&json!(7)));
        let security = |d: &Value| d.pointer("/paths/~1api~1routing~1decide/post/security").unwrap().as_array().unwrap().clone();
        assert!(security(&open).contains(&json!({})), "open: credentials optional");
        assert!(!security(&secured).contains(&json!({})), "secured: credentials required");
        assert_eq!(open.pointer("/paths/~1admin~1snapshot/post/security"), Some(&json!([{"admin_token": []}])));
        let mut objects = Vec::new();
        all_objects(&open, &mut objects);
        // Generators ignore a format on a schema of two types.
        assert!(!objects.iter().any(|o| o.contains_key("format") && o.get("type").is_some_and(Value::is_array)));
        for (path, item) in open["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for p in op["parameters"].as_array().into_iter().flatten().filter(|p| p["in"] == "path") {
                    assert_eq!(p["schema"], json!({"$ref": "#/components/schemas/Id"}), "{method} {path}");
                    assert!(op["responses"].get("400").is_some(), "{method} {path} documents 400");
                }
            }
        }
        // Every link names an operation that exists.
        for o in &objects {
            if let Some(r) = o.get("operationRef").and_then(Value::as_str) {
                assert!(open.pointer(r.trim_start_matches('#')).is_some(), "{r}");
            }
        }
    }

    #[test]
    fn exploration_variants_follow_the_method() {
        let open = doc(false);
        let variants = open.pointer("/components/schemas/Exploration/oneOf").unwrap().as_array().unwrap();
        let methods: Vec<&Value> = variants.iter().map(|v| &v["properties"]["method"]["enum"][0]).collect();
        assert_eq!(methods, [&json!("epsilon"), &json!("softmax"), &json!("thompson")]);
        assert_eq!(any_case_of(&["ab"]), "^([Aa][Bb])$");
    }
}
