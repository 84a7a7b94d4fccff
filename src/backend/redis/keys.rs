//! Redis key names: glob matching (as the server does it) and reversible escaping.
//!
//! Protected patterns are checked on the client, after SCAN, with the server's own glob
//! rules (`*`, `?`, `[a-z]`, `[^x]`, `\` escapes) so "protected" means exactly what it would
//! mean to `SCAN MATCH`. Keys are binary-safe; plans and the audit log show them as text with
//! non-printable bytes written `\xHH` (and `\` as `\\`), which [`unescape`] turns back into
//! the exact bytes when the plan is applied.

/// Whether `key` matches the Redis glob `pattern` (stringmatchlen semantics).
pub fn glob_match(pattern: &[u8], key: &[u8]) -> bool {
    let (mut p, mut k) = (0usize, 0usize);
    // backtracking point for the last `*`: (pattern index after it, key index)
    let mut star: Option<(usize, usize)> = None;
    while k < key.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    star = Some((p + 1, k));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    k += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class_match(pattern, p, key[k])
                        && matched
                    {
                        p = next;
                        k += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pattern.len() && pattern[p + 1] == key[k] => {
                    p += 2;
                    k += 1;
                    continue;
                }
                // an escape that does not match never falls through to a literal `\`
                b'\\' if p + 1 < pattern.len() => {}
                c if c == key[k] => {
                    p += 1;
                    k += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sk)) => {
                p = sp;
                k = sk + 1;
                star = Some((sp, sk + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the class starting at `pattern[start] == b'['`. Returns whether it
/// matched and the index after the class; `None` for an unterminated class (then `[` is
/// compared literally, as the server does for a class running to the end).
fn class_match(pattern: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    loop {
        let &pc = pattern.get(i)?;
        match pc {
            b']' => break,
            b'\\' if i + 1 < pattern.len() => {
                matched |= pattern[i + 1] == c;
                i += 2;
            }
            _ if pattern.get(i + 1) == Some(&b'-')
                && pattern.get(i + 2).is_some_and(|&e| e != b']') =>
            {
                let (lo, hi) = (pc.min(pattern[i + 2]), pc.max(pattern[i + 2]));
                matched |= (lo..=hi).contains(&c);
                i += 3;
            }
            _ => {
                matched |= pc == c;
                i += 1;
            }
        }
    }
    Some((matched != negate, i + 1))
}

/// Text form of a binary key: printable ASCII as is, `\` as `\\`, other bytes as `\xHH`.
pub fn escape(key: &[u8]) -> String {
    let mut out = String::with_capacity(key.len());
    for &b in key {
        match b {
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

/// The exact bytes of an [`escape`]d key; `None` if `text` is not a valid escape.
pub fn unescape(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => match bytes.get(i + 1)? {
                b'\\' => {
                    out.push(b'\\');
                    i += 2;
                }
                b'x' => {
                    let hex = std::str::from_utf8(bytes.get(i + 2..i + 4)?).ok()?;
                    out.push(u8::from_str_radix(hex, 16).ok()?);
                    i += 4;
                }
                _ => return None,
            },
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_the_server() {
        let m = |p: &str, k: &str| glob_match(p.as_bytes(), k.as_bytes());
        assert!(m("doc_segments:*", "doc_segments:42"));
        assert!(m("doc_segments:*", "doc_segments:"));
        assert!(!m("doc_segments:*", "doc_segment:42"));
        assert!(m("*", ""));
        assert!(m("a*b*c", "axxbyyc"));
        assert!(!m("a*b*c", "axxbyy"));
        assert!(m("h?llo", "hello") && !m("h?llo", "hllo"));
        assert!(m("h[ae]llo", "hallo") && !m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo") && !m("h[^e]llo", "hello"));
        assert!(m("h[a-c]llo", "hbllo") && !m("h[a-c]llo", "hdllo"));
        assert!(m("key\\*", "key*") && !m("key\\*", "keyX"));
        assert!(
            !m("\\*", "\\"),
            "a failed escape is not a literal backslash"
        );
        assert!(m("session:*:lock", "session:a:b:lock"));
        // sibling prefixes: `user:1:*` does not protect `user:10:x`
        assert!(!m("user:1:*", "user:10:x"));
    }

    #[test]
    fn escaping_round_trips_any_bytes() {
        let keys: [&[u8]; 5] = [
            b"plain:key",
            b"with space",
            b"back\\slash",
            b"\x00\xff\x7f\n",
            "ünï".as_bytes(),
        ];
        for key in keys {
            let text = escape(key);
            assert!(text.is_ascii());
            assert_eq!(unescape(&text).as_deref(), Some(key), "{text}");
        }
        assert_eq!(escape(b"a\xffb"), "a\\xffb");
        assert_eq!(unescape("bad\\q"), None);
        assert_eq!(unescape("bad\\x1"), None);
    }
}
