//! Parsers for the value syntaxes inputs use: booleans, durations, counts, lists and maps.
//!
//! Each parser returns a short message (no input name) that the caller wraps with the input's
//! name and a hint, so every syntax is documented and enforced in exactly one place.

use std::collections::BTreeMap;
use std::time::Duration;

/// YAML 1.2 core booleans, the only forms GitHub's own toolkit accepts.
pub fn parse_bool(raw: &str) -> Result<bool, String> {
    match raw.trim() {
        "true" | "True" | "TRUE" => Ok(true),
        "false" | "False" | "FALSE" => Ok(false),
        other => Err(format!(
            "`{other}` is not a boolean; use true or false (YAML 1.2 forms: true, True, TRUE, false, False, FALSE)"
        )),
    }
}

/// A duration written as one or more `<number><unit>` parts, units `ms`, `s`, `m`, `h`:
/// `500ms`, `90s`, `10m`, `1h30m`. A bare number is rejected because its unit would be a guess.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let text = raw.trim();
    let hint = "write a number with a unit, e.g. 90s, 10m or 1h30m (units: ms, s, m, h)";
    if text.is_empty() {
        return Err(format!("empty duration; {hint}"));
    }
    if text.contains(['.', ',']) {
        return Err(format!(
            "`{text}` has a fraction; write whole numbers of smaller units instead (1m30s, not 1.5m); {hint}"
        ));
    }
    if text.contains(char::is_whitespace) {
        return Err(format!("`{text}` is not a duration (no spaces); {hint}"));
    }
    let mut total_ms: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("`{text}` is not a duration; {hint}"));
        }
        let number: u128 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{text}` is too large a duration; {hint}"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit_ms = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "" => return Err(format!("`{text}` has a number without a unit; {hint}")),
            unit => return Err(format!("`{text}` has an unknown unit `{unit}`; {hint}")),
        };
        rest = &rest[unit_len..];
        total_ms = number
            .checked_mul(unit_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .filter(|ms| *ms <= u128::from(u64::MAX))
            .ok_or_else(|| format!("`{text}` is too large a duration; {hint}"))?;
    }
    Ok(Duration::from_millis(total_ms as u64))
}

/// Formats a duration in the syntax [`parse_duration`] reads (`1h30m`, `90s`, `250ms`).
pub fn format_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    let (hours, minutes, seconds, millis) =
        (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let mut out = String::new();
    for (value, unit) in [(hours, "h"), (minutes, "m"), (seconds, "s"), (millis, "ms")] {
        if value > 0 {
            out.push_str(&format!("{value}{unit}"));
        }
    }
    out
}

/// A whole number within `min..=max`.
pub fn parse_count(raw: &str, min: u64, max: u64) -> Result<u64, String> {
    let text = raw.trim();
    match text.parse::<u64>() {
        Ok(value) if (min..=max).contains(&value) => Ok(value),
        _ => Err(format!(
            "`{text}` is not a whole number from {min} to {max}"
        )),
    }
}

/// Items separated by newlines or commas; surrounding spaces trimmed, empty items dropped.
/// A YAML block scalar (`|`) in a workflow gives one item per line.
pub fn parse_list(raw: &str) -> Vec<String> {
    raw.split(['\n', ','])
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

/// `key=value` pairs, one per line; the first `=` splits, so values may contain `=` and commas.
/// Blank lines and lines starting with `#` are ignored. Keys must be unique.
pub fn parse_map(raw: &str) -> Result<BTreeMap<String, String>, Vec<String>> {
    let mut map = BTreeMap::new();
    let mut problems = Vec::new();
    for (index, line) in raw.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line_no = index + 1;
        match line.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                let key = key.trim().to_string();
                if map.insert(key.clone(), value.trim().to_string()).is_some() {
                    problems.push(format!("line {line_no}: `{key}` is given twice"));
                }
            }
            _ => problems.push(format!(
                "line {line_no}: expected `name=value`, got `{}`",
                shorten(line, 60)
            )),
        }
    }
    if problems.is_empty() {
        Ok(map)
    } else {
        Err(problems)
    }
}

