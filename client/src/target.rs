//! Everything that can name a target: [`IntoTargetAddr`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use sixsocks_proto::addr::MAX_DOMAIN;
use sixsocks_proto::{Host, TargetAddr};

use crate::error::ClientError;

/// A value that names a target host and port.
///
/// Implemented for [`TargetAddr`], socket addresses, `(IpAddr, u16)` and
/// `(&str, u16)` / `(String, u16)`. A string host that is an IP address
/// (IPv6 with or without brackets) becomes [`Host::Ip`]; anything else is a
/// name, checked to be non-empty, at most 255 bytes and free of NUL bytes.
/// An over-long name is an error, never silently resolved locally instead
/// (curl CVE-2023-38545 came from such a fallback).
pub trait IntoTargetAddr {
    fn into_target_addr(self) -> Result<TargetAddr, ClientError>;
}

impl IntoTargetAddr for TargetAddr {
    fn into_target_addr(self) -> Result<TargetAddr, ClientError> {
        if let Host::Domain(d) = &self.host {
            check_name(d)?;
        }
        Ok(self)
    }
}

impl IntoTargetAddr for &TargetAddr {
    fn into_target_addr(self) -> Result<TargetAddr, ClientError> {
        self.clone().into_target_addr()
    }
}

impl IntoTargetAddr for SocketAddr {
    fn into_target_addr(self) -> Result<TargetAddr, ClientError> {
        Ok(TargetAddr::from(self))
    }
}

impl IntoTargetAddr for SocketAddrV4 {
    fn into_target_addr(self) -> Result<TargetAddr, ClientError> {
        Ok(TargetAddr::from(SocketAddr::V4(self)))
    }
}

impl IntoTargetAddr for SocketAddrV6 {
    fn into_target_addr(self) -> Result<TargetAddr, ClientError> {
        Ok(TargetAddr::from(SocketAddr::V6(self)))
    }
}

impl IntoTargetAddr for (IpAddr, u16) {
    fn into_target_addr(self) -> Result<TargetAddr, ClientError> {
        Ok(TargetAddr::ip(self.0, self.1))
    }
}

impl IntoTargetAddr for (Ipv4Addr, u16) {
    fn into_target_addr(self) -> Result<TargetAddr, ClientError> {
        Ok(TargetAddr::ip(IpAddr::V4(self.0), self.1))
    }
}

impl IntoTargetAddr for (Ipv6Addr, u16) {
    fn into_target_addr(self) -> Result<TargetAddr, ClientError> {
        Ok(TargetAddr::ip(IpAddr::V6(self.0), self.1))
    }
}

impl IntoTargetAddr for (&str, u16) {
    fn into_target_addr(self) -> Result<TargetAddr, ClientError> {
        let (host, port) = self;
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(TargetAddr::ip(ip, port));
        }
        check_name(host)?;
        Ok(TargetAddr::domain(host, port))
    }
}

impl IntoTargetAddr for (&String, u16) {
    fn into_target_addr(self) -> Result<TargetAddr, ClientError> {
        (self.0.as_str(), self.1).into_target_addr()
    }
}

impl IntoTargetAddr for (String, u16) {
    fn into_target_addr(self) -> Result<TargetAddr, ClientError> {
        (self.0.as_str(), self.1).into_target_addr()
    }
}

fn check_name(name: &str) -> Result<(), ClientError> {
    if name.is_empty() {
        return Err(ClientError::InvalidTarget("empty host name".into()));
    }
    if name.len() > MAX_DOMAIN {
        return Err(ClientError::InvalidTarget(format!(
            "host name of {} bytes (at most {MAX_DOMAIN})",
            name.len()
        )));
    }
    if name.contains('\0') {
        return Err(ClientError::InvalidTarget(
            "host name contains a NUL byte".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_become_ips_or_names() {
        let t = ("127.0.0.1", 80).into_target_addr().unwrap();
        assert_eq!(t, TargetAddr::ip(Ipv4Addr::LOCALHOST.into(), 80));
        let t = ("[::1]", 81).into_target_addr().unwrap();
        assert_eq!(t, TargetAddr::ip(Ipv6Addr::LOCALHOST.into(), 81));
        let t = ("::1", 82).into_target_addr().unwrap();
        assert_eq!(t, TargetAddr::ip(Ipv6Addr::LOCALHOST.into(), 82));
        let t = ("example.com", 83).into_target_addr().unwrap();
        assert_eq!(t, TargetAddr::domain("example.com", 83));
    }

    #[test]
    fn bad_names_are_rejected() {
        assert!(matches!(
            ("", 1).into_target_addr(),
            Err(ClientError::InvalidTarget(_))
        ));
        assert!(matches!(
            ("a\0b", 1).into_target_addr(),
            Err(ClientError::InvalidTarget(_))
        ));
        let long = "a".repeat(256);
        assert!(matches!(
            (long.as_str(), 1).into_target_addr(),
            Err(ClientError::InvalidTarget(_))
        ));
        assert!((&"a".repeat(255), 1).into_target_addr().is_ok());
        assert!(matches!(
            TargetAddr::domain(long, 1).into_target_addr(),
            Err(ClientError::InvalidTarget(_))
        ));
    }
}
