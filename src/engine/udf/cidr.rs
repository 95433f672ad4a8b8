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
use crate::parse::ip::{parse_ip, parse_v4};

/// Parse a network (`10.0.0.0/8`, `2001:db8::/32`) or single address.
pub fn parse_cidr(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

function_struct!(
    /// The `cidr_contains` function.
    CidrContains,
    Signature::string(2, Volatility::Immutable)
);

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

function_struct!(
    /// `ip_in_cidrs(ip, cidr, …)`: whether the address is inside any of the networks.
    IpInCidrs,
    Signature::variadic_any(Volatility::Immutable)
);

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