/// The closest candidate to `given` when it is plausibly a typo (edit distance at most 2).
pub fn suggest<'a>(given: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|candidate| (edit_distance(given, candidate), *candidate))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// Cuts `text` to at most `max` characters for quoting it in a message.
pub fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_accept_only_yaml_1_2_forms() {
        for (raw, expected) in [
            ("true", Some(true)),
            ("True", Some(true)),
            ("TRUE", Some(true)),
            (" false ", Some(false)),
            ("False", Some(false)),
            ("FALSE", Some(false)),
            ("yes", None),
            ("no", None),
            ("1", None),
            ("0", None),
            ("on", None),
            ("tRUE", None),
            ("", None),
        ] {
            assert_eq!(parse_bool(raw).ok(), expected, "input {raw:?}");
        }
    }

    #[test]
    fn durations_need_units_and_combine_parts() {
        for (raw, expected_ms) in [
            ("90s", Some(90_000)),
            ("10m", Some(600_000)),
            ("1h30m", Some(5_400_000)),
            ("250ms", Some(250)),
            ("1m30s", Some(90_000)),
            (" 5m ", Some(300_000)),
            ("0s", Some(0)),
            ("300", None),
            ("5 m", None),
            ("5min", None),
            ("-5s", None),
            ("1.5h", None),
            ("s", None),
            ("", None),
            ("99999999999999999999h", None),
        ] {
            assert_eq!(
                parse_duration(raw).ok().map(|d| d.as_millis() as u64),
                expected_ms,
                "input {raw:?}"
            );
        }
    }

    #[test]
    fn durations_format_back_to_the_same_syntax() {
        for raw in ["90s", "10m", "1h30m", "250ms", "1h1m1s1ms", "0s"] {
            let parsed = parse_duration(raw).unwrap();
            let formatted = format_duration(parsed);
            assert_eq!(
                parse_duration(&formatted).unwrap(),
                parsed,
                "{raw} -> {formatted}"
            );
        }
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
    }

    #[test]
    fn counts_are_bounded_whole_numbers() {
        assert_eq!(parse_count("10", 1, 256), Ok(10));
        assert!(parse_count("0", 1, 256).is_err());
        assert!(parse_count("257", 1, 256).is_err());
        assert!(parse_count("2.5", 1, 256).is_err());
        assert!(parse_count("-1", 0, 5).is_err());
        assert!(parse_count("ten", 0, 5).is_err());
    }

    #[test]
    fn lists_split_on_newlines_and_commas() {
        assert_eq!(
            parse_list("infra, build\ndeploy\n\n"),
            ["infra", "build", "deploy"]
        );
        assert_eq!(parse_list("  "), Vec::<String>::new());
        assert_eq!(parse_list("a,,b"), ["a", "b"]);
    }

    #[test]
    fn maps_split_on_the_first_equals_sign() {
        let map = parse_map("region=eu-west-1\n# comment\n\ntags={a=\"1\", b=\"2\"}\n").unwrap();
        assert_eq!(map["region"], "eu-west-1");
        assert_eq!(map["tags"], "{a=\"1\", b=\"2\"}");
        let problems = parse_map("good=1\nno-equals\n=empty-key\ngood=2").unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("line 2"));
        assert!(problems[2].contains("given twice"));
    }

    #[test]
    fn suggestions_catch_typos_only() {
        assert_eq!(
            suggest("biuld", &["infra", "build", "deploy"]),
            Some("build")
        );
        assert_eq!(
            suggest("deplyo", &["infra", "build", "deploy"]),
            Some("deploy")
        );
        assert_eq!(suggest("kubernetes", &["infra", "build", "deploy"]), None);
    }
}
