//! Where a peer may be reached: the SSRF check.
//!
//! A peer's domain comes from other instances (gossip) or from the operator (bootstrap
//! URLs), so before any request it is resolved and every address checked: without `--dev`
//! only public unicast addresses are reached (no loopback, private, link-local, shared
//! (CGNAT), unspecified, multicast, broadcast, reserved or documentation ranges, in IPv4,
//! IPv6 or IPv4 embedded in IPv6). In dev mode loopback and private addresses and ports in
//! domains are allowed, so that test instances on 127.0.0.x work. Peers are reached over the
//! network's one [`Scheme`] (`Config::scheme`): `https://`, or `http://` in dev mode without
//! `federation.dev_trusted_root`.
//!
//! [`resolve`] returns the checked addresses: connect to those, not to a second lookup of
//! the name, or DNS could answer differently the second time (rebinding).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::config::{valid_domain, Scheme};

/// A peer address or URL that must not be reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("peer url {url:?} must start with {scheme}{}", scheme_hint(*.scheme, *.dev))]
    Scheme {
        url: String,
        scheme: Scheme,
        dev: bool,
    },
    #[error("peer url {url:?} {why}; write it as https://DOMAIN")]
    Url { url: String, why: &'static str },
    #[error("peer domain {domain:?} is not a host name{}", if *.dev { " or host:port" } else { " (a port needs --dev)" })]
    Domain { domain: String, dev: bool },
    #[error("cannot resolve peer {domain}: {error}")]
    Resolve { domain: String, error: String },
    #[error("peer {domain} resolves to no address")]
    NoAddress { domain: String },
    #[error("peer {domain} resolves to {address}, a {class} address; federation only reaches public addresses{}", if *.dev_would_allow { " (--dev allows it)" } else { "" })]
    Forbidden {
        domain: String,
        address: IpAddr,
        class: &'static str,
        dev_would_allow: bool,
    },
}

/// Why a URL of the other scheme is refused, for [`TargetError::Scheme`].
fn scheme_hint(scheme: Scheme, dev: bool) -> &'static str {
    match (scheme, dev) {
        (Scheme::Https, false) => " (http:// needs --dev)",
        (Scheme::Https, true) => {
            " (with federation.dev_trusted_root set, dev peers are reached over https://)"
        }
        (Scheme::Http, _) => {
            " (in --dev without federation.dev_trusted_root peers are reached over plain http://)"
        }
    }
}

/// The peer domain (`host`, or `host:port` in dev mode) of a base URL such as a bootstrap
/// entry: `https://Rose.Example/` -> `rose.example`. The URL must use the network's `scheme`,
/// the one the peer will be reached with.
pub fn domain_from_url(url: &str, scheme: Scheme, dev: bool) -> Result<String, TargetError> {
    let bad = |why| TargetError::Url {
        url: url.to_owned(),
        why,
    };
    let lower = url.trim().to_ascii_lowercase();
    let Some(rest) = lower.strip_prefix(scheme.prefix()) else {
        return Err(TargetError::Scheme {
            url: url.to_owned(),
            scheme,
            dev,
        });
    };
    let (authority, path) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    if !(path.is_empty() || path == "/") {
        return Err(bad("has a path, query or fragment"));
    }
    if authority.contains('@') {
        return Err(bad("has a user name"));
    }
    let domain = authority.trim_end_matches('.');
    if !valid_domain(domain, dev) || domain.ends_with(":0") {
        return Err(TargetError::Domain {
            domain: authority.to_owned(),
            dev,
        });
    }
    Ok(domain.to_owned())
}

/// Resolves `domain` (`host`, or `host:port` in dev mode; the port defaults to the
/// `scheme`'s, 443 or 80) and checks every address it resolves to; returns them all.
pub async fn resolve(
    domain: &str,
    scheme: Scheme,
    dev: bool,
) -> Result<Vec<SocketAddr>, TargetError> {
    if !valid_domain(domain, dev) {
        return Err(TargetError::Domain {
            domain: domain.to_owned(),
            dev,
        });
    }
    let with_port = if domain.contains(':') {
        domain.to_owned()
    } else {
        format!("{domain}:{}", scheme.default_port())
    };
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host(with_port)
        .await
        .map_err(|e| TargetError::Resolve {
            domain: domain.to_owned(),
            error: e.to_string().to_lowercase(),
        })?
        .collect();
    let ips: Vec<IpAddr> = addresses.iter().map(SocketAddr::ip).collect();
    check_addresses(domain, &ips, dev)?;
    Ok(addresses)
}

