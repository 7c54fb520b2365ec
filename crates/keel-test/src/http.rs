//! [`Response`]: an HTTP response as API tests check it, whether it came from a router driven
//! in process or from a server over a socket. Its body is checked for leaks when it is made
//! (SQL, backtraces, a password), and error bodies have the shape
//! `{ "error": { "kind": …, "message": … } }`.

use serde_json::Value;

/// What must never appear in a response body: SQL and panic output.
const LEAKS: &[&str] = &["SELECT", "INSERT", "UPDATE ", "DELETE FROM", "stack backtrace", "panicked"];

/// One response, its body already checked for leaks.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: http::HeaderMap,
    /// The body.
    pub text: String,
}

impl Response {
    /// A response, after checking that `text` contains no SQL, no panic output and not
    /// `secret` (the database password, when the test set one).
    ///
    /// # Panics
    /// When the body leaks any of these.
    #[track_caller]
    pub fn new(status: u16, headers: http::HeaderMap, text: String, secret: Option<&str>) -> Response {
        for leak in LEAKS {
            assert!(!text.contains(leak), "{leak:?} leaked into a response: {text}");
        }
        if let Some(secret) = secret {
            assert!(!text.contains(secret), "the password leaked into a response: {text}");
        }
        Response { status, headers, text }
    }

    /// The body as JSON (panics when it is not).
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// The error kind of an error response (and a check of its shape: a non-empty message).
    #[track_caller]
    pub fn kind(&self) -> String {
        let v = self.json();
        let err = &v["error"];
        assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()), "no message: {v}");
        err["kind"].as_str().unwrap_or_else(|| panic!("not an error body: {v}")).to_owned()
    }

    /// Asserts the status and, for errors, the kind.
    #[track_caller]
    pub fn expect(&self, status: u16, kind: Option<&str>) -> &Self {
        assert_eq!(self.status, status, "{}", self.text);
        if let Some(kind) = kind {
            assert_eq!(self.kind(), kind, "{}", self.text);
        }
        self
    }

    /// The body of a Prometheus scrape, after checking it is a 200 in the text exposition
    /// format (`text/plain; version=0.0.4`).
    #[track_caller]
    pub fn into_prometheus_text(self) -> String {
        self.expect(200, None);
        let ct = self.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
        self.text
    }

    /// The `Retry-After` header, if any.
    pub fn retry_after(&self) -> Option<&str> {
        self.headers.get("retry-after").and_then(|v| v.to_str().ok())
    }
}
