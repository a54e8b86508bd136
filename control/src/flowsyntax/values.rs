//! Value forms of the flow language (ovs-fields(7) notation): Ethernet
//! addresses `aa:bb:cc:dd:ee:ff`, IPv4 (RFC 791) with `/prefix` or
//! `/dotted-mask`, IPv6 (RFC 4291 text, printed in RFC 5952 form) with
//! `/prefix` or `/mask-address`, and port names or numbers.

use super::error::FlowSyntaxError;
use super::lex::{looks_numeric, Source, Token};
use super::PortNames;
use datapath::flow::PortNo;
use std::net::{Ipv4Addr, Ipv6Addr};

/// OpenFlow's `OFPP_LOCAL`: the bridge's own internal port.
pub const OFPP_LOCAL: PortNo = 0xffff_fffe;
/// Largest ordinary port number accepted (OpenFlow's `OFPP_MAX`).
pub const OFPP_MAX: PortNo = 0xffff_ff00;

/// Parses `aa:bb:cc:dd:ee:ff` (also with `-` separators) into 48 bits.
pub(crate) fn parse_mac(
    src: &Source<'_>,
    v: Token<'_>,
    field: &str,
) -> Result<u128, FlowSyntaxError> {
    let bad = || src.invalid(v, field, "not an Ethernet address (xx:xx:xx:xx:xx:xx)");
    let sep = if v.text.contains('-') { '-' } else { ':' };
    let mut out = 0u128;
    let mut n = 0;
    for part in v.text.split(sep) {
        if part.is_empty() || part.len() > 2 || !part.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad());
        }
        out = (out << 8) | u128::from(u8::from_str_radix(part, 16).map_err(|_| bad())?);
        n += 1;
    }
    if n != 6 {
        return Err(bad());
    }
    Ok(out)
}

/// Prints 48 bits as `aa:bb:cc:dd:ee:ff`.
pub(crate) fn format_mac(v: u128) -> String {
    let b = (v as u64).to_be_bytes();
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[2], b[3], b[4], b[5], b[6], b[7]
    )
}

/// Parses a plain IPv4 address.
pub(crate) fn parse_ipv4(
    src: &Source<'_>,
    v: Token<'_>,
    field: &str,
) -> Result<u32, FlowSyntaxError> {
    v.text
        .parse::<Ipv4Addr>()
        .map(u32::from)
        .map_err(|_| src.invalid(v, field, "not an IPv4 address"))
}

/// Parses `a.b.c.d`, `a.b.c.d/len` or `a.b.c.d/m.m.m.m` into (value, mask).
pub(crate) fn parse_ipv4_masked(
    src: &Source<'_>,
    v: Token<'_>,
    field: &str,
) -> Result<(u128, u128), FlowSyntaxError> {
    match v.split('/') {
        None => Ok((u128::from(parse_ipv4(src, v, field)?), 0xffff_ffff)),
        Some((addr, mask)) => {
            let addr = Token {
                start: v.start,
                text: addr,
            };
            let a = parse_ipv4(src, addr, field)?;
            let m = if mask.text.contains('.') {
                parse_ipv4(src, mask, field)?
            } else {
                let len = parse_prefix(src, mask, field, 32)?;
                prefix_mask(len, 32) as u32
            };
            Ok((u128::from(a), u128::from(m)))
        }
    }
}

/// Prints an IPv4 (value, mask): no suffix when exact, `/len` for a prefix,
/// `/m.m.m.m` otherwise.
pub(crate) fn format_ipv4_masked(v: u128, m: u128) -> String {
    let addr = Ipv4Addr::from(v as u32);
    let m = m as u32;
    if m == u32::MAX {
        addr.to_string()
    } else if m.leading_ones() + m.trailing_zeros() == 32 {
        format!("{addr}/{}", m.leading_ones())
    } else {
        format!("{addr}/{}", Ipv4Addr::from(m))
    }
}

