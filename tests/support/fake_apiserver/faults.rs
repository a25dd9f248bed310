//! Fault injection (which requests fail, and how) and the record of requests the fake received.

use super::meta::status_failure;
use serde_json::{json, Value};

/// A request as the fake received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Raw query string (percent-encoded, without `?`).
    pub query: String,
    pub content_type: Option<String>,
    pub body: String,
}

impl Recorded {
    /// A decoded query parameter.
    pub fn param(&self, name: &str) -> Option<String> {
        super::query::parse_query(&self.query).remove(name)
    }
}

/// Which requests a fault applies to. Unset parts match anything.
#[derive(Clone, Debug, Default)]
pub struct RequestMatcher {
    pub method: Option<String>,
    pub path_contains: Option<String>,
    pub query_contains: Option<String>,
    pub content_type: Option<String>,
}

impl RequestMatcher {
    pub fn any() -> Self {
        Self::default()
    }

    pub fn method(mut self, m: &str) -> Self {
        self.method = Some(m.to_ascii_uppercase());
        self
    }

    pub fn path_contains(mut self, s: &str) -> Self {
        self.path_contains = Some(s.into());
        self
    }

    pub fn query_contains(mut self, s: &str) -> Self {
        self.query_contains = Some(s.into());
        self
    }

    pub fn content_type(mut self, s: &str) -> Self {
        self.content_type = Some(s.into());
        self
    }

    pub fn matches(&self, r: &Recorded) -> bool {
        self.method.as_ref().is_none_or(|m| *m == r.method)
            && self
                .path_contains
                .as_ref()
                .is_none_or(|p| r.path.contains(p.as_str()))
            && self
                .query_contains
                .as_ref()
                .is_none_or(|q| super::query::percent_decode(&r.query).contains(q.as_str()))
            && self.content_type.as_ref().is_none_or(|c| {
                r.content_type
                    .as_deref()
                    .is_some_and(|rc| rc.starts_with(c.as_str()))
            })
    }
}

/// How a matched request fails.
#[derive(Clone, Debug)]
pub enum Fault {
    /// An HTTP status with the real Status body for it (429 also gets `Retry-After: 1`).
    Status(u16),
    /// 429 with `Retry-After: <seconds>`.
    TooManyRequests { retry_after_seconds: u32 },
    /// Any status and body.
    Custom { status: u16, body: Value },
    /// Drop the connection without a response.
    Reset,
}

impl Fault {
    /// Status code, body and Retry-After header of a non-reset fault.
    pub fn response(&self) -> Option<(u16, Value, Option<u32>)> {
        let (code, retry) = match self {
            Fault::Reset => return None,
            Fault::Custom { status, body } => return Some((*status, body.clone(), None)),
            Fault::TooManyRequests {
                retry_after_seconds,
            } => (429, Some(*retry_after_seconds)),
            Fault::Status(429) => (429, Some(1)),
            Fault::Status(c) => (*c, None),
        };
        let (reason, message) = match code {
            400 => ("BadRequest", "the server rejected our request for an unknown reason"),
            401 => ("Unauthorized", "Unauthorized"),
            403 => ("Forbidden", "forbidden: injected fault"),
            404 => ("NotFound", "the server could not find the requested resource"),
            409 => ("Conflict", "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again"),
            410 => ("Expired", "The resourceVersion for the provided list is too old."),
            422 => ("Invalid", "the object is invalid"),
            429 => ("TooManyRequests", "the server has received too many requests and has asked us to try again later"),
            500 => ("InternalError", "Internal error occurred: injected fault"),
            503 => ("ServiceUnavailable", "the server is currently unable to handle the request"),
            504 => ("Timeout", "the server was unable to return a response in the time allotted, but may still be processing the request"),
            _ => ("", "injected fault"),
        };
        let details = retry.map(|s| json!({"retryAfterSeconds": s}));
        Some((code, status_failure(code, reason, message, details), retry))
    }
}

#[derive(Clone, Debug)]
pub struct FaultRule {
    pub matcher: RequestMatcher,
    pub remaining: usize,
    pub fault: Fault,
}
