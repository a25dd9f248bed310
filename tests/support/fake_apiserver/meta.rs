//! Small helpers shared by the fake: timestamps, uids, names, hashes and Status bodies.

use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static COUNTER: AtomicU64 = AtomicU64::new(1);

/// RFC 3339 UTC timestamp with second precision, like `metav1.Time`.
pub fn now_rfc3339() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format_time(d.as_secs(), None)
}

/// RFC 3339 UTC timestamp with microseconds, like `metav1.MicroTime`.
pub fn now_micro() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format_time(d.as_secs(), Some(d.subsec_micros()))
}

fn format_time(secs: u64, micros: Option<u32>) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (h, mi, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    match micros {
        Some(us) => format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{us:06}Z"),
        None => format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"),
    }
}

fn next_random() -> u64 {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ t;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x
}

/// A fresh version-4-shaped uid.
pub fn new_uid() -> String {
    let a = next_random();
    let b = next_random();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | (b >> 48) & 0x3fff,
        b & 0xffff_ffff_ffff
    )
}

/// The alphabet apimachinery's `rand.String` and `SafeEncodeString` use (no vowels, no look-alikes).
const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A random suffix like the one `generateName` gets (`utilrand.String(5)`).
pub fn random_suffix(n: usize) -> String {
    let mut x = next_random();
    (0..n)
        .map(|_| {
            let c = ALPHANUMS[(x % ALPHANUMS.len() as u64) as usize] as char;
            x /= ALPHANUMS.len() as u64;
            if x == 0 {
                x = next_random();
            }
            c
        })
        .collect()
}

/// A random hex string, like the suffix of Event names.
pub fn random_hex(n: usize) -> String {
    let s = format!("{:016x}{:016x}", next_random(), next_random());
    s[..n].to_string()
}

/// FNV-32a of the value's JSON, safe-encoded like `controller.ComputeHash` (pod-template-hash).
pub fn template_hash(v: &Value) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in v.to_string().bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h.to_string()
        .bytes()
        .map(|b| ALPHANUMS[(b as usize) % ALPHANUMS.len()] as char)
        .collect()
}

/// A `metav1.Status` failure body.
pub fn status_failure(code: u16, reason: &str, message: &str, details: Option<Value>) -> Value {
    let mut v = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let Some(d) = details {
        v["details"] = d;
    }
    v
}

/// `details` of a Status for an object: `{name, group?, kind: <plural>}` like the real server.
pub fn details(group: &str, plural: &str, name: &str) -> Value {
    let mut d = json!({"name": name, "kind": plural});
    if !group.is_empty() {
        d["group"] = json!(group);
    }
    d
}

/// `deployments.apps "web"` / `configmaps "x"`: the qualified resource the real messages use.
pub fn qualified(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

pub fn not_found(group: &str, plural: &str, name: &str) -> Value {
    status_failure(
        404,
        "NotFound",
        &format!("{} \"{name}\" not found", qualified(group, plural)),
        Some(details(group, plural, name)),
    )
}

pub fn conflict_modified(group: &str, plural: &str, name: &str) -> Value {
    status_failure(
        409,
        "Conflict",
        &format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
            qualified(group, plural)
        ),
        Some(details(group, plural, name)),
    )
}

pub fn bad_request(message: &str) -> Value {
    status_failure(400, "BadRequest", message, None)
}

/// Read a string at a dotted path of object keys.
pub fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_str()
}
