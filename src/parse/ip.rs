//! IP addresses as `std` parses them (IPv4 without leading zeros, or IPv6), with a fast path
//! for dotted IPv4, the common case in logs: shared by indicator extraction (`p_any_ip_addresses`)
//! and the rule functions (`ip_in_cidrs`, `is_private_ip`, …), which see every event's address.

use std::net::IpAddr;

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
pub fn parse_v4(b: &[u8]) -> Option<std::net::Ipv4Addr> {
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
}
