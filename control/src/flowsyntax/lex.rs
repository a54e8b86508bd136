//! Lexing shared by matches, actions and groups: splitting on commas and
//! white space outside parentheses (as ovs-ofctl(8) does, so
//! `resubmit(,1)` stays one token), 1-based character columns, number
//! parsing with range checks, and "did you mean" suggestions.

use super::error::FlowSyntaxError;

/// One token of the input with its byte offset in the whole input.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Token<'a> {
    /// Byte offset of the token's first character in the input.
    pub start: usize,
    /// The token text (never empty).
    pub text: &'a str,
}

impl<'a> Token<'a> {
    /// Splits `key=value` at the first `sep`; the value keeps its offset.
    pub fn split(self, sep: char) -> Option<(&'a str, Token<'a>)> {
        let (key, value) = self.text.split_once(sep)?;
        Some((
            key,
            Token {
                start: self.start + key.len() + sep.len_utf8(),
                text: value,
            },
        ))
    }

    /// The token without its first `n` bytes (n must be a char boundary).
    pub fn skip(self, n: usize) -> Token<'a> {
        Token {
            start: self.start + n,
            text: self.text.get(n..).unwrap_or(""),
        }
    }
}

/// The input being parsed, for turning byte offsets into columns.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Source<'a> {
    pub text: &'a str,
    /// ASCII input (the usual case) has columns equal to byte offsets,
    /// which keeps column lookups O(1) on long lines.
    ascii: bool,
}

impl<'a> Source<'a> {
    pub fn new(text: &'a str) -> Self {
        Source {
            text,
            ascii: text.is_ascii(),
        }
    }

    /// 1-based character column of a byte offset.
    pub fn column(&self, byte: usize) -> usize {
        if self.ascii {
            return byte.min(self.text.len()) + 1;
        }
        self.text.get(..byte).map_or(0, |s| s.chars().count()) + 1
    }

    /// 1-based column just past the end of the input.
    pub fn end_column(&self) -> usize {
        self.column(self.text.len())
    }

    /// Error for a value that did not parse.
    pub fn invalid(&self, v: Token<'_>, field: &str, reason: &str) -> FlowSyntaxError {
        FlowSyntaxError::InvalidValue {
            value: v.text.to_string(),
            field: field.to_string(),
            column: self.column(v.start),
            reason: reason.to_string(),
        }
    }

    /// Error for a number beyond `max`.
    pub fn out_of_range(&self, v: Token<'_>, field: &str, max: u128) -> FlowSyntaxError {
        FlowSyntaxError::OutOfRange {
            value: v.text.to_string(),
            field: field.to_string(),
            column: self.column(v.start),
            max: max.to_string(),
        }
    }

    /// Parses an unsigned decimal or `0x` hexadecimal number no larger
    /// than `max`.
    pub fn number(&self, v: Token<'_>, field: &str, max: u128) -> Result<u128, FlowSyntaxError> {
        let n = parse_u128(v.text).ok_or_else(|| {
            self.invalid(v, field, "not a number (decimal, or hexadecimal with 0x)")
        })?;
        if n.is_none_or(|n| n > max) {
            return Err(self.out_of_range(v, field, max));
        }
        Ok(n.unwrap_or(0))
    }
}

