//! Name resolution through the system resolver (`getaddrinfo` and
//! `getnameinfo`, so `/etc/hosts` and nsswitch apply and `localhost`
//! resolves without any network), run on tokio's blocking pool with a
//! timeout and a bound on concurrent lookups. Nothing here blocks an async
//! thread.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use sixsocks_proto::Host;

use crate::destination;
use crate::error::RequestError;

/// Most lookups in flight at once; further ones wait for a slot (their
/// wait counts against their timeout).
const MAX_CONCURRENT_LOOKUPS: usize = 64;

#[derive(Clone)]
pub struct Resolver {
    timeout: Duration,
    slots: Arc<Semaphore>,
}

impl Resolver {
    pub fn new(timeout: Duration) -> Self {
        Resolver {
            timeout,
            slots: Arc::new(Semaphore::new(MAX_CONCURRENT_LOOKUPS)),
        }
    }

    /// Forward lookup: every address of `name`, in the resolver's order,
    /// without duplicates. An IP literal is returned as is, without a lookup.
    pub async fn lookup(&self, name: &str) -> Result<Vec<IpAddr>, RequestError> {
        // Read as getaddrinfo would read it, without a trip to the pool.
        if let Some(ip) = crate::destination::literal(name) {
            return Ok(vec![ip]);
        }
        let owned = name.to_owned();
        let mut addrs = self
            .blocking(move || dns_lookup::lookup_host(&owned))
            .await?;
        let mut seen = std::collections::HashSet::new();
        addrs.retain(|a| seen.insert(*a));
        if addrs.is_empty() {
            return Err(RequestError::Resolve(format!("{name}: no addresses")));
        }
        Ok(addrs)
    }

    /// Resolve a target host: for CONNECT, RESOLVE, UDP datagrams and
    /// BIND's expected host alike. `.onion` names are never sent to DNS
    /// (RFC 7686): they fail with Tor's onion codes. Unspecified addresses
    /// are never targets ([`crate::destination`]): a name's unspecified
    /// addresses are dropped, and a name with nothing else is refused (`02`).
    pub async fn target(&self, host: &Host) -> Result<Vec<IpAddr>, RequestError> {
        match host {
            Host::Ip(ip) => {
                destination::refuse_unspecified(*ip)?;
                Ok(vec![*ip])
            }
            Host::Domain(name) => {
                if let Some(valid) = destination::onion_address(name) {
                    return Err(if valid {
                        RequestError::OnionUnreachable
                    } else {
                        RequestError::OnionInvalid
                    });
                }
                let mut addrs = self.lookup(name).await?;
                let Some(&first) = addrs.first() else {
                    return Err(RequestError::HostUnreachable);
                };
                addrs.retain(|a| !destination::is_unspecified(*a));
                if addrs.is_empty() {
                    return Err(RequestError::UnspecifiedTarget(first));
                }
                Ok(addrs)
            }
        }
    }

    /// Reverse lookup: the name of `ip` (fails when it has none).
    pub async fn reverse(&self, ip: IpAddr) -> Result<String, RequestError> {
        self.blocking(move || dns_lookup::lookup_addr(&ip)).await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> Result<T, RequestError> {
        let work = async {
            let _permit = self
                .slots
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| RequestError::Resolve("resolver shut down".into()))?;
            match tokio::task::spawn_blocking(f).await {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => Err(RequestError::Resolve(e.to_string())),
                Err(e) => Err(RequestError::Resolve(e.to_string())),
            }
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .unwrap_or(Err(RequestError::ResolveTimeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn localhost_resolves_without_network() {
        let r = Resolver::new(Duration::from_secs(5));
        let addrs = r.lookup("localhost").await.unwrap();
        assert!(addrs.iter().all(|a| a.is_loopback()), "{addrs:?}");
        assert_eq!(
            r.lookup("127.0.0.7").await.unwrap(),
            vec!["127.0.0.7".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            r.lookup("[::1]").await.unwrap(),
            vec!["::1".parse::<IpAddr>().unwrap()]
        );
    }

    #[tokio::test]
    async fn reverse_of_loopback_is_localhost() {
        let r = Resolver::new(Duration::from_secs(5));
        let name = r.reverse("127.0.0.1".parse().unwrap()).await.unwrap();
        assert_eq!(name, "localhost");
    }
}
