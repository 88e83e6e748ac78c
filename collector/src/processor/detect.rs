//! The built-in value detectors of the `redact` processor: emails, phone
//! numbers, payment cards (Luhn-checked), IPv4/IPv6 addresses, bearer tokens
//! and API-key-like strings.
//!
//! Built for text that almost never contains anything to redact: every
//! detector starts from a cheap prefilter and does real work only around a
//! candidate, and nothing allocates unless a match is found.
//! - email: `memchr` for `@`, then expand over local-part and domain bytes;
//! - cards, phones, IPv4: one scan that samples every *k*-th byte (*k* the
//!   shortest possible match, 13 for cards, 7 for phones and IPv4) and only
//!   expands runs of digits and separators around a sampled byte;
//! - IPv6: `memchr` for `::` or a colon, then a parse of the window;
//! - bearer tokens and API keys: one regular expression whose literal
//!   prefixes (`bearer`, `sk-`, `ghp_`, `AKIA`, …) the regex engine's SIMD
//!   prefilter looks for.

use std::net::Ipv6Addr;
use std::sync::OnceLock;

use regex::bytes::Regex;

/// One built-in detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Detector {
    /// `user@example.com`.
    Email,
    /// Formatted phone numbers: `+1 415 555 0100`, `(415) 555-0100`.
    Phone,
    /// 13 to 19 digits (single spaces or dashes between groups allowed)
    /// passing the Luhn check.
    PaymentCard,
    /// Dotted quad `192.168.10.1`.
    Ipv4,
    /// `2001:db8::1` and other RFC 4291 text forms.
    Ipv6,
    /// The token after `Bearer ` (the word itself stays).
    BearerToken,
    /// Strings shaped like well-known API keys: `sk-…`, `sk_live_…`,
    /// `ghp_…`, `github_pat_…`, `xox[bpas]-…`, `AKIA…`, `AIza…`,
    /// `glpat-…`, `xr_…` (X-Ray's own keys).
    ApiKey,
}

impl Detector {
    /// Every detector, in the order of [`xray_config::DETECTORS`].
    pub(crate) const ALL: [Detector; 7] = [
        Detector::Email,
        Detector::Phone,
        Detector::PaymentCard,
        Detector::Ipv4,
        Detector::Ipv6,
        Detector::BearerToken,
        Detector::ApiKey,
    ];

    /// The configuration and rule name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Detector::Email => "email",
            Detector::Phone => "phone",
            Detector::PaymentCard => "payment_card",
            Detector::Ipv4 => "ipv4",
            Detector::Ipv6 => "ipv6",
            Detector::BearerToken => "bearer_token",
            Detector::ApiKey => "api_key",
        }
    }

    /// The detector called `name`.
    pub(crate) fn from_name(name: &str) -> Option<Detector> {
        Detector::ALL.into_iter().find(|d| d.name() == name)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of enabled detectors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Detectors(u8);

impl Detectors {
    /// The set of `list`.
    pub(crate) fn of(list: &[Detector]) -> Self {
        Detectors(list.iter().fold(0, |acc, d| acc | d.bit()))
    }

    /// Whether `d` is enabled.
    pub(crate) fn has(self, d: Detector) -> bool {
        self.0 & d.bit() != 0
    }
}

/// A detected value: byte range in the text, and who found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    /// Start byte.
    pub(crate) start: usize,
    /// End byte (exclusive).
    pub(crate) end: usize,
    /// The detector.
    pub(crate) detector: Detector,
}

/// Appends every match in `text` to `out`, sorted by start and without
/// overlaps (the earlier, then the longer, match wins). Allocates nothing
/// when there is no match.
pub(crate) fn find(text: &str, set: Detectors, out: &mut Vec<Found>) {
    let first = out.len();
    let b = text.as_bytes();
    if set.has(Detector::Email) {
        emails(b, out);
    }
    if set.has(Detector::PaymentCard) || set.has(Detector::Phone) || set.has(Detector::Ipv4) {
        numeric(b, set, out);
    }
    if set.has(Detector::Ipv6) {
        ipv6(text, out);
    }
    if set.has(Detector::BearerToken) || set.has(Detector::ApiKey) {
        tokens(b, set, out);
    }
    if out.len() - first > 1 {
        let found = &mut out[first..];
        found.sort_by_key(|f| (f.start, std::cmp::Reverse(f.end)));
        let mut kept = first;
        for i in first..out.len() {
            if kept > first && out[i].start < out[kept - 1].end {
                continue;
            }
            out[kept] = out[i];
            kept += 1;
        }
        out.truncate(kept);
    }
}