/// Parses `addr`, `addr/len` or `addr/mask-addr` into (value, mask).
pub(crate) fn parse_ipv6_masked(
    src: &Source<'_>,
    v: Token<'_>,
    field: &str,
) -> Result<(u128, u128), FlowSyntaxError> {
    let ip = |t: Token<'_>| {
        t.text
            .parse::<Ipv6Addr>()
            .map(u128::from)
            .map_err(|_| src.invalid(t, field, "not an IPv6 address"))
    };
    match v.split('/') {
        None => Ok((ip(v)?, u128::MAX)),
        Some((addr, mask)) => {
            let a = ip(Token {
                start: v.start,
                text: addr,
            })?;
            let m = if mask.text.contains(':') {
                ip(mask)?
            } else {
                prefix_mask(parse_prefix(src, mask, field, 128)?, 128)
            };
            Ok((a, m))
        }
    }
}

/// Prints an IPv6 (value, mask) like [`format_ipv4_masked`].
pub(crate) fn format_ipv6_masked(v: u128, m: u128) -> String {
    let addr = Ipv6Addr::from(v);
    if m == u128::MAX {
        addr.to_string()
    } else if m.leading_ones() + m.trailing_zeros() == 128 {
        format!("{addr}/{}", m.leading_ones())
    } else {
        format!("{addr}/{}", Ipv6Addr::from(m))
    }
}

fn parse_prefix(
    src: &Source<'_>,
    t: Token<'_>,
    field: &str,
    bits: u32,
) -> Result<u32, FlowSyntaxError> {
    if t.text.is_empty() || !t.text.chars().all(|c| c.is_ascii_digit()) {
        return Err(src.invalid(t, field, "not a prefix length or mask"));
    }
    Ok(src.number(t, field, u128::from(bits))? as u32)
}

/// The `len` leading one bits of a `bits`-wide mask.
fn prefix_mask(len: u32, bits: u32) -> u128 {
    let full = if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    if len == 0 {
        0
    } else {
        // len >= 1, so the shift is at most 127.
        full & !((1u128 << (bits - len)) - 1)
    }
}

/// Resolves a port number, `LOCAL`, or a name through `ports`.
pub(crate) fn parse_port(
    src: &Source<'_>,
    v: Token<'_>,
    field: &str,
    ports: &dyn PortNames,
) -> Result<PortNo, FlowSyntaxError> {
    if v.text.is_empty() {
        return Err(src.invalid(v, field, "empty port"));
    }
    if looks_numeric(v.text) {
        return Ok(src.number(v, field, u128::from(OFPP_MAX))? as PortNo);
    }
    if v.text.eq_ignore_ascii_case("LOCAL") {
        return Ok(OFPP_LOCAL);
    }
    ports
        .port_no(v.text)
        .ok_or_else(|| FlowSyntaxError::UnknownPort {
            name: v.text.to_string(),
            column: src.column(v.start),
        })
}

/// Names `output:` takes as reserved ports instead of port names.
pub(crate) const RESERVED_PORT_NAMES: [&str; 5] = ["LOCAL", "IN_PORT", "NORMAL", "FLOOD", "ALL"];

/// Prints a port as its name when the name parses back to the same
/// number, else as the number.
pub(crate) fn format_port(no: PortNo, ports: &dyn PortNames) -> String {
    if no == OFPP_LOCAL {
        return "LOCAL".to_string();
    }
    match ports.port_name(no) {
        Some(name) if name_round_trips(&name, no, ports) => name,
        _ => no.to_string(),
    }
}