/// Checks that `domain` resolved to at least one address and that every one may be reached.
pub fn check_addresses(domain: &str, addresses: &[IpAddr], dev: bool) -> Result<(), TargetError> {
    if addresses.is_empty() {
        return Err(TargetError::NoAddress {
            domain: domain.to_owned(),
        });
    }
    for &address in addresses {
        if let Some((class, dev_ok)) = classify(address) {
            if !(dev && dev_ok) {
                return Err(TargetError::Forbidden {
                    domain: domain.to_owned(),
                    address,
                    class,
                    dev_would_allow: dev_ok && !dev,
                });
            }
        }
    }
    Ok(())
}

/// `None` for a public unicast address; otherwise the range's name and whether dev mode may
/// reach it.
pub fn classify(address: IpAddr) -> Option<(&'static str, bool)> {
    match address {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<(&'static str, bool)> {
    let [a, b, c, _] = ip.octets();
    let class = match (a, b, c) {
        (0, _, _) => ("unspecified", false),
        (127, _, _) => ("loopback", true),
        (10, _, _) => ("private", true),
        (172, 16..=31, _) => ("private", true),
        (192, 168, _) => ("private", true),
        (169, 254, _) => ("link-local", true),
        (100, 64..=127, _) => ("shared (cgnat)", true),
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => ("documentation", false),
        (192, 0, 0) | (198, 18..=19, _) => ("reserved", false),
        (224..=239, _, _) => ("multicast", false),
        _ if ip == Ipv4Addr::BROADCAST => ("broadcast", false),
        (240..=255, _, _) => ("reserved", false),
        _ => return None,
    };
    Some(class)
}

fn classify_v6(ip: Ipv6Addr) -> Option<(&'static str, bool)> {
    let s = ip.segments();
    let embedded_v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    let class = match s {
        [0, 0, 0, 0, 0, 0, 0, 0] => ("unspecified", false),
        [0, 0, 0, 0, 0, 0, 0, 1] => ("loopback", true),
        // IPv4-mapped (::ffff:a.b.c.d) and NAT64 (64:ff9b::a.b.c.d): judged as the IPv4.
        [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => {
            return classify_v4(embedded_v4(hi, lo))
        }
        // 6to4 (2002:a.b.c.d::/48) carries an IPv4 address too.
        [0x2002, hi, lo, ..] => return classify_v4(embedded_v4(hi, lo)),
        [0, 0, 0, 0, 0, 0, _, _] => ("ipv4-compatible (deprecated)", false),
        [x, ..] if x & 0xfe00 == 0xfc00 => ("unique local (private)", true),
        [x, ..] if x & 0xffc0 == 0xfe80 => ("link-local", true),
        [x, ..] if x & 0xffc0 == 0xfec0 => ("site-local", true),
        [x, ..] if x & 0xff00 == 0xff00 => ("multicast", false),
        [0x2001, 0x0db8, ..] => ("documentation", false),
        [0x0100, 0, 0, 0, ..] => ("discard-only", false),
        _ => return None,
    };
    Some(class)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Production refuses `ip` as `class`; dev mode allows it exactly when `dev_ok`.
    fn refused(ip: &str, class: &str, dev_ok: bool) {
        let address: IpAddr = ip.parse().unwrap();
        let err = check_addresses("peer.example", &[address], false).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("peer.example")
                && text.contains(&address.to_string())
                && text.contains(class),
            "{ip}: {text}"
        );
        assert_eq!(
            check_addresses("peer.example", &[address], true).is_ok(),
            dev_ok,
            "{ip} in dev"
        );
    }

    fn public(ip: &str) {
        let address: IpAddr = ip.parse().unwrap();
        assert_eq!(classify(address), None, "{ip}");
        assert!(check_addresses("peer.example", &[address], false).is_ok());
    }

    #[test]
    fn loopback_is_refused_without_dev() {
        refused("127.0.0.1", "loopback", true);
        refused("127.255.0.9", "loopback", true);
        refused("::1", "loopback", true);
        refused("::ffff:127.0.0.1", "loopback", true);
    }

    #[test]
    fn private_ranges_are_refused_without_dev() {
        refused("10.1.2.3", "private", true);
        refused("172.16.0.1", "private", true);
        refused("172.31.255.255", "private", true);
        refused("192.168.1.1", "private", true);
        refused("fc00::1", "unique local", true);
        refused("fd12:3456::1", "unique local", true);
        refused("::ffff:10.0.0.1", "private", true);
        refused("::ffff:192.168.0.1", "private", true);
        public("172.15.255.255");
        public("172.32.0.1");
    }

    #[test]
    fn link_local_and_cgnat_are_refused_without_dev() {
        refused("169.254.169.254", "link-local", true);
        refused("fe80::1", "link-local", true);
        refused("febf::1", "link-local", true);
        refused("100.64.0.1", "cgnat", true);
        refused("100.127.255.254", "cgnat", true);
        refused("::ffff:169.254.169.254", "link-local", true);
        public("100.63.255.255");
        public("100.128.0.1");
    }

    #[test]
    fn unspecified_multicast_broadcast_and_documentation_are_refused_even_in_dev() {
        refused("0.0.0.0", "unspecified", false);
        refused("0.1.2.3", "unspecified", false);
        refused("::", "unspecified", false);
        refused("224.0.0.1", "multicast", false);
        refused("239.255.255.250", "multicast", false);
        refused("ff02::1", "multicast", false);
        refused("255.255.255.255", "broadcast", false);
        refused("240.0.0.1", "reserved", false);
        refused("192.0.2.1", "documentation", false);
        refused("198.51.100.7", "documentation", false);
        refused("203.0.113.9", "documentation", false);
        refused("2001:db8::1", "documentation", false);
        refused("198.18.0.1", "reserved", false);
        refused("::ffff:0.0.0.0", "unspecified", false);
    }

    #[test]
    fn ipv4_inside_nat64_and_6to4_is_judged_as_ipv4() {
        refused("64:ff9b::7f00:1", "loopback", true);
        refused("2002:c0a8:0101::1", "private", true);
        public("64:ff9b::808:808");
        public("2002:0808:0808::1");
    }

    #[test]
    fn public_addresses_are_allowed() {
        public("8.8.8.8");
        public("1.1.1.1");
        public("93.184.216.34");
        public("2606:4700:4700::1111");
        public("2a00:1450:4001:82b::200e");
    }

    #[test]
    fn one_bad_address_among_good_ones_refuses_the_peer() {
        let ips: Vec<IpAddr> = vec!["8.8.8.8".parse().unwrap(), "10.0.0.1".parse().unwrap()];
        let err = check_addresses("mixed.example", &ips, false).unwrap_err();
        assert!(err.to_string().contains("10.0.0.1"), "{err}");
        let err = check_addresses("empty.example", &[], false).unwrap_err();
        assert!(err.to_string().contains("empty.example"), "{err}");
    }

    #[tokio::test]
    async fn localhost_is_refused_after_dns_without_dev_and_allowed_with_it() {
        let err = resolve("localhost", Scheme::Https, false)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("localhost") && text.contains("loopback"),
            "{text}"
        );
        assert!(text.contains("--dev allows it"), "{text}");
        let addresses = resolve("localhost:8080", Scheme::Http, true).await.unwrap();
        assert!(addresses
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 8080));
        let err = resolve("127.0.0.2:8080", Scheme::Https, false)
            .await
            .unwrap_err();
        assert!(matches!(err, TargetError::Domain { .. }), "{err}");
    }

    #[test]
    fn domain_from_url_keeps_the_host_and_refuses_the_rest() {
        // (scheme, dev): the public network, a dev network with a test CA, a plain dev one.
        const PUBLIC: (Scheme, bool) = (Scheme::Https, false);
        const DEV_TLS: (Scheme, bool) = (Scheme::Https, true);
        const DEV_PLAIN: (Scheme, bool) = (Scheme::Http, true);
        let ok =
            |url: &str, (scheme, dev): (Scheme, bool)| domain_from_url(url, scheme, dev).unwrap();
        assert_eq!(ok("https://Rose.Example", PUBLIC), "rose.example");
        assert_eq!(ok("https://rose.example/", PUBLIC), "rose.example");
        assert_eq!(ok("http://127.0.0.2:8080", DEV_PLAIN), "127.0.0.2:8080");
        assert_eq!(ok("https://127.0.0.2:8443/", DEV_TLS), "127.0.0.2:8443");
        let err = |url: &str, (scheme, dev): (Scheme, bool), needle: &str| {
            let text = domain_from_url(url, scheme, dev).unwrap_err().to_string();
            assert!(text.contains(needle), "{url}: {text}");
        };
        err("http://rose.example", PUBLIC, "http:// needs --dev");
        err("http://127.0.0.2:8080", DEV_TLS, "dev_trusted_root set");
        err(
            "https://127.0.0.2:8443",
            DEV_PLAIN,
            "must start with http://",
        );
        err("ftp://rose.example", DEV_TLS, "must start with https://");
        err("https://rose.example:8443", PUBLIC, "a port needs --dev");
        err("https://rose.example/inbox", PUBLIC, "has a path");
        err("https://me@rose.example", PUBLIC, "user name");
        err("https://", PUBLIC, "not a host name");
        err("https://[::1]:80", DEV_TLS, "not a host name");
        err("rose.example", PUBLIC, "must start with https://");
    }
}
