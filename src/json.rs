//! Request bodies: read with a size limit, parse with errors that name the JSON path.

use actix_web::web;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Reads the whole body, refusing more than `limit` bytes.
pub async fn read_body(mut payload: web::Payload, limit: usize) -> Result<web::Bytes> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| Error::MalformedJson(format!("could not read body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(Error::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// serde_json messages end in " at line L column C"; the path says where instead.
fn without_position(msg: &str) -> &str {
    msg.rfind(" at line ").map_or(msg, |i| &msg[..i])
}

fn join_path(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path == "." || path.is_empty()) {
        (true, _) => path.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) => format!("{prefix}.{path}"),
    }
}

/// Turns a located serde error into a field error. A missing field is reported at its own path.
fn field_error(prefix: &str, path: String, e: &serde_json::Error) -> Error {
    let msg = without_position(&e.to_string()).to_string();
    let mut field = join_path(prefix, &path);
    if let Some(name) = msg.strip_prefix("missing field `").and_then(|r| r.strip_suffix('`')) {
        field = if field == "." || field.is_empty() { name.to_string() } else { format!("{field}.{name}") };
    }
    if field.is_empty() || field == "." {
        field = "body".into();
    }
    Error::Invalid { field, reason: msg }
}

/// Parses JSON; syntax errors are 400, wrong shapes 422 naming the field.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // A syntax error inside valid JSON is a shape error: an array longer than a fixed-size
        // field, which serde_json reports as trailing characters.
        let shape = inner.is_syntax() && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok();
        if (inner.is_syntax() && !shape) || inner.is_eof() || inner.is_io() {
            Error::MalformedJson(inner.to_string())
        } else {
            field_error("", path, &inner)
        }
    });
    match value {
        Ok(value) => {
            de.end().map_err(|e| Error::MalformedJson(e.to_string()))?;
            Ok(value)
        }
        // JSON has one number type: `5.0` is an integer to JSON Schema, not to serde. Such
        // bodies take a second, slower pass through a value; the usual ones never do.
        Err(Error::Invalid { reason, .. }) if reason.starts_with(FLOAT_FOR_INTEGER) => {
            let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| Error::MalformedJson(e.to_string()))?;
            from_value("", value)
        }
        Err(e) => Err(e),
    }
}

const FLOAT_FOR_INTEGER: &str = "invalid type: floating point";

/// Writes every whole float in `v` (`5.0`) as the integer it equals, where an integer holds it.
fn whole_numbers_as_integers(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|f| n.is_f64() && f.fract() == 0.0) {
                if (0.0..18_446_744_073_709_551_616.0).contains(&f) {
                    *n = (f as u64).into();
                } else if (-9_223_372_036_854_775_808.0..0.0).contains(&f) {
                    *n = (f as i64).into();
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(whole_numbers_as_integers),
        Value::Object(o) => o.values_mut().for_each(whole_numbers_as_integers),
        _ => {}
    }
}

