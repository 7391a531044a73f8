//! The two invocations that are not about one object: an HTTP request through the function's
//! Lambda Function URL (payload format 2.0; Braze's export callback) and an EventBridge
//! schedule (`aws.events` / `Scheduled Event`; the sweep that closes quiet exports). Both are
//! read leniently, like the S3 envelopes: only the fields used are required.

use serde_json::{Value, json};

use super::TriggerError;

/// One HTTP request through the Function URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Upper case: `POST`, `GET`…
    pub method: String,
    /// The raw path, not decoded: `/braze/export-callback/<token>`.
    pub path: String,
    /// Query parameters in order, names and values form-URL-decoded.
    pub query: Vec<(String, String)>,
    /// The body's bytes (base64-decoded when the payload says so).
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// The first value of the query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An answer in the Function URL's response shape: `statusCode`, headers and a JSON body.
pub fn http_response(status: u16, body: &Value) -> Value {
    json!({
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": body.to_string(),
        "isBase64Encoded": false,
    })
}

/// Whether the event is a Function URL (or API Gateway HTTP API) request, payload 2.0.
pub fn is_http(event: &Value) -> bool {
    event.get("rawPath").is_some_and(Value::is_string)
        && event
            .pointer("/requestContext/http/method")
            .is_some_and(Value::is_string)
}

/// Whether the event is an EventBridge schedule's (a rule's `Scheduled Event`, or an
/// EventBridge Scheduler target given the same shape).
pub fn is_scheduled(event: &Value) -> bool {
    event.get("source").and_then(Value::as_str) == Some("aws.events")
        && event.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event")
}

/// Reads a Function URL request (see [`is_http`]).
pub fn parse_http(event: &Value) -> Result<HttpRequest, TriggerError> {
    let unrecognised = |reason| TriggerError::Unrecognised {
        reason,
        snippet: super::snippet(event),
    };
    let method = event
        .pointer("/requestContext/http/method")
        .and_then(Value::as_str)
        .ok_or_else(|| unrecognised("a Function URL request without requestContext.http.method"))?
        .to_ascii_uppercase();
    let path = event
        .get("rawPath")
        .and_then(Value::as_str)
        .ok_or_else(|| unrecognised("a Function URL request without rawPath"))?
        .to_string();
    let raw_query = event
        .get("rawQueryString")
        .and_then(Value::as_str)
        .unwrap_or("");
    let query = raw_query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(name), form_decode(value))
        })
        .collect();
    let text = event.get("body").and_then(Value::as_str).unwrap_or("");
    let body = if event
        .get("isBase64Encoded")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| unrecognised("a Function URL request whose base64 body does not decode"))?
    } else {
        text.as_bytes().to_vec()
    };
    Ok(HttpRequest {
        method,
        path,
        query,
        body,
    })
}

/// Form-URL decoding (`+` is a space, then `%XX`); a malformed escape is kept as it is.
fn form_decode(s: &str) -> String {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(file: &str) -> Value {
        let path = format!("{}/events/{file}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    #[test]
    fn the_callback_example_reads_as_a_post_with_its_segment() {
        let e = event("function-url-export-callback.json");
        assert!(is_http(&e) && !is_scheduled(&e));
        let r = parse_http(&e).unwrap();
        assert_eq!(r.method, "POST");
        assert!(r.path.starts_with("/braze/export-callback/"), "{}", r.path);
        assert_eq!(
            r.param("segment_id"),
            Some("abc56c0c-rd4a-pb0a-870pdf4db07q")
        );
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["success"], true);
    }

    #[test]
    fn the_schedule_example_is_a_scheduled_event_and_nothing_else() {
        let e = event("schedule.json");
        assert!(is_scheduled(&e) && !is_http(&e));
        let s3 = event("eventbridge-object-created.json");
        assert!(!is_scheduled(&s3) && !is_http(&s3));
    }

    #[test]
    fn query_and_body_are_decoded() {
        let e = json!({
            "rawPath": "/x", "rawQueryString": "segment_id=a%2Fb+c&export=global_control_group&flag",
            "requestContext": {"http": {"method": "post"}},
            "body": "eyJzdWNjZXNzIjpmYWxzZX0=", "isBase64Encoded": true,
        });
        let r = parse_http(&e).unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.param("segment_id"), Some("a/b c"));
        assert_eq!(r.param("export"), Some("global_control_group"));
        assert_eq!(r.param("flag"), Some(""));
        assert_eq!(r.body, br#"{"success":false}"#);
        let bad = json!({"rawPath": "/x", "requestContext": {"http": {"method": "POST"}},
            "body": "%%%", "isBase64Encoded": true});
        assert!(parse_http(&bad).is_err());
    }

    #[test]
    fn responses_have_the_function_url_shape() {
        let r = http_response(202, &json!({"result": "waiting"}));
        assert_eq!(r["statusCode"], 202);
        let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["result"], "waiting");
    }
}
