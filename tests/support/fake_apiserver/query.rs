//! Query strings and label/field selectors as the API server parses them.

use serde_json::Value;
use std::collections::HashMap;

pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(v) => {
                    out.push(v);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

#[derive(Clone, Debug)]
enum Req {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A label selector (`a=b,c!=d,e in (x,y),!f`) or field selector (`metadata.name=x`).
#[derive(Clone, Debug, Default)]
pub struct Selector {
    reqs: Vec<Req>,
    fields: bool,
}

fn split_top(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn set_values(s: &str) -> Vec<String> {
    s.trim()
        .trim_start_matches('(')
        .trim_end_matches(')')
        .split(',')
        .map(|v| v.trim().to_string())
        .collect()
}

impl Selector {
    pub fn labels(s: &str) -> Self {
        Self::parse(s, false)
    }

    pub fn fields(s: &str) -> Self {
        Self::parse(s, true)
    }

    fn parse(s: &str, fields: bool) -> Self {
        let reqs = split_top(s)
            .into_iter()
            .map(|r| {
                if let Some((k, v)) = r.split_once("!=") {
                    Req::Ne(k.trim().into(), v.trim().into())
                } else if let Some((k, v)) = r.split_once("==") {
                    Req::Eq(k.trim().into(), v.trim().into())
                } else if let Some((k, v)) = r.split_once('=') {
                    Req::Eq(k.trim().into(), v.trim().into())
                } else if let Some((k, v)) = r.split_once(" notin ") {
                    Req::NotIn(k.trim().into(), set_values(v))
                } else if let Some((k, v)) = r.split_once(" in ") {
                    Req::In(k.trim().into(), set_values(v))
                } else if let Some(k) = r.strip_prefix('!') {
                    Req::NotExists(k.trim().into())
                } else {
                    Req::Exists(r)
                }
            })
            .collect();
        Selector { reqs, fields }
    }

    fn value_of(&self, obj: &Value, key: &str) -> Option<String> {
        if self.fields {
            let mut cur = obj;
            for p in key.split('.') {
                cur = cur.get(p)?;
            }
            Some(match cur {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        } else {
            obj["metadata"]["labels"]
                .get(key)
                .and_then(Value::as_str)
                .map(String::from)
        }
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.reqs.iter().all(|r| match r {
            Req::Eq(k, v) => self.value_of(obj, k).as_deref() == Some(v.as_str()),
            Req::Ne(k, v) => self.value_of(obj, k).as_deref() != Some(v.as_str()),
            Req::In(k, vs) => self.value_of(obj, k).is_some_and(|x| vs.contains(&x)),
            Req::NotIn(k, vs) => self.value_of(obj, k).is_none_or(|x| !vs.contains(&x)),
            Req::Exists(k) => self.value_of(obj, k).is_some(),
            Req::NotExists(k) => self.value_of(obj, k).is_none(),
        })
    }
}
