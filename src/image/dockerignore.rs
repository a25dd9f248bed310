//! `.dockerignore` matching with Docker's rules: comments, `!` exceptions, a leading `/`, `*`, `?`, `[...]` and `**`; the last matching line wins and a pattern matching a directory excludes what is inside it.

/// One `.dockerignore` line, cleaned.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    text: Vec<char>,
    exception: bool,
}

/// The patterns of a `.dockerignore` file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matcher {
    patterns: Vec<Pattern>,
}

impl Matcher {
    /// Parses the file's text. Blank lines and `#` comments are ignored; each pattern is
    /// trimmed and cleaned like a path (`./a//b/` -> `a/b`, leading `/` dropped).
    pub fn parse(text: &str) -> Matcher {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, rest) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let cleaned = clean(rest);
            if cleaned.is_empty() {
                continue;
            }
            patterns.push(Pattern {
                text: cleaned.chars().collect(),
                exception,
            });
        }
        Matcher { patterns }
    }

    /// Whether any pattern is an exception (then excluded directories must still be walked).
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exception)
    }

    /// Whether `path` (relative to the context, `/`-separated) is left out of the context.
    pub fn excluded(&self, path: &str) -> bool {
        let path = clean(path);
        let mut excluded = false;
        for pattern in &self.patterns {
            if pattern.exception != excluded {
                continue; // cannot change the verdict
            }
            if matches_or_parent(&pattern.text, &path) {
                excluded = !pattern.exception;
            }
        }
        excluded
    }
}

/// Path-cleans a pattern or path: drops `.` parts, empty parts and a leading `/`.
fn clean(text: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

/// The path or one of its parent directories matches.
fn matches_or_parent(pattern: &[char], path: &str) -> bool {
    let chars: Vec<char> = path.chars().collect();
    if glob(pattern, &chars) {
        return true;
    }
    chars
        .iter()
        .enumerate()
        .filter(|(_, c)| **c == '/')
        .any(|(i, _)| glob(pattern, &chars[..i]))
}

/// Matches a whole path against a pattern; `*` and `?` do not cross `/`, `**` does.
fn glob(p: &[char], s: &[char]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some('*') if p.get(1) == Some(&'*') => {
            let rest = &p[2..];
            if rest.first() == Some(&'/') {
                // `**/`: zero or more whole directories.
                let after = &rest[1..];
                glob(after, s)
                    || s.iter()
                        .enumerate()
                        .any(|(i, c)| *c == '/' && glob(after, &s[i + 1..]))
            } else {
                (0..=s.len()).any(|i| glob(rest, &s[i..]))
            }
        }
        Some('*') => {
            let rest = &p[1..];
            for i in 0..=s.len() {
                if glob(rest, &s[i..]) {
                    return true;
                }
                if i < s.len() && s[i] == '/' {
                    break;
                }
            }
            false
        }
        Some('?') => s.first().is_some_and(|c| *c != '/') && glob(&p[1..], &s[1..]),
        Some('[') => match (class(&p[1..]), s.first()) {
            (Some((matcher, used)), Some(c)) if *c != '/' => {
                matcher(*c) && glob(&p[1 + used..], &s[1..])
            }
            (None, Some(c)) => *c == '[' && glob(&p[1..], &s[1..]),
            _ => false,
        },
        Some('\\') if p.len() > 1 => s.first() == Some(&p[1]) && glob(&p[2..], &s[1..]),
        Some(c) => s.first() == Some(c) && glob(&p[1..], &s[1..]),
    }
}

type ClassMatcher = Box<dyn Fn(char) -> bool>;

/// Parses `[...]` (after the `[`): returns the matcher and how many pattern chars it used.
fn class(p: &[char]) -> Option<(ClassMatcher, usize)> {
    let mut i = 0;
    let negated = matches!(p.first(), Some('^') | Some('!'));
    if negated {
        i += 1;
    }
    let mut ranges: Vec<(char, char)> = Vec::new();
    let mut first = true;
    while i < p.len() {
        let c = p[i];
        if c == ']' && !first {
            let matcher =
                move |x: char| ranges.iter().any(|(lo, hi)| *lo <= x && x <= *hi) != negated;
            return Some((Box::new(matcher), i + 1));
        }
        first = false;
        let lo = if c == '\\' && i + 1 < p.len() {
            i += 1;
            p[i]
        } else {
            c
        };
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|c| *c != ']') {
            ranges.push((lo, p[i + 2]));
            i += 3;
        } else {
            ranges.push((lo, lo));
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_rules() {
        let table: &[(&str, &str, bool)] = &[
            ("secret.txt", "secret.txt", true),
            ("secret.txt", "sub/secret.txt", false),
            ("/secret.txt", "secret.txt", true),
            ("./secret.txt", "secret.txt", true),
            ("*.log", "a.log", true),
            ("*.log", "dir/a.log", false),
            ("*/*.log", "dir/a.log", true),
            ("**/*.log", "a.log", true),
            ("**/*.log", "x/y/z/a.log", true),
            ("node_modules", "node_modules/pkg/index.js", true),
            ("build/", "build/out.o", true),
            ("docs/**", "docs/a/b.md", true),
            ("docs/**", "docsx/a.md", false),
            ("a?c", "abc", true),
            ("a?c", "a/c", false),
            ("[a-c]x", "bx", true),
            ("[^a-c]x", "bx", false),
            ("[!a-c]x", "dx", true),
            ("# comment", "# comment", false),
            ("tmp\n!tmp/keep.txt", "tmp/keep.txt", false),
            ("tmp\n!tmp/keep.txt", "tmp/drop.txt", true),
            ("*.md\n!README.md", "README.md", false),
            ("*.md\n!README.md\nREADME.md", "README.md", true),
            ("  spaced.txt  ", "spaced.txt", true),
            ("", "anything", false),
            ("a/**/b", "a/b", true),
            ("a/**/b", "a/x/y/b", true),
            ("\\*x", "*x", true),
            ("\\*x", "ax", false),
        ];
        for (file, path, want) in table {
            let matcher = Matcher::parse(file);
            assert_eq!(matcher.excluded(path), *want, "{file:?} vs {path:?}");
        }
    }

    #[test]
    fn exceptions_flag() {
        assert!(Matcher::parse("a\n!a/b").has_exceptions());
        assert!(!Matcher::parse("a\n# !b").has_exceptions());
    }
}
