//! Single values of a plan: text, numbers, booleans, names from a fixed set, addresses and
//! ports. Each says what it expected in the plan's terms (a prefix such as 10.20.0.0/24, a whole
//! number 0-65535) and shows the rejected value quoted; why a value failed to parse, when that
//! helps, goes in the hint.
//!
//! Text is any scalar, plain or quoted. Numbers and booleans must be plain: `"80"` is text,
//! and a plan that quotes a number most likely meant something else.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};

use ipnet::{Ipv4Net, Ipv6Net};

use super::Decoder;
use crate::{
    diagnostics::{near_miss, quote},
    model::PortSpec,
    yaml::{NodeId, Shape},
};

impl Decoder<'_> {
    /// Text; nothing is a problem (an optional field that may be empty goes through
    /// [`Decoder::optional`] first).
    pub(super) fn text(&mut self, id: NodeId) -> Option<String> {
        match self.tree.shape(id) {
            Shape::Scalar { text, .. } => Some(text.to_string()),
            _ => {
                let message = format!("expected text, found {}", self.found(id));
                self.report(id, message, None);
                None
            }
        }
    }

    /// A whole number from 0 to `max`, written plain; `what` names it in messages ("a port").
    pub(super) fn number(&mut self, id: NodeId, what: &str, max: u64) -> Option<u64> {
        let expected = format!("{what} 0-{max}");
        let (message, hint) = match self.tree.shape(id) {
            Shape::Scalar { text, plain } if digits(text) => match text.parse::<u64>() {
                Ok(n) if n <= max && plain => return Some(n),
                Ok(_) if !plain => (
                    format!("expected {expected}, found the text {}", quote(text)),
                    Some("write numbers without quotes".to_string()),
                ),
                _ => (format!("{} is out of range; expected {expected}", quote(text)), None),
            },
            _ => (format!("expected {expected}, found {}", self.found(id)), None),
        };
        self.report(id, message, hint);
        None
    }

    /// `true` or `false`, written plain.
    pub(super) fn boolean(&mut self, id: NodeId) -> Option<bool> {
        let (message, hint) = match self.tree.shape(id) {
            // YAML 1.2's core schema: true, True, TRUE (and the same for false).
            Shape::Scalar { text: "true" | "True" | "TRUE", plain: true } => return Some(true),
            Shape::Scalar { text: "false" | "False" | "FALSE", plain: true } => return Some(false),
            Shape::Scalar { text: t @ ("true" | "false"), plain: false } => (
                format!("expected true or false, found the text {}", quote(t)),
                Some("write true or false without quotes".to_string()),
            ),
            _ => (format!("expected true or false, found {}", self.found(id)), None),
        };
        self.report(id, message, hint);
        None
    }

    /// One of `options`, by its name in the plan; `noun` says what it is ("level").
    pub(super) fn choice<T: Copy>(
        &mut self,
        id: NodeId,
        noun: &str,
        options: &[(&'static str, T)],
    ) -> Option<T> {
        let names = || options.iter().map(|o| o.0).collect::<Vec<_>>().join(", ");
        let (message, hint) = match self.tree.shape(id) {
            Shape::Scalar { text, .. } => {
                if let Some(&(_, value)) = options.iter().find(|o| o.0 == text) {
                    return Some(value);
                }
                let hint = near_miss(text, options.iter().map(|o| o.0));
                (format!("unknown {noun} {}; expected one of {}", quote(text), names()), hint)
            }
            Shape::Null => (format!("missing {noun}; expected one of {}", names()), None),
            _ => (format!("expected a {noun}, one of {}; found {}", names(), self.found(id)), None),
        };
        self.report(id, message, hint);
        None
    }

    /// Destination or source ports: `80` or a range written as text, `"1000-2000"`. Only the
    /// shape is checked here; validation reads the range.
    pub(super) fn ports(&mut self, id: NodeId) -> Option<PortSpec> {
        match self.tree.shape(id) {
            Shape::Scalar { text, plain: true } if digits(text) => {
                self.number(id, "a port", u16::MAX.into()).map(|p| PortSpec::One(p as u16))
            }
            Shape::Scalar { text, .. } => Some(PortSpec::Range(text.to_string())),
            _ => {
                let found = self.found(id);
                let message =
                    format!("expected a port such as 80 or a range such as \"1000-2000\", found {found}");
                self.report(id, message, None);
                None
            }
        }
    }

    pub(super) fn prefix4(&mut self, id: NodeId) -> Option<Ipv4Net> {
        self.parsed(id, "an IPv4 prefix such as 10.20.0.0/24", |t| {
            strict_prefix4(t).ok_or_else(|| prefix_reason(t, false))
        })
    }

    pub(super) fn prefix6(&mut self, id: NodeId) -> Option<Ipv6Net> {
        self.parsed(id, "an IPv6 prefix such as 2001:db8::/32", |t| {
            t.parse().map_err(|_| prefix_reason(t, true))
        })
    }

    pub(super) fn address4(&mut self, id: NodeId) -> Option<Ipv4Addr> {
        self.parsed(id, "an IPv4 address such as 192.0.2.1", |t| t.parse().map_err(|_| address_reason(t)))
    }

    pub(super) fn socket4(&mut self, id: NodeId) -> Option<SocketAddrV4> {
        self.parsed(id, "an IPv4 address and port such as 10.0.5.8:8080", |t| {
            t.parse().map_err(|_| socket_reason(t))
        })
    }

    /// A scalar through `parse`, whose error is the reason it failed, when one can be told.
    fn parsed<T>(
        &mut self,
        id: NodeId,
        expected: &str,
        parse: impl FnOnce(&str) -> Result<T, Option<String>>,
    ) -> Option<T> {
        let (message, hint) = match self.tree.shape(id) {
            Shape::Scalar { text, .. } => match parse(text) {
                Ok(v) => return Some(v),
                Err(reason) => (format!("expected {expected}, found {}", quote(text)), reason),
            },
            _ => (format!("expected {expected}, found {}", self.found(id)), None),
        };
        self.report(id, message, hint);
        None
    }
}

/// `ADDRESS/LENGTH`, the address as std reads it: four decimal numbers without leading zeros.
/// ipnet's own parser takes `010.0.0.0/8` as 10.0.0.0/8, where `inet_aton` would read 8.0.0.0:
/// a value two tools read differently is refused, as it is in an address field.
fn strict_prefix4(text: &str) -> Option<Ipv4Net> {
    let (address, length) = text.split_once('/')?;
    let address: Ipv4Addr = address.parse().ok()?;
    if !digits(length) || (length.len() > 1 && length.starts_with('0')) {
        return None;
    }
    Ipv4Net::new(address, length.parse().ok()?).ok()
}

fn digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

const IPV4_SHAPE: &str = "four numbers 0-255 separated by dots";

/// Why `text` is not an `ADDRESS/LENGTH` prefix of the family asked for.
fn prefix_reason(text: &str, v6: bool) -> Option<String> {
    let (family, other, max) = if v6 { ("IPv6", "IPv4", 128) } else { ("IPv4", "IPv6", 32) };
    let is =
        |a: &str, v6: bool| if v6 { a.parse::<Ipv6Addr>().is_ok() } else { a.parse::<Ipv4Addr>().is_ok() };
    let Some((address, length)) = text.split_once('/') else {
        return Some(if is(text, v6) {
            format!("a prefix needs its /LENGTH; a single address is ADDRESS/{max}")
        } else {
            "write a prefix as ADDRESS/LENGTH".into()
        });
    };
    if !is(address, v6) && is(address, !v6) {
        return Some(format!("that is an {other} prefix; this field takes {family} prefixes"));
    }
    if !is(address, v6) {
        return Some(if v6 {
            "the part before / is not an IPv6 address".into()
        } else {
            format!("the part before / is not an IPv4 address: {IPV4_SHAPE}, without leading zeros")
        });
    }
    match length.parse::<u8>() {
        Ok(l) if l <= max => None,
        _ => Some(format!("the length after / is a number 0-{max}")),
    }
}

fn address_reason(text: &str) -> Option<String> {
    Some(if text.contains('/') {
        "an address here has no /LENGTH".into()
    } else if text.parse::<Ipv6Addr>().is_ok() {
        "that is an IPv6 address; this field takes IPv4".into()
    } else {
        format!("an IPv4 address is {IPV4_SHAPE}, without leading zeros")
    })
}

fn socket_reason(text: &str) -> Option<String> {
    let Some((address, port)) = text.rsplit_once(':') else {
        return Some("it lacks the :PORT".into());
    };
    if address.parse::<Ipv4Addr>().is_err() {
        return address_reason(address);
    }
    match port.parse::<u16>() {
        Ok(_) => None,
        Err(_) => Some("the port after : is a number 0-65535".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::{super::tests::decode_value, *};

    #[test]
    fn numbers_are_plain_digits_within_their_range() {
        assert_eq!(decode_value("80", |d, v| d.number(v, "a number", 65535)), Ok(80));
        let cases = [
            ("70000", "\"70000\" is out of range; expected a number 0-65535", None),
            (
                "99999999999999999999999",
                "\"99999999999999999999999\" is out of range; expected a number 0-65535",
                None,
            ),
            ("big", "expected a number 0-65535, found \"big\"", None),
            ("-1", "expected a number 0-65535, found \"-1\"", None),
            (
                "\"80\"",
                "expected a number 0-65535, found the text \"80\"",
                Some("write numbers without quotes"),
            ),
            ("[80]", "expected a number 0-65535, found a list", None),
            ("", "expected a number 0-65535, found nothing", None),
        ];
        for (yaml, message, hint) in cases {
            let got = decode_value(yaml, |d, v| d.number(v, "a number", 65535)).unwrap_err();
            assert_eq!((got.message.as_str(), got.hint.as_deref()), (message, hint), "{yaml:?}");
        }
    }

    #[test]
    fn booleans_and_choices() {
        assert_eq!(decode_value("true", |d, v| d.boolean(v)), Ok(true));
        assert_eq!(decode_value("TRUE", |d, v| d.boolean(v)), Ok(true));
        assert_eq!(decode_value("False", |d, v| d.boolean(v)), Ok(false));
        let e = decode_value("yes", |d, v| d.boolean(v)).unwrap_err();
        assert_eq!(e.message, "expected true or false, found \"yes\"");
        let e = decode_value("'false'", |d, v| d.boolean(v)).unwrap_err();
        assert_eq!(e.message, "expected true or false, found the text \"false\"");
        let options = [("permit", 1), ("deny", 2)];
        assert_eq!(decode_value("deny", |d, v| d.choice(v, "action", &options)), Ok(2));
        assert_eq!(decode_value("'deny'", |d, v| d.choice(v, "action", &options)), Ok(2));
        let e = decode_value("denny", |d, v| d.choice(v, "action", &options)).unwrap_err();
        assert_eq!(e.message, "unknown action \"denny\"; expected one of permit, deny");
        assert!(e.hint.unwrap().starts_with("did you mean \"deny\"?"));
        let e = decode_value("~", |d, v| d.choice(v, "action", &options)).unwrap_err();
        assert_eq!(e.message, "missing action; expected one of permit, deny");
    }

    #[test]
    fn ports_are_a_number_or_text() {
        assert_eq!(decode_value("443", |d, v| d.ports(v)), Ok(PortSpec::One(443)));
        assert_eq!(decode_value("1000-2000", |d, v| d.ports(v)), Ok(PortSpec::Range("1000-2000".into())));
        assert_eq!(decode_value("\"80\"", |d, v| d.ports(v)), Ok(PortSpec::Range("80".into())));
        let e = decode_value("65536", |d, v| d.ports(v)).unwrap_err();
        assert_eq!(e.message, "\"65536\" is out of range; expected a port 0-65535");
        let e = decode_value("[80, 443]", |d, v| d.ports(v)).unwrap_err();
        assert_eq!(e.message, "expected a port such as 80 or a range such as \"1000-2000\", found a list");
    }

    #[test]
    fn addresses_say_what_was_expected_and_why_not() {
        type Decode = fn(&mut Decoder<'_>, NodeId) -> Option<String>;
        let cases: [(&str, Decode, &str, Option<&str>); 11] = [
            (
                "10.20.0.0/33",
                |d, v| d.prefix4(v).map(|p| p.to_string()),
                "expected an IPv4 prefix such as 10.20.0.0/24, found \"10.20.0.0/33\"",
                Some("the length after / is a number 0-32"),
            ),
            (
                "10.20.0.0",
                |d, v| d.prefix4(v).map(|p| p.to_string()),
                "expected an IPv4 prefix such as 10.20.0.0/24, found \"10.20.0.0\"",
                Some("a prefix needs its /LENGTH; a single address is ADDRESS/32"),
            ),
            (
                "10.0.0.300/16",
                |d, v| d.prefix4(v).map(|p| p.to_string()),
                "expected an IPv4 prefix such as 10.20.0.0/24, found \"10.0.0.300/16\"",
                Some(
                    "the part before / is not an IPv4 address: four numbers 0-255 separated by dots, without leading zeros",
                ),
            ),
            (
                "010.0.0.0/8",
                |d, v| d.prefix4(v).map(|p| p.to_string()),
                "expected an IPv4 prefix such as 10.20.0.0/24, found \"010.0.0.0/8\"",
                Some(
                    "the part before / is not an IPv4 address: four numbers 0-255 separated by dots, without leading zeros",
                ),
            ),
            (
                "2001:db8::/32",
                |d, v| d.prefix4(v).map(|p| p.to_string()),
                "expected an IPv4 prefix such as 10.20.0.0/24, found \"2001:db8::/32\"",
                Some("that is an IPv6 prefix; this field takes IPv4 prefixes"),
            ),
            (
                "10.0.0.0/8",
                |d, v| d.prefix6(v).map(|p| p.to_string()),
                "expected an IPv6 prefix such as 2001:db8::/32, found \"10.0.0.0/8\"",
                Some("that is an IPv4 prefix; this field takes IPv6 prefixes"),
            ),
            (
                "192.0.2.1/32",
                |d, v| d.address4(v).map(|p| p.to_string()),
                "expected an IPv4 address such as 192.0.2.1, found \"192.0.2.1/32\"",
                Some("an address here has no /LENGTH"),
            ),
            (
                "192.0.02.1",
                |d, v| d.address4(v).map(|p| p.to_string()),
                "expected an IPv4 address such as 192.0.2.1, found \"192.0.02.1\"",
                Some("an IPv4 address is four numbers 0-255 separated by dots, without leading zeros"),
            ),
            (
                "\"10.0.5.8\"",
                |d, v| d.socket4(v).map(|p| p.to_string()),
                "expected an IPv4 address and port such as 10.0.5.8:8080, found \"10.0.5.8\"",
                Some("it lacks the :PORT"),
            ),
            (
                "10.0.5.8:80808",
                |d, v| d.socket4(v).map(|p| p.to_string()),
                "expected an IPv4 address and port such as 10.0.5.8:8080, found \"10.0.5.8:80808\"",
                Some("the port after : is a number 0-65535"),
            ),
            (
                "{a: 1}",
                |d, v| d.socket4(v).map(|p| p.to_string()),
                "expected an IPv4 address and port such as 10.0.5.8:8080, found a mapping",
                None,
            ),
        ];
        for (yaml, decode, message, hint) in cases {
            let e = decode_value(yaml, decode).unwrap_err();
            assert_eq!((e.message.as_str(), e.hint.as_deref()), (message, hint), "{yaml:?}");
        }
        assert_eq!(decode_value("10.0.5.8:8080", |d, v| d.socket4(v)), Ok("10.0.5.8:8080".parse().unwrap()));
    }
}
