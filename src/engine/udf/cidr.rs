//! `cidr_contains(cidr, ip)`, `ip_in_cidrs(ip, cidr, …)`, `is_private_ip(ip)`, `is_public_ip(ip)`.
//!
//! Networks and addresses are IPv4 or IPv6; an IPv4 address is never inside an IPv6 network
//! or the reverse (as Python's `ipaddress` in Panther rules). A single address is accepted as
//! a network of one (`10.0.0.1` = `10.0.0.1/32`). Values that are not addresses give NULL.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use arrow::array::BooleanArray;
use arrow::datatypes::DataType;
use datafusion::common::{Result as DfResult, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use ipnet::IpNet;

use super::{expect_args, literal_str, map_bool, scalar_str, section, strings};

/// Parse an address as `std` does (IPv4 without leading zeros, or IPv6), with a fast path for
/// dotted IPv4, the common case in logs; surrounding spaces are ignored.
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    match parse_v4(s.as_bytes()) {
        Some(v4) => Some(IpAddr::V4(v4)),
        None => s.trim().parse().ok(),
    }
}

/// A dotted IPv4 address as `std` parses one (four decimal octets, no leading zeros).
#[inline]
fn parse_v4(b: &[u8]) -> Option<std::net::Ipv4Addr> {
    #[cfg(target_arch = "x86_64")]
    {
        parse_v4_sse2(b)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        parse_v4_scalar(b)
    }
}

/// [`parse_v4`] without a branch per character: the dots and digits of the 8 to 15 bytes are
/// classified by SSE2 compares of two overlapping 8-byte loads, then each octet is read from
/// its (1 to 3) digits. The per-character loop mispredicted on every octet length change and
/// was half of `NOT ip_in_cidrs(remoteip, …)`, which a rule evaluates for every event.
/// Shorter addresses (`1.2.3.4`) take the scalar path.
#[cfg(target_arch = "x86_64")]
fn parse_v4_sse2(b: &[u8]) -> Option<std::net::Ipv4Addr> {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_cvtsi64_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_set1_epi8,
        _mm_sub_epi8,
    };
    let n = b.len();
    if !(8..=15).contains(&n) {
        return if n == 7 { parse_v4_scalar(b) } else { None };
    }
    let word = |at: usize| i64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    // (dot mask, digit mask) of 8 bytes, bit i for byte i.
    // SAFETY: SSE2 is part of x86_64; the intrinsics only touch registers.
    let classify = |w: i64| unsafe {
        let v = _mm_cvtsi64_si128(w);
        let dots = _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'.' as i8)));
        // A digit is a byte whose distance from '0' is at most 9 (unsigned).
        let nine = _mm_set1_epi8(9);
        let d = _mm_sub_epi8(v, _mm_set1_epi8(b'0' as i8));
        let digits = _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_max_epu8(d, nine), nine));
        (dots as u32 & 0xff, digits as u32 & 0xff)
    };
    let (dots_lo, digits_lo) = classify(word(0));
    let (dots_hi, digits_hi) = classify(word(n - 8));
    let dots = dots_lo | dots_hi << (n - 8);
    let live = (1u32 << n) - 1;
    if (dots | digits_lo | digits_hi << (n - 8)) != live {
        return None;
    }
    // Exactly three dots.
    let d1 = dots & dots.wrapping_sub(1);
    let d2 = d1 & d1.wrapping_sub(1);
    if dots == 0 || d1 == 0 || d2 == 0 || d2 & d2.wrapping_sub(1) != 0 {
        return None;
    }
    let (p1, p2, p3) = (
        dots.trailing_zeros() as usize,
        d1.trailing_zeros() as usize,
        d2.trailing_zeros() as usize,
    );
    // Each octet's (up to) three digit slots are read right-aligned at its end, so no read
    // leaves the address; slots before a short octet hold other bytes and are not selected.
    let digit = |i: usize| u32::from(b[i].wrapping_sub(b'0'));
    let mut addr = 0u32;
    for (start, end) in [(0, p1), (p1 + 1, p2), (p2 + 1, p3), (p3 + 1, n)] {
        let len = end - start;
        if !(1..=3).contains(&len) {
            return None;
        }
        let (x, y, z) = (
            digit(end.saturating_sub(3)),
            digit(end.saturating_sub(2)),
            digit(end - 1),
        );
        let octet = [z, 10 * y + z, 100 * x + 10 * y + z][len - 1];
        if octet > 255 || (len > 1 && digit(start) == 0) {
            return None;
        }
        addr = addr << 8 | octet;
    }
    Some(std::net::Ipv4Addr::from_bits(addr))
}