fn is_local(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_domain(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-')
}

fn emails(b: &[u8], out: &mut Vec<Found>) {
    let mut from = 0;
    for at in memchr::memchr_iter(b'@', b) {
        if at < from {
            continue;
        }
        let mut start = at;
        while start > from && is_local(b[start - 1]) {
            start -= 1;
        }
        while start < at && b[start] == b'.' {
            start += 1;
        }
        if start == at {
            continue;
        }
        let mut end = at + 1;
        while end < b.len() && is_domain(b[end]) {
            end += 1;
        }
        while end > at + 1 && matches!(b[end - 1], b'.' | b'-') {
            end -= 1;
        }
        let domain = &b[at + 1..end];
        let Some(dot) = domain.iter().rposition(|&c| c == b'.') else {
            continue;
        };
        let tld = &domain[dot + 1..];
        if dot == 0 || tld.len() < 2 || !tld.iter().all(u8::is_ascii_alphabetic) {
            continue;
        }
        out.push(Found {
            start,
            end,
            detector: Detector::Email,
        });
        from = end;
    }
}

fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// Byte classes of the numeric scan, one table per combination of the
/// card, phone and IPv4 detectors (index: card | phone << 1 | ipv4 << 2).
static NUMERIC_SETS: [[bool; 256]; 8] = {
    let mut tables = [[false; 256]; 8];
    let mut k = 0;
    while k < 8 {
        let (card, phone, ip) = (k & 1 != 0, k & 2 != 0, k & 4 != 0);
        let mut c = 0;
        while c < 256 {
            let b = c as u8;
            tables[k][c] = b.is_ascii_digit()
                || ((card || phone) && (b == b' ' || b == b'-'))
                || ((phone || ip) && b == b'.')
                || (phone && (b == b'(' || b == b')' || b == b'+'));
            c += 1;
        }
        k += 1;
    }
    tables
};

fn numeric_set(set: Detectors) -> &'static [bool; 256] {
    let k = usize::from(set.has(Detector::PaymentCard))
        | usize::from(set.has(Detector::Phone)) << 1
        | usize::from(set.has(Detector::Ipv4)) << 2;
    &NUMERIC_SETS[k]
}

/// Cards, phones and IPv4 addresses: runs of digits and separators,
/// found by sampling every `stride`-th byte.
fn numeric(b: &[u8], set: Detectors, out: &mut Vec<Found>) {
    let stride = if set.has(Detector::Phone) || set.has(Detector::Ipv4) {
        7
    } else {
        13
    };
    let in_set = numeric_set(set);
    let half = stride / 2;
    let mut i = stride - 1;
    let mut covered = 0;
    while i < b.len() {
        // A match of at least `stride` bytes contains a sampled byte,
        // which is a digit or a separator followed by a digit (separators
        // stand alone between digit groups). Spaces in prose are not.
        // And since a match is at least `stride` bytes long, one of the
        // bytes `half` before or after the sample is in the match too. All
        // checks are table lookups combined without branches: in
        // digit-dense JSON (ids, prices) the one branch below is still
        // rarely taken.
        let at = |j: usize| b.get(j).map_or(0u8, |&c| c);
        let class = |j: usize| in_set[usize::from(at(j))];
        let c = b[i];
        let hit = (c.is_ascii_digit() | (in_set[usize::from(c)] & at(i + 1).is_ascii_digit()))
            & (class(i.wrapping_sub(half)) | class(i + half));
        if i < covered || !hit {
            i += stride;
            continue;
        }
        let mut l = i;
        while l > covered && in_set[usize::from(b[l - 1])] {
            l -= 1;
        }
        let mut r = i + 1;
        while r < b.len() && in_set[usize::from(b[r])] {
            r += 1;
        }
        if r - l >= 7 {
            run(b, l, r, set, out);
        }
        covered = r;
        i = r + stride - 1;
    }
}

