//! Mutations of the example plans: one token replaced, resized, shifted, duplicated or
//! deleted.

use super::*;

pub(crate) const EXAMPLES: [(&str, &str); 3] = [
    ("configs/demo/plan.yaml", include_str!("../../../configs/demo/plan.yaml")),
    ("configs/examples/conversions.yaml", include_str!("../../../configs/examples/conversions.yaml")),
    ("configs/examples/province-tree.yaml", include_str!("../../../configs/examples/province-tree.yaml")),
];
pub(crate) const POOL_V4_PREFIXES: [&str; 8] = [
    "198.18.0.0/16",
    "198.18.20.0/24",
    "198.18.40.0/24",
    "198.19.0.0/24",
    "32.0.0.0/24",
    "40.0.0.0/16",
    "10.20.0.0/24",
    "10.0.0.0/20",
];
pub(crate) const POOL_V4_ADDRESSES: [&str; 7] =
    ["198.18.20.1", "198.18.40.80", "198.19.0.1", "198.19.4.1", "198.18.41.1", "32.0.0.1", "10.20.0.1"];
pub(crate) const POOL_V6: [&str; 3] = ["2400:8000::/32", "2400:8000:4300::/40", "2400:8000:4301::/48"];
pub(crate) const POOL_NUMBERS: [u32; 11] = [0, 1, 23, 64, 80, 100, 200, 443, 512, 8080, 65535];
/// Keys whose values are ids (or codes) the mutations exchange.
pub(crate) const ID_KEYS: [&str; 5] = ["id: ", "network: ", "department: ", "scope: ", "code: "];
/// Keys whose values are numbers.
pub(crate) const NUMBER_KEYS: [&str; 4] = ["ports: ", "block_size: ", "vlan: ", "key: "];

#[derive(Clone, Debug)]
pub(crate) enum Mutation {
    /// An address or prefix becomes another of the same kind, from the file or a small pool.
    Address {
        at: Index,
        with: Index,
    },
    /// A prefix gets longer or shorter (its address truncated to fit).
    Resize {
        at: Index,
        longer: bool,
        by: u8,
    },
    /// An address moves on by `by`, a prefix by `by` blocks of its size.
    Shift {
        at: Index,
        by: u8,
    },
    /// A list item (a node, legacy network, gateway, interface, netmap entry, ...) is doubled;
    /// with `rename`, the copy's ids, names and codes are made new (its own references follow).
    Duplicate {
        at: Index,
        rename: bool,
    },
    Delete {
        at: Index,
    },
    /// An id (or code) becomes another of the file's.
    Id {
        at: Index,
        with: Index,
    },
    /// A port, block size, VLAN or key becomes another number.
    Number {
        at: Index,
        with: Index,
    },
}

pub(crate) fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), any::<Index>()).prop_map(|(at, with)| Mutation::Address { at, with }),
        1 => (any::<Index>(), any::<bool>(), 1u8..4).prop_map(|(at, longer, by)| Mutation::Resize { at, longer, by }),
        2 => (any::<Index>(), 1u8..4).prop_map(|(at, by)| Mutation::Shift { at, by }),
        3 => (any::<Index>(), prop::bool::weighted(0.8)).prop_map(|(at, rename)| Mutation::Duplicate { at, rename }),
        1 => any::<Index>().prop_map(|at| Mutation::Delete { at }),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(at, with)| Mutation::Id { at, with }),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(at, with)| Mutation::Number { at, with }),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    V4Prefix,
    V4Address,
    V6Prefix,
}

/// A span of the text.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Token {
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// The text's lines with their byte offsets, each cut at its comment.
pub(crate) fn code_lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let code = line.find('#').map_or(line, |i| &line[..i]);
        out.push((at, code.trim_end_matches('\n')));
        at += line.len();
    }
    out
}