/// [`parse_v4`] a character at a time (other targets; the reference in tests).
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn parse_v4_scalar(b: &[u8]) -> Option<std::net::Ipv4Addr> {
    let mut octets = [0u8; 4];
    let (mut i, mut n, mut digits) = (0usize, 0u32, 0u32);
    for &c in b {
        match c {
            b'0'..=b'9' => {
                if digits == 1 && n == 0 {
                    return None; // leading zero
                }
                n = n * 10 + u32::from(c - b'0');
                digits += 1;
                if n > 255 {
                    return None;
                }
            }
            b'.' if digits > 0 && i < 3 => {
                octets[i] = n as u8;
                i += 1;
                n = 0;
                digits = 0;
            }
            _ => return None,
        }
    }
    if i != 3 || digits == 0 {
        return None;
    }
    octets[3] = n as u8;
    Some(std::net::Ipv4Addr::from(octets))
}

/// Parse a network (`10.0.0.0/8`, `2001:db8::/32`) or single address.
pub fn parse_cidr(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// The `cidr_contains` function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CidrContains {
    signature: Signature,
}

impl CidrContains {
    pub fn new() -> Self {
        CidrContains {
            signature: Signature::string(2, Volatility::Immutable),
        }
    }
}

impl Default for CidrContains {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for CidrContains {
    fn name(&self) -> &str {
        "cidr_contains"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }
    fn documentation(&self) -> Option<&Documentation> {
        static DOC: OnceLock<Documentation> = OnceLock::new();
        Some(DOC.get_or_init(|| {
            Documentation::builder(
                section(),
                "True when the IPv4 or IPv6 address is inside the network. NULL when either is \
                 NULL or the address is not an IP.",
                "cidr_contains(cidr, ip)",
            )
            .with_sql_example("SELECT * FROM panther_logs.aws_s3serveraccess WHERE NOT cidr_contains('10.0.0.0/8', remoteip)")
            .with_argument("cidr", "Network such as 10.0.0.0/8 or 2001:db8::/32.")
            .with_argument("ip", "Address to test.")
            .build()
        }))
    }

    fn simplify(&self, args: Vec<Expr>, _: &SimplifyContext) -> DfResult<ExprSimplifyResult> {
        if let Some(c) = args.first().and_then(literal_str)
            && parse_cidr(c).is_none()
        {
            return plan_err!(
                "cidr_contains: invalid CIDR {c:?} (expected e.g. 10.0.0.0/8 or 2001:db8::/32)"
            );
        }
        Ok(ExprSimplifyResult::Original(args))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        expect_args("cidr_contains", &args.args, 2)?;
        let rows = args.number_rows;
        if let Some(c) = scalar_str(&args.args[0]) {
            let Some(c) = c else {
                return Ok(ColumnarValue::Scalar(ScalarValue::Boolean(None)));
            };
            let Some(net) = parse_cidr(&c) else {
                return exec_err!("cidr_contains: invalid CIDR {c:?}");
            };
            return map_bool(&args.args[1], rows, |ip| {
                parse_ip(ip).map(|ip| net.contains(&ip))
            });
        }
        let nets = strings(&args.args[0], rows)?;
        let ips = strings(&args.args[1], rows)?;
        let mut out = Vec::with_capacity(rows);
        for (c, ip) in nets.iter().zip(ips.iter()) {
            out.push(match (c, ip) {
                (Some(c), Some(ip)) => {
                    let Some(net) = parse_cidr(c) else {
                        return exec_err!("cidr_contains: invalid CIDR {c:?}");
                    };
                    parse_ip(ip).map(|ip| net.contains(&ip))
                }
                _ => None,
            });
        }
        Ok(ColumnarValue::Array(Arc::new(BooleanArray::from(out))))
    }
}

/// `ip_in_cidrs(ip, cidr, …)`: whether the address is inside any of the networks.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct IpInCidrs {
    signature: Signature,
}

