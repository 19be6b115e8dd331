//! Frames written as hex, as operators paste them from tcpdump or a trace.

/// Hex digits to bytes; whitespace, ':' and '-' separators are allowed.
pub fn parse(text: &str) -> anyhow::Result<Vec<u8>> {
    let digits: Vec<u8> =
        text.bytes().filter(|b| !b.is_ascii_whitespace() && *b != b':' && *b != b'-').collect();
    if !digits.len().is_multiple_of(2) {
        anyhow::bail!("the packet has an odd number of hex digits ({})", digits.len());
    }
    digits
        .chunks(2)
        .enumerate()
        .map(|(i, pair)| {
            let s = std::str::from_utf8(pair).unwrap_or("??");
            u8::from_str_radix(s, 16).map_err(|_| anyhow::anyhow!("{s:?} at byte {i} is not hex"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn separators_are_ignored_and_mistakes_named() {
        assert_eq!(super::parse("0a:0B-ff 00").unwrap(), vec![0x0a, 0x0b, 0xff, 0x00]);
        assert!(super::parse("abc").unwrap_err().to_string().contains("odd number"));
        assert!(super::parse("zz").unwrap_err().to_string().contains("at byte 0"));
    }
}