/// Every IPv4 address or prefix and quoted IPv6 prefix outside comments, with its kind.
pub(crate) fn address_tokens(text: &str) -> Vec<(Token, Kind)> {
    let mut out = Vec::new();
    for (at, line) in code_lines(text) {
        let b = line.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let close = if b[i] == b'"' { line[i + 1..].find('"') } else { None };
            if let Some(close) = close {
                let inner = &line[i + 1..i + 1 + close];
                if inner.contains(':') && inner.parse::<ipnet::Ipv6Net>().is_ok() {
                    out.push((Token { start: at + i + 1, end: at + i + 1 + close }, Kind::V6Prefix));
                    i += close + 2;
                    continue;
                }
            }
            let starts =
                b[i].is_ascii_digit() && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'.'));
            if !starts {
                i += 1;
                continue;
            }
            let mut end = i;
            while end < b.len() && (b[end].is_ascii_digit() || b[end] == b'.') {
                end += 1;
            }
            if line[i..end].parse::<Ipv4Addr>().is_err() {
                i = end.max(i + 1);
                continue;
            }
            let mut kind = Kind::V4Address;
            if end < b.len() && b[end] == b'/' {
                let mut e = end + 1;
                while e < b.len() && b[e].is_ascii_digit() {
                    e += 1;
                }
                if line[i..e].parse::<Ipv4Net>().is_ok() {
                    kind = Kind::V4Prefix;
                    end = e;
                }
            }
            out.push((Token { start: at + i, end: at + end }, kind));
            i = end;
        }
    }
    out
}

/// The values of `keys` (each a key and ": "), ending at a delimiter, outside comments.
pub(crate) fn keyed_tokens(text: &str, keys: &[&str], value: impl Fn(u8) -> bool) -> Vec<Token> {
    let mut out = Vec::new();
    for (at, line) in code_lines(text) {
        for key in keys {
            for (i, _) in line.match_indices(key) {
                let before = line[..i].bytes().last();
                if before.is_some_and(|c| !matches!(c, b' ' | b'{' | b'-')) {
                    continue;
                }
                let s = i + key.len();
                let len = line[s..].bytes().take_while(|c| value(*c)).count();
                if len > 0 {
                    out.push(Token { start: at + s, end: at + s + len });
                }
            }
        }
    }
    out
}

pub(crate) fn id_tokens(text: &str) -> Vec<Token> {
    keyed_tokens(text, &ID_KEYS, |c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b'"'))
}

/// Ports after socket addresses, and the values of [`NUMBER_KEYS`].
pub(crate) fn number_tokens(text: &str) -> Vec<Token> {
    let mut out = keyed_tokens(text, &NUMBER_KEYS, |c| c.is_ascii_digit());
    for (t, kind) in address_tokens(text) {
        let rest = &text[t.end..];
        if kind == Kind::V4Address && rest.starts_with(':') {
            let len = rest[1..].bytes().take_while(u8::is_ascii_digit).count();
            if len > 0 {
                out.push(Token { start: t.end + 1, end: t.end + 1 + len });
            }
        }
    }
    out
}

/// List items (`- ...` lines) and the lines below each: (first line, end line exclusive).
pub(crate) fn items(lines: &[&str]) -> Vec<(usize, usize)> {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let blank = |l: &str| l.trim().is_empty() || l.trim_start().starts_with('#');
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if !l.trim_start().starts_with("- ") {
            continue;
        }
        let dash = indent(l);
        let mut end = i + 1;
        let mut last = i + 1;
        while end < lines.len() && (blank(lines[end]) || indent(lines[end]) > dash) {
            end += 1;
            if !blank(lines[end - 1]) {
                last = end;
            }
        }
        out.push((i, last));
    }
    out
}