impl IpInCidrs {
    pub fn new() -> Self {
        IpInCidrs {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl Default for IpInCidrs {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for IpInCidrs {
    fn name(&self) -> &str {
        "ip_in_cidrs"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }
    fn documentation(&self) -> Option<&Documentation> {
        static DOC: OnceLock<Documentation> = OnceLock::new();
        Some(DOC.get_or_init(|| {
            Documentation::builder(
                section(),
                "True when the address is inside any of the literal networks (NULL networks \
                 are skipped); false when in none; NULL when the address is NULL or not an IP.",
                "ip_in_cidrs(ip, cidr, ...)",
            )
            .with_sql_example("SELECT * FROM panther_logs.aws_s3serveraccess WHERE NOT ip_in_cidrs(remoteip, '10.0.0.0/8', '192.168.0.0/16')")
            .build()
        }))
    }
    fn simplify(&self, args: Vec<Expr>, _: &SimplifyContext) -> DfResult<ExprSimplifyResult> {
        if args.len() < 2 {
            return plan_err!("ip_in_cidrs takes an address and at least one network");
        }
        for a in &args[1..] {
            match literal_str(a) {
                Some(c) if parse_cidr(c).is_none() => {
                    return plan_err!("ip_in_cidrs: invalid CIDR {c:?} (expected e.g. 10.0.0.0/8)");
                }
                None if !matches!(a, Expr::Literal(..)) => {
                    return plan_err!("ip_in_cidrs: networks must be literals");
                }
                _ => {}
            }
        }
        Ok(ExprSimplifyResult::Original(args))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let mut nets = Vec::new();
        for a in &args.args[1..] {
            match scalar_str(a) {
                Some(Some(c)) => match parse_cidr(&c) {
                    Some(n) => nets.push(n),
                    None => return exec_err!("ip_in_cidrs: invalid CIDR {c:?}"),
                },
                Some(None) => {}
                None => return exec_err!("ip_in_cidrs: networks must be literals"),
            }
        }
        let nets = Networks::new(nets);
        map_bool(&args.args[0], args.number_rows, |ip| nets.contains(ip))
    }
}

/// Literal networks of `ip_in_cidrs`, the IPv4 ones as `(network, mask)` words: the function
/// runs over every event of a rule such as `NOT ip_in_cidrs(remoteip, '10.0.0.0/8')`, and
/// parsing each address into an `IpAddr` to ask each `IpNet` was most of its time.
struct Networks {
    v4: Vec<(u32, u32)>,
    all: Vec<IpNet>,
}

impl Networks {
    fn new(all: Vec<IpNet>) -> Self {
        let v4 = all
            .iter()
            .filter_map(|n| match n {
                IpNet::V4(n) => Some((u32::from(n.network()), u32::from(n.netmask()))),
                IpNet::V6(_) => None,
            })
            .collect();
        Networks { v4, all }
    }

    /// Whether `ip` is in any network; `None` when it is not an address.
    fn contains(&self, ip: &str) -> Option<bool> {
        // A dotted IPv4 address (the common case) is never inside an IPv6 network.
        match parse_v4(ip.as_bytes()) {
            Some(v4) => {
                let x = u32::from(v4);
                Some(self.v4.iter().any(|&(net, mask)| x & mask == net))
            }
            None => parse_ip(ip).map(|ip| self.all.iter().any(|n| n.contains(&ip))),
        }
    }
}

/// True for addresses that are not globally routable: private (RFC 1918, fc00::/7), loopback,
/// link-local, carrier-grade NAT (100.64.0.0/10), unspecified, documentation, multicast.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || (o[0] == 100 && (64..128).contains(&o[1]))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
        }
    }
}

/// `is_private_ip(ip)` or `is_public_ip(ip)`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct IpClass {
    private: bool,
    signature: Signature,
}