/// Parses decimal or `0x` hex. `None` when malformed, `Some(None)` when
/// well-formed but beyond 128 bits.
fn parse_u128(s: &str) -> Option<Option<u128>> {
    let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => (h, 16),
        None => (s, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    Some(u128::from_str_radix(digits, radix).ok())
}

/// True when `s` reads as a number (so it is never taken as a port name).
pub(crate) fn looks_numeric(s: &str) -> bool {
    parse_u128(s).is_some()
}

/// Splits `text[from..]` into tokens separated by commas and/or white
/// space outside parentheses. Empty tokens (doubled separators) are
/// skipped.
pub(crate) fn tokenize<'a>(
    src: &Source<'a>,
    from: usize,
) -> Result<Vec<Token<'a>>, FlowSyntaxError> {
    let text = src.text;
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut open_at = 0usize;
    let mut start: Option<usize> = None;
    for (i, c) in text.char_indices().filter(|(i, _)| *i >= from) {
        let separator = depth == 0 && (c == ',' || c.is_whitespace());
        if separator {
            if let Some(s) = start.take() {
                out.push(Token {
                    start: s,
                    text: &text[s..i],
                });
            }
            continue;
        }
        if start.is_none() {
            start = Some(i);
        }
        match c {
            '(' => {
                if depth == 0 {
                    open_at = i;
                }
                depth += 1;
            }
            ')' => {
                if depth == 0 {
                    return Err(FlowSyntaxError::Syntax {
                        column: src.column(i),
                        reason: "\")\" without a matching \"(\"".to_string(),
                    });
                }
                depth -= 1;
            }
            _ => {}
        }
    }
    if depth > 0 {
        return Err(FlowSyntaxError::Syntax {
            column: src.column(open_at),
            reason: "\"(\" is never closed".to_string(),
        });
    }
    if let Some(s) = start {
        out.push(Token {
            start: s,
            text: &text[s..],
        });
    }
    Ok(out)
}

/// The candidate closest to `word` by edit distance, when it is close
/// enough to be a plausible typo.
pub(crate) fn suggestion<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<String> {
    // Long garbage has no useful suggestion, and bounding the length
    // bounds the quadratic distance computation.
    if word.is_empty() || word.len() > 40 {
        return None;
    }
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word.to_ascii_lowercase(), c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_string())
}

/// Edit distance over characters where swapping two neighbours counts
/// as one edit (optimal string alignment), since `tpc` for `tcp` is the
/// typo operators make most.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = best;
        }
    }
    d[a.len() * w + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<(usize, &str)> {
        tokenize(&Source::new(s), 0)
            .unwrap()
            .into_iter()
            .map(|t| (t.start, t.text))
            .collect()
    }

    #[test]
    fn tokens_split_on_commas_and_spaces_but_not_inside_parentheses() {
        assert_eq!(
            toks("a=1, b  resubmit(,2),c"),
            vec![(0, "a=1"), (5, "b"), (8, "resubmit(,2)"), (21, "c")]
        );
    }

    #[test]
    fn unbalanced_parentheses_are_errors_with_columns() {
        let e = tokenize(&Source::new("x,resubmit(,1"), 0).unwrap_err();
        assert_eq!(e.column(), 11);
        let e = tokenize(&Source::new("a)"), 0).unwrap_err();
        assert_eq!(e.column(), 2);
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let s = Source::new("é=1,x");
        assert_eq!(s.column(4), 4);
    }

    #[test]
    fn numbers_accept_decimal_and_hex_and_check_range() {
        let s = Source::new("");
        let t = |x| Token { start: 0, text: x };
        assert_eq!(s.number(t("0x1f"), "f", 255).unwrap(), 31);
        assert_eq!(s.number(t("255"), "f", 255).unwrap(), 255);
        assert!(matches!(
            s.number(t("256"), "f", 255),
            Err(FlowSyntaxError::OutOfRange { .. })
        ));
        assert!(matches!(
            s.number(t("99999999999999999999999999999999999999999"), "f", 255),
            Err(FlowSyntaxError::OutOfRange { .. })
        ));
        assert!(matches!(
            s.number(t("12a"), "f", 255),
            Err(FlowSyntaxError::InvalidValue { .. })
        ));
        assert!(matches!(
            s.number(t("0x"), "f", 255),
            Err(FlowSyntaxError::InvalidValue { .. })
        ));
    }

    #[test]
    fn suggestions_pick_the_closest_name() {
        assert_eq!(
            suggestion("nw_dstt", ["nw_src", "nw_dst", "tp_dst"]).as_deref(),
            Some("nw_dst")
        );
        assert_eq!(suggestion("zzzzzzzz", ["nw_src", "nw_dst"]), None);
        assert_eq!(edit_distance("tpc", "tcp"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