fn name_round_trips(name: &str, no: PortNo, ports: &dyn PortNames) -> bool {
    !name.is_empty()
        && !looks_numeric(name)
        && !RESERVED_PORT_NAMES
            .iter()
            .any(|r| r.eq_ignore_ascii_case(name))
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || ",=:()/\"#".contains(c))
        && ports.port_no(name) == Some(no)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn tok(s: &str) -> (Source<'_>, Token<'_>) {
        (Source::new(s), Token { start: 0, text: s })
    }

    #[test]
    fn mac_parses_and_prints() {
        let (s, t) = tok("02:00:5E:10:20:3f");
        let v = parse_mac(&s, t, "dl_src").unwrap();
        assert_eq!(v, 0x0200_5e10_203f);
        assert_eq!(format_mac(v), "02:00:5e:10:20:3f");
        for bad in [
            "02:00:5e:10:20",
            "02:00:5e:10:20:30:40",
            "02:00:5e:10:20:3g",
            "0200:5e:10:20:30",
            "",
        ] {
            let (s, t) = tok(bad);
            assert!(parse_mac(&s, t, "dl_src").is_err(), "{bad}");
        }
    }

    #[test]
    fn ipv4_prefix_and_dotted_masks() {
        let (s, t) = tok("10.1.0.0/16");
        assert_eq!(
            parse_ipv4_masked(&s, t, "nw_dst").unwrap(),
            (0x0a01_0000, 0xffff_0000)
        );
        let (s, t) = tok("10.1.0.0/255.0.255.0");
        assert_eq!(
            parse_ipv4_masked(&s, t, "nw_dst").unwrap(),
            (0x0a01_0000, 0xff00_ff00)
        );
        let (s, t) = tok("10.0.0.1/0");
        assert_eq!(
            parse_ipv4_masked(&s, t, "nw_dst").unwrap(),
            (0x0a00_0001, 0)
        );
        let (s, t) = tok("10.0.0.1/33");
        assert!(matches!(
            parse_ipv4_masked(&s, t, "nw_dst"),
            Err(FlowSyntaxError::OutOfRange { .. })
        ));
        assert_eq!(format_ipv4_masked(0x0a01_0000, 0xffff_0000), "10.1.0.0/16");
        assert_eq!(
            format_ipv4_masked(0x0a01_0000, 0xff00_ff00),
            "10.1.0.0/255.0.255.0"
        );
        assert_eq!(format_ipv4_masked(0x0a01_0203, 0xffff_ffff), "10.1.2.3");
    }

    #[test]
    fn ipv6_prefix_and_address_masks() {
        let (s, t) = tok("2001:db8::/32");
        let (v, m) = parse_ipv6_masked(&s, t, "ipv6_src").unwrap();
        assert_eq!(v, 0x2001_0db8u128 << 96);
        assert_eq!(m, 0xffff_ffffu128 << 96);
        assert_eq!(format_ipv6_masked(v, m), "2001:db8::/32");
        let (s, t) = tok("::1/::ffff");
        assert_eq!(parse_ipv6_masked(&s, t, "ipv6_src").unwrap(), (1, 0xffff));
        assert_eq!(format_ipv6_masked(1, 0xffff), "::1/::ffff");
        let (s, t) = tok("fe80::1/128");
        assert_eq!(parse_ipv6_masked(&s, t, "ipv6_src").unwrap().1, u128::MAX);
    }

    #[test]
    fn prefix_masks_cover_the_edges() {
        assert_eq!(prefix_mask(0, 32), 0);
        assert_eq!(prefix_mask(1, 32), 0x8000_0000);
        assert_eq!(prefix_mask(32, 32), 0xffff_ffff);
        assert_eq!(prefix_mask(128, 128), u128::MAX);
        assert_eq!(prefix_mask(127, 128), u128::MAX - 1);
    }

    #[test]
    fn ports_print_as_names_only_when_the_name_parses_back() {
        let mut m: BTreeMap<String, PortNo> = BTreeMap::new();
        m.insert("tap1".into(), 1);
        m.insert("42".into(), 2);
        m.insert("a,b".into(), 3);
        m.insert("normal".into(), 4);
        assert_eq!(format_port(1, &m), "tap1");
        assert_eq!(format_port(2, &m), "2");
        assert_eq!(format_port(3, &m), "3");
        assert_eq!(format_port(4, &m), "4");
        assert_eq!(format_port(9, &m), "9");
        assert_eq!(format_port(OFPP_LOCAL, &m), "LOCAL");
    }
}