impl IpClass {
    /// `private = true` for `is_private_ip`, false for `is_public_ip`.
    pub fn new(private: bool) -> Self {
        IpClass {
            private,
            signature: Signature::string(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for IpClass {
    fn name(&self) -> &str {
        if self.private {
            "is_private_ip"
        } else {
            "is_public_ip"
        }
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }
    fn documentation(&self) -> Option<&Documentation> {
        static PRIVATE: OnceLock<Documentation> = OnceLock::new();
        static PUBLIC: OnceLock<Documentation> = OnceLock::new();
        let (cell, name) = if self.private {
            (&PRIVATE, "is_private_ip")
        } else {
            (&PUBLIC, "is_public_ip")
        };
        Some(cell.get_or_init(|| {
            Documentation::builder(
                section(),
                "Whether an IPv4/IPv6 address is private (RFC 1918, fc00::/7, loopback, \
                 link-local, CGNAT, documentation, multicast) or public. NULL for non-addresses.",
                format!("{name}(ip)"),
            )
            .with_argument("ip", "Address to classify.")
            .build()
        }))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        expect_args(self.name(), &args.args, 1)?;
        let private = self.private;
        map_bool(&args.args[0], args.number_rows, |v| {
            parse_ip(v).map(|ip| is_private(ip) == private)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What `std` accepts as a dotted IPv4 address.
    fn std_v4(b: &[u8]) -> Option<std::net::Ipv4Addr> {
        std::str::from_utf8(b).ok()?.parse().ok()
    }

    proptest! {
        #[test]
        fn v4_parsers_agree_with_std_on_near_addresses(s in "[0-9.]{0,17}") {
            prop_assert_eq!(parse_v4(s.as_bytes()), std_v4(s.as_bytes()), "{:?}", s);
            prop_assert_eq!(parse_v4_scalar(s.as_bytes()), std_v4(s.as_bytes()), "{:?}", s);
        }

        #[test]
        fn v4_parsers_agree_with_std_on_any_bytes(b in proptest::collection::vec(any::<u8>(), 0..18)) {
            prop_assert_eq!(parse_v4(&b), std_v4(&b));
        }

        #[test]
        fn v4_parsers_read_every_address(bits in any::<u32>(), junk in "[ a/:0-9]?") {
            let ip = std::net::Ipv4Addr::from_bits(bits);
            prop_assert_eq!(parse_v4(ip.to_string().as_bytes()), Some(ip));
            let with = format!("{ip}{junk}");
            prop_assert_eq!(parse_v4(with.as_bytes()), std_v4(with.as_bytes()));
        }
    }

    #[test]
    fn cidrs() {
        let net = parse_cidr("10.0.0.0/8").unwrap();
        assert!(net.contains(&"10.1.2.3".parse::<IpAddr>().unwrap()));
        assert!(!net.contains(&"11.1.2.3".parse::<IpAddr>().unwrap()));
        assert!(!net.contains(&"::ffff:10.1.2.3".parse::<IpAddr>().unwrap()));
        let v6 = parse_cidr("2001:db8::/32").unwrap();
        assert!(v6.contains(&"2001:db8:e0a0::f089".parse::<IpAddr>().unwrap()));
        assert_eq!(
            parse_cidr("192.0.2.1"),
            Some("192.0.2.1/32".parse().unwrap())
        );
        assert_eq!(parse_cidr("10.0.0.0/33"), None);
        assert_eq!(parse_cidr("nope"), None);
    }

    #[test]
    fn network_words_agree_with_ipnet() {
        let nets: Vec<IpNet> = ["10.0.0.0/8", "192.168.1.7/24", "2001:db8::/32", "0.0.0.0/0"]
            .iter()
            .map(|c| parse_cidr(c).unwrap())
            .collect();
        let ips = [
            Some("10.1.2.3"),
            Some("11.1.2.3"),
            Some("192.168.1.200"),
            Some("192.168.2.1"),
            Some(" 10.0.0.1 "),
            Some("2001:db8::1"),
            Some("::ffff:10.1.2.3"),
            Some("fe80::1"),
            Some("010.1.2.3"),
            Some("not an ip"),
            Some(""),
            None,
        ];
        for some in [&nets[..1], &nets[1..3], &nets[2..3], &nets[..], &[]] {
            let n = Networks::new(some.to_vec());
            let array = arrow::array::StringArray::from(ips.to_vec());
            let got = map_bool(&ColumnarValue::Array(Arc::new(array)), ips.len(), |s| {
                n.contains(s)
            })
            .unwrap()
            .into_array(ips.len())
            .unwrap();
            let got = arrow::array::AsArray::as_boolean(&got);
            for (i, ip) in ips.iter().enumerate() {
                let want = ip
                    .and_then(parse_ip)
                    .map(|a| some.iter().any(|n| n.contains(&a)));
                let got = (!arrow::array::Array::is_null(&got, i)).then(|| got.value(i));
                assert_eq!(got, want, "{ip:?} in {some:?}");
                assert_eq!(ip.and_then(|s| n.contains(s)), want, "{ip:?} in {some:?}");
            }
        }
    }

    #[test]
    fn fast_ipv4_parse_agrees_with_std() {
        for s in [
            "10.1.2.3",
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.5",
            "1..2.3",
            ".1.2.3",
            "1.2.3.",
            "1.2.3.4 ",
            " 1.2.3.4",
            "a.b.c.d",
            "",
            "::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
            "1.2.3.04",
            "100.200.30.0",
            "1.2.3.-4",
            "1234.1.1.1",
            "999.999.999.999",
            "1.2.3.4/8",
            "1.2.3.4",
            "12.34.56.78",
        ] {
            assert_eq!(parse_ip(s), s.trim().parse::<IpAddr>().ok(), "{s:?}");
        }
    }

    #[test]
    fn private_and_public() {
        for p in [
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_private(p.parse().unwrap()), "{p}");
        }
        for p in ["8.8.8.8", "52.95.110.1", "2600:1f18::1", "::ffff:8.8.8.8"] {
            assert!(!is_private(p.parse().unwrap()), "{p}");
        }
    }
}