/// Looks for cards, phones and IPv4 addresses inside the run `b[l..r]`.
fn run(b: &[u8], l: usize, r: usize, set: Detectors, out: &mut Vec<Found>) {
    let mut s = l;
    while s < r {
        // A segment: optional `+` or `(`, then digit groups joined by one
        // separator (`)` may come before it: `(415) 555`).
        while s < r && !(b[s].is_ascii_digit() || b[s] == b'+' || b[s] == b'(') {
            s += 1;
        }
        if s >= r {
            break;
        }
        let lead = !b[s].is_ascii_digit();
        let mut e = s + usize::from(lead);
        let mut digits = [0u8; 20];
        let mut n = 0usize;
        let mut groups = 0usize;
        let mut dots = 0usize;
        let mut only_dots = true;
        let mut card_seps = true;
        let mut end = s;
        while e < r && b[e].is_ascii_digit() {
            while e < r && b[e].is_ascii_digit() {
                if n < digits.len() {
                    digits[n] = b[e];
                }
                n += 1;
                e += 1;
            }
            groups += 1;
            end = e;
            // One separator, possibly after a closing parenthesis.
            let mut k = e;
            if k < r && b[k] == b')' {
                k += 1;
                card_seps = false;
                only_dots = false;
            }
            if k < r && matches!(b[k], b' ' | b'-' | b'.') {
                match b[k] {
                    b'.' => {
                        dots += 1;
                        card_seps = false;
                    }
                    _ => only_dots = false,
                }
                k += 1;
            }
            if k == e {
                break;
            }
            e = k;
        }
        if lead {
            only_dots = false;
            card_seps = false;
        }
        let seg = &b[s..end];
        let found = if set.has(Detector::Ipv4) && only_dots && dots == 3 && groups == 4 {
            is_ipv4(seg).then_some(Detector::Ipv4)
        } else if set.has(Detector::PaymentCard)
            && card_seps
            && (13..=19).contains(&n)
            && luhn(&digits[..n])
        {
            Some(Detector::PaymentCard)
        } else if set.has(Detector::Phone)
            && (7..=15).contains(&n)
            && dots != 3
            && (lead || (groups >= 3 && n >= 10))
        {
            Some(Detector::Phone)
        } else {
            None
        };
        if let Some(detector) = found
            && !(s > 0 && b[s - 1].is_ascii_alphanumeric())
            && !(end < b.len() && b[end].is_ascii_alphanumeric())
        {
            out.push(Found {
                start: s,
                end,
                detector,
            });
        }
        s = end.max(s + 1);
    }
}

fn is_ipv4(seg: &[u8]) -> bool {
    seg.split(|c| *c == b'.').all(|part| {
        !part.is_empty()
            && part.len() <= 3
            && (part.len() == 1 || part[0] != b'0')
            && part.iter().fold(0u32, |a, c| a * 10 + u32::from(c - b'0')) <= 255
    })
}

fn is_v6(c: u8) -> bool {
    c.is_ascii_hexdigit() || c == b':' || c == b'.'
}

fn ipv6(text: &str, out: &mut Vec<Found>) {
    let b = text.as_bytes();
    let mut from = 0;
    for colon in memchr::memchr_iter(b':', b) {
        if colon < from {
            continue;
        }
        let mut l = colon;
        while l > from && is_v6(b[l - 1]) {
            l -= 1;
        }
        let mut r = colon + 1;
        while r < b.len() && is_v6(b[r]) {
            r += 1;
        }
        from = r;
        let window = &text[l..r];
        if window.bytes().filter(|c| *c == b':').count() < 2
            || (l > 0 && b[l - 1].is_ascii_alphanumeric())
            || (r < b.len() && b[r].is_ascii_alphanumeric())
        {
            continue;
        }
        if window.parse::<Ipv6Addr>().is_ok() {
            out.push(Found {
                start: l,
                end: r,
                detector: Detector::Ipv6,
            });
        }
    }
}

/// Bearer tokens and API-key shapes, in one pattern of plain literal
/// prefixes without look-arounds: the regex engine's SIMD literal
/// prefilter then skips text without a prefix at memory speed. The word
/// boundary before a match is checked by hand.
fn token_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(concat!(
            r"(?-u:(?:Bearer|bearer|BEARER)[ \t]+[A-Za-z0-9\-._~+/]{8,}=*",
            r"|(?:sk_live_|sk_test_|rk_live_|rk_test_|pk_live_",
            r"|ghp_|gho_|ghu_|ghs_|ghr_|github_pat_|xox[abprs]-|glpat-)",
            r"[A-Za-z0-9_\-]{16,}|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_\-]{35})"
        ))
        .expect("the token pattern compiles")
    })
}

fn is_key_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

