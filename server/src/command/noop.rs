//! NOOP (SOCKS 6): nothing to carry out; the success reply says the proxy
//! would have accepted a request (admission checked the rules).

use sixsocks_proto::v6::Options;
use tokio::net::TcpStream;

use crate::command::reply::{send_success, Replier};
use crate::context::{Record, Shared};
use crate::error::RequestError;

pub(super) async fn run(
    stream: &mut TcpStream,
    req: &impl Replier,
    shared: &Shared,
    rec: &mut Record,
) -> Result<(), RequestError> {
    send_success(stream, req, None, Options::new(), shared, rec).await
}