/// Converts an already-parsed JSON value; errors are 422 at `prefix` + the inner path.
pub fn from_value<T: DeserializeOwned>(prefix: &str, mut value: serde_json::Value) -> Result<T> {
    // A walk over the value is cheap beside deserialising it, and allocates nothing.
    whole_numbers_as_integers(&mut value);
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        field_error(prefix, path, e.inner())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadrouter_models::DecideRequest;

    fn field_of(r: Result<DecideRequest>) -> String {
        match r {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_path() {
        let bad_line = br#"{"leadId":"a","leadData":{"insuranceTypes":["AUTO","BOAT"],"state":"CA","estimatedValue":1}}"#;
        assert_eq!(field_of(parse(bad_line)), "leadData.insuranceTypes[1]");
        let missing = br#"{"leadId":"a","leadData":{"insuranceTypes":["AUTO"],"estimatedValue":1}}"#;
        assert_eq!(field_of(parse(missing)), "leadData.state");
        let top_missing = br#"{"leadData":{"insuranceTypes":["AUTO"],"state":"CA","estimatedValue":1}}"#;
        assert_eq!(field_of(parse(top_missing)), "leadId");
        let v = serde_json::json!({"leadId": 5});
        match from_value::<DecideRequest>("leads[3]", v) {
            Err(Error::Invalid { field, .. }) => assert_eq!(field, "leads[3].leadId"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn whole_floats_are_integers() {
        let body = br#"{"leadId":"a","leadData":{"insuranceTypes":["AUTO"],"state":"CA","estimatedValue":1,"complexity":5.0}}"#;
        assert_eq!(parse::<DecideRequest>(body).unwrap().lead_data.complexity, 5);
        let v = serde_json::json!({"leadId": "a", "leadData": {"insuranceTypes": ["AUTO"], "state": "CA", "estimatedValue": 1, "complexity": 7.0}});
        assert_eq!(from_value::<DecideRequest>("", v).unwrap().lead_data.complexity, 7);
        let half = br#"{"leadId":"a","leadData":{"insuranceTypes":["AUTO"],"state":"CA","estimatedValue":1,"complexity":5.5}}"#;
        assert_eq!(field_of(parse(half)), "leadData.complexity");
    }

    #[test]
    fn syntax_errors_are_malformed() {
        assert!(matches!(parse::<DecideRequest>(b"{\"leadId\": "), Err(Error::MalformedJson(_))));
        assert!(matches!(parse::<DecideRequest>(b"not json"), Err(Error::MalformedJson(_))));
        assert!(matches!(parse::<serde_json::Value>(b"{} trailing"), Err(Error::MalformedJson(_))));
    }
    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]

        /// A request body with a byte changed, cut or doubled parses, or is refused with a 400 or
        /// a 422 naming a field: never a panic. What parses also validates or is refused.
        #[test]
        fn damaged_request_bodies_are_parsed_or_refused(
            which in 0usize..3,
            at in proptest::prelude::any::<usize>(),
            byte in proptest::prelude::any::<u8>(),
            how in 0u8..3,
        ) {
            let bodies: [&[u8]; 3] = [
                br#"{"leadId":"lead-1","leadData":{"insuranceTypes":["AUTO","HOME"],"urgency":"HIGH","state":"CA","estimatedValue":25000,"complexity":7,"notes":"two cars"},"excludeBrokers":["b-9"],"requireSpecialties":["AUTO"],"strategy":"specialty","exploration":{"method":"softmax","temperature":0.2}}"#,
                br#"{"id":"b1","name":"B","specialties":[{"type":"AUTO","proficiency":4}],"licenses":[{"state":"CA","lines":["AUTO"],"expiresOn":"2030-01-01"}],"capacity":{"maxConcurrent":5,"dailyCap":20},"sla":{"firstContactMinutes":15},"costPerLead":10,"group":"west"}"#,
                br#"{"type":"converted","value":1200.5,"at":"2026-12-01T10:00:00Z"}"#,
            ];
            let mut body = bodies[which].to_vec();
            let i = at % body.len();
            match how {
                0 => body[i] = byte,
                1 => body.truncate(i),
                _ => { let tail = body[i..].to_vec(); body.extend_from_slice(&tail); }
            }
            let refused = |e: Error| matches!(e, Error::MalformedJson(_) | Error::Invalid { .. });
            match which {
                0 => match parse::<leadrouter_models::DecideRequest>(&body) {
                    Ok(r) => { let _ = r.validate(); }
                    Err(e) => proptest::prop_assert!(refused(e)),
                },
                1 => match parse::<leadrouter_models::Broker>(&body) {
                    Ok(b) => { let _ = b.validate(); }
                    Err(e) => proptest::prop_assert!(refused(e)),
                },
                _ => if let Err(e) = parse::<serde_json::Value>(&body) { proptest::prop_assert!(refused(e)) },
            }
        }
    }
}