/// The copy of an item with new ids, names and codes; references to ids it defines follow.
pub(crate) fn renamed(block: &[&str]) -> Vec<String> {
    let text = block.join("\n");
    let defined: Vec<String> =
        keyed_tokens(&text, &["id: "], |c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
            .iter()
            .map(|t| text[t.start..t.end].to_string())
            .collect();
    let mut renames: Vec<Token> = keyed_tokens(&text, &["id: ", "name: ", "network: "], |c| {
        c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-')
    })
    .into_iter()
    .filter(|t| !text[..t.start].ends_with("network: ") || defined.iter().any(|d| *d == text[t.start..t.end]))
    .collect();
    renames.sort_by_key(|t| Reverse(t.start));
    let mut out = text.clone();
    for t in renames {
        out.insert(t.end, 'b');
    }
    out.replace("code: \"43", "code: \"53").lines().map(str::to_string).collect()
}

/// Applies `ms` to example `which`; the text starts with a comment saying what was done.
pub(crate) fn mutate(which: usize, ms: &[Mutation]) -> String {
    let (name, original) = EXAMPLES[which];
    let mut text = original.to_string();
    let mut done = vec![format!("# {name}, mutated:")];
    for m in ms {
        if let Some(what) = apply(&mut text, m) {
            done.push(format!("#   {what}"));
        }
    }
    format!("{}\n{text}", done.join("\n"))
}

pub(crate) fn replace(text: &mut String, t: Token, with: &str) -> String {
    let what =
        format!("{} -> {with} (line {})", &text[t.start..t.end], text[..t.start].lines().count().max(1));
    text.replace_range(t.start..t.end, with);
    what
}

pub(crate) fn apply(text: &mut String, m: &Mutation) -> Option<String> {
    match m {
        Mutation::Address { at, with } => {
            let tokens = address_tokens(text);
            if tokens.is_empty() {
                return None;
            }
            let (t, kind) = tokens[at.index(tokens.len())];
            let pool: &[&str] = match kind {
                Kind::V4Prefix => &POOL_V4_PREFIXES,
                Kind::V4Address => &POOL_V4_ADDRESSES,
                Kind::V6Prefix => &POOL_V6,
            };
            let mut choices: Vec<String> = tokens
                .iter()
                .filter(|(_, k)| *k == kind)
                .map(|(u, _)| text[u.start..u.end].to_string())
                .collect();
            choices.extend(pool.iter().map(|s| s.to_string()));
            let with = choices[with.index(choices.len())].clone();
            Some(replace(text, t, &with))
        }
        Mutation::Resize { at, longer, by } => {
            let tokens: Vec<Token> = address_tokens(text)
                .into_iter()
                .filter(|(_, k)| *k != Kind::V4Address)
                .map(|(t, _)| t)
                .collect();
            if tokens.is_empty() {
                return None;
            }
            let t = tokens[at.index(tokens.len())];
            let b = Block::parse(&text[t.start..t.end]);
            let len =
                if *longer { b.len.saturating_add(*by).min(b.bits()) } else { b.len.saturating_sub(*by) };
            Some(replace(text, t, &Block::at(b.v6, b.addr, len).to_string()))
        }
        Mutation::Shift { at, by } => {
            let tokens = address_tokens(text);
            if tokens.is_empty() {
                return None;
            }
            let (t, kind) = tokens[at.index(tokens.len())];
            let new = if kind == Kind::V4Address {
                let a: Ipv4Addr = text[t.start..t.end].parse().ok()?;
                Ipv4Addr::from(u32::from(a).wrapping_add(u32::from(*by))).to_string()
            } else {
                let b = Block::parse(&text[t.start..t.end]);
                let addr = b.addr.wrapping_add(u128::from(*by).wrapping_mul(b.size()));
                let addr = if b.v6 { addr } else { addr & u128::from(u32::MAX) };
                Block::at(b.v6, addr, b.len).to_string()
            };
            Some(replace(text, t, &new))
        }
        Mutation::Duplicate { at, rename } => {
            let lines: Vec<&str> = text.lines().collect();
            let all = items(&lines);
            if all.is_empty() {
                return None;
            }
            let (first, end) = all[at.index(all.len())];
            let copy: Vec<String> = if *rename {
                renamed(&lines[first..end])
            } else {
                lines[first..end].iter().map(|l| l.to_string()).collect()
            };
            let what = format!(
                "line {} doubled{}: {}",
                first + 1,
                if *rename { ", renamed" } else { "" },
                lines[first].trim()
            );
            let mut out: Vec<String> = lines[..end].iter().map(|l| l.to_string()).collect();
            out.extend(copy);
            out.extend(lines[end..].iter().map(|l| l.to_string()));
            *text = out.join("\n") + "\n";
            Some(what)
        }
        Mutation::Delete { at } => {
            let lines: Vec<&str> = text.lines().collect();
            let all = items(&lines);
            if all.is_empty() {
                return None;
            }
            let (first, end) = all[at.index(all.len())];
            let what = format!("line {} deleted: {}", first + 1, lines[first].trim());
            let out: Vec<&str> = lines[..first].iter().chain(&lines[end..]).copied().collect();
            *text = out.join("\n") + "\n";
            Some(what)
        }
        Mutation::Id { at, with } => {
            let tokens = id_tokens(text);
            if tokens.is_empty() {
                return None;
            }
            let t = tokens[at.index(tokens.len())];
            let u = tokens[with.index(tokens.len())];
            let with = text[u.start..u.end].to_string();
            Some(replace(text, t, &with))
        }
        Mutation::Number { at, with } => {
            let tokens = number_tokens(text);
            if tokens.is_empty() {
                return None;
            }
            let t = tokens[at.index(tokens.len())];
            Some(replace(text, t, &POOL_NUMBERS[with.index(POOL_NUMBERS.len())].to_string()))
        }
    }
}