/// `sk-…` and `xr_…` keys: their 3-byte prefixes would weaken the regex
/// prefilter (every 3-byte literal makes it verify more candidates), so
/// they get `memmem` passes of their own.
fn short_prefix_keys(b: &[u8], out: &mut Vec<Found>) {
    static FINDERS: OnceLock<[memchr::memmem::Finder<'static>; 2]> = OnceLock::new();
    let finders = FINDERS.get_or_init(|| {
        [
            memchr::memmem::Finder::new(b"sk-"),
            memchr::memmem::Finder::new(b"xr_"),
        ]
    });
    for f in finders {
        for s in f.find_iter(b) {
            if s > 0 && is_key_char(b[s - 1]) {
                continue;
            }
            let mut e = s + 3;
            while e < b.len() && is_key_char(b[e]) {
                e += 1;
            }
            let body = &b[s + 3..e];
            let body = body
                .strip_prefix(b"proj-")
                .or_else(|| body.strip_prefix(b"ant-"))
                .unwrap_or(body);
            if body.len() >= 16 {
                out.push(Found {
                    start: s,
                    end: e,
                    detector: Detector::ApiKey,
                });
            }
        }
    }
}

fn tokens(b: &[u8], set: Detectors, out: &mut Vec<Found>) {
    if set.has(Detector::ApiKey) {
        short_prefix_keys(b, out);
    }
    for m in token_regex().find_iter(b) {
        let (s, e) = (m.start(), m.end());
        if s > 0 && (b[s - 1].is_ascii_alphanumeric() || matches!(b[s - 1], b'_' | b'-')) {
            continue;
        }
        if b[s..].len() > 6 && b[s..s + 6].eq_ignore_ascii_case(b"bearer") {
            if !set.has(Detector::BearerToken) {
                continue;
            }
            let mut t = s + 6;
            while t < e && matches!(b[t], b' ' | b'\t') {
                t += 1;
            }
            out.push(Found {
                start: t,
                end: e,
                detector: Detector::BearerToken,
            });
        } else if set.has(Detector::ApiKey) {
            out.push(Found {
                start: s,
                end: e,
                detector: Detector::ApiKey,
            });
        }
    }
}

/// Whether an integer JSON number is a payment card number.
pub(crate) fn is_card_number(digits: &str) -> bool {
    (13..=19).contains(&digits.len())
        && digits.bytes().all(|c| c.is_ascii_digit())
        && luhn(digits.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Detectors {
        Detectors::of(&Detector::ALL)
    }

    fn found(text: &str, set: Detectors) -> Vec<(&str, &'static str)> {
        let mut out = Vec::new();
        find(text, set, &mut out);
        out.iter()
            .map(|f| (&text[f.start..f.end], f.detector.name()))
            .collect()
    }

    #[test]
    fn emails_with_boundaries() {
        assert_eq!(
            found("mail jane.doe+x@mail.example.co.uk, thanks.", all()),
            vec![("jane.doe+x@mail.example.co.uk", "email")]
        );
        assert!(found("a@b, @home, x@y.z1, user@localhost", all()).is_empty());
        assert_eq!(
            found(r#"{"to":"a@b.io"}"#, all()),
            vec![("a@b.io", "email")]
        );
    }

    #[test]
    fn cards_need_luhn_and_13_to_19_digits() {
        let set = Detectors::of(&[Detector::PaymentCard]);
        assert_eq!(
            found("card 4111 1111 1111 1111 exp", set),
            vec![("4111 1111 1111 1111", "payment_card")]
        );
        assert_eq!(
            found("x4111-1111-1111-1111", set),
            Vec::<(&str, &str)>::new(),
            "glued to a letter"
        );
        assert_eq!(
            found("n=5500005555555559;", set),
            vec![("5500005555555559", "payment_card")]
        );
        assert!(found("4111 1111 1111 1112", set).is_empty(), "Luhn fails");
        assert!(found("order 1234567890123", set).is_empty());
        assert!(found("12345678901234567890123", set).is_empty(), "too long");
        // Every position of the sampled scan finds it.
        for pad in 0..30 {
            let text = format!("{}4111111111111111", "a ".repeat(pad));
            assert_eq!(found(&text, set).len(), 1, "{text}");
        }
    }

    #[test]
    fn phones_and_ips_when_enabled() {
        let set = Detectors::of(&[Detector::Phone, Detector::Ipv4, Detector::Ipv6]);
        assert_eq!(
            found("call +1 415 555 0100 or (415) 555-0100", set),
            vec![("+1 415 555 0100", "phone"), ("(415) 555-0100", "phone")]
        );
        assert_eq!(
            found("from 192.168.10.1, not 300.1.1.1", set),
            vec![("192.168.10.1", "ipv4")]
        );
        assert_eq!(
            found("peer 2001:db8::8a2e:370:7334 at 12:30", set),
            vec![("2001:db8::8a2e:370:7334", "ipv6")]
        );
        assert!(found("price 59.99 and 2024-01-02", set).is_empty());
    }

    #[test]
    fn tokens_and_api_keys() {
        assert_eq!(
            found("Authorization: Bearer eyJhbGciOi.JIUzI1NiJ9.abc", all()),
            vec![("eyJhbGciOi.JIUzI1NiJ9.abc", "bearer_token")]
        );
        assert_eq!(
            found(
                "key sk-proj-abcdefghijklmnop1234 and AKIAIOSFODNN7EXAMPLE",
                all()
            ),
            vec![
                ("sk-proj-abcdefghijklmnop1234", "api_key"),
                ("AKIAIOSFODNN7EXAMPLE", "api_key")
            ]
        );
        assert!(found("task-abcdefghijklmnopqrstu ask-me", all()).is_empty());
    }

    #[test]
    fn overlaps_resolve_to_one_match() {
        let f = found("Bearer sk_live_abcdefghijklmnop1234", all());
        assert_eq!(f.len(), 1, "{f:?}");
    }
}
